// Validates AsyncAPI documents with the official parser (@asyncapi/parser), issue 17.
// Usage: node validate.mjs <node_modules dir> <document.json>...
// Prints one JSON line per document: {"document", "diagnostics": [{severity, code, message, path}]}.
// Severity follows the parser: 0 error, 1 warning, 2 information, 3 hint. Exit 0 unless it cannot run.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const [modules, ...documents] = process.argv.slice(2);
const require = createRequire(join(modules, "noop.js"));
const { Parser } = require("@asyncapi/parser");
const parser = new Parser();

for (const document of documents) {
  const { diagnostics } = await parser.parse(readFileSync(document, "utf8"));
  console.log(JSON.stringify({
    document,
    diagnostics: diagnostics.map((d) => ({ severity: d.severity, code: String(d.code), message: d.message,
                                           path: d.path.join(".") })),
  }));
}
