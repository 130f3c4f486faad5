// Parses an AsyncAPI document with the AsyncAPI initiative's own parser (@asyncapi/parser) and prints
// its diagnostics as JSON: [{code, severity, message, path}], severity 0 = error, 1 = warning,
// 2 = information, 3 = hint. Usage: node asyncapi.mjs FILE
import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';

const text = readFileSync(process.argv[2], 'utf8');
const { document, diagnostics } = await new Parser().parse(text);
process.stdout.write(JSON.stringify({
  parsed: document !== undefined,
  diagnostics: diagnostics.map((d) => ({ code: d.code, severity: d.severity, message: d.message, path: d.path })),
}));
