// Validates Prometheus Operator objects with the operator's own schemas (@kubernetes-models/prometheus-operator).
// stdin: a JSON array of objects (other kinds are ignored); stdout: a JSON array, one entry per object
// validated: {kind, name, error} where error is null when the object is valid.
import { PodMonitor, PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const MODELS = { ServiceMonitor, PodMonitor, PrometheusRule };

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const objects = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const results = [];
for (const obj of objects) {
  const Model = obj.apiVersion === "monitoring.coreos.com/v1" ? MODELS[obj.kind] : undefined;
  if (!Model) continue;
  let error = null;
  try {
    new Model(obj).validate();
  } catch (e) {
    error = String(e && e.message ? e.message : e);
  }
  results.push({ kind: obj.kind, name: obj.metadata?.name ?? "", error });
}
process.stdout.write(JSON.stringify(results));
