"""An OTLP/HTTP trace receiver that decodes the spans (protobuf), standing in for Tempo in tests."""

import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from loadtest.otlp_sink import OtlpSink


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    links: list[tuple[str, str]] = field(default_factory=list)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """The spans of the traces exported to `endpoint` (an OtlpSink), decoded."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._sink: OtlpSink | None = None
        self.endpoint = ""

    def _receive(self, path: str, body: bytes) -> None:
        if path == "/v1/traces":
            self.decode(body)

    def decode(self, body: bytes) -> None:
        """Add the spans of one ExportTraceServiceRequest."""
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                spans.extend(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=span.kind,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        resource=resource,
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                    )
                    for span in scope_spans.spans
                )
        with self._lock:
            self.spans.extend(spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.received() if s.trace_id == trace_id]

    def received(self) -> list[ReceivedSpan]:
        """Every span received so far (a copy)."""
        with self._lock:
            return list(self.spans)

    def __enter__(self) -> "OtlpReceiver":
        self._sink = OtlpSink(self._receive)
        self.endpoint = self._sink.url
        return self

    def __exit__(self, *_: object) -> None:
        if self._sink is not None:
            self._sink.close()
