// Validate glTF assets with the Khronos glTF validator; prints one JSON report per file.
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

for (const path of process.argv.slice(2)) {
  const bytes = new Uint8Array(await readFile(path));
  const report = await validator.validateBytes(bytes, { uri: path, maxIssues: 100 });
  console.log(JSON.stringify({ path, errors: report.issues.numErrors, warnings: report.issues.numWarnings,
                               messages: report.issues.messages.filter((m) => m.severity <= 1) }));
}
