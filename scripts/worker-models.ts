// Writes (or with --check, verifies) comfyui-worker/models.json from config/models.yml and,
// optionally, a downloaded models-manifest.json of the vault for the sizes models.yml lacks:
//   node --import tsx scripts/worker-models.ts [--manifest models-manifest.json] [--check]
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { errorMessage } from '../src/lib/errors.js';
import { parseManifestText } from '../src/models/bucket.js';
import { loadModelsConfig } from '../src/models/config.js';
import { renderWorkerModelList, workerModelList } from '../src/models/worker-models.js';

const root = path.resolve(import.meta.dirname, '..');

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', default: 'config/models.yml' },
      manifest: { type: 'string' },
      out: { type: 'string', default: 'comfyui-worker/models.json' },
      check: { type: 'boolean', default: false },
    },
  });
  const config = await loadModelsConfig(values.config);
  const manifest =
    values.manifest === undefined
      ? undefined
      : parseManifestText(readFileSync(values.manifest, 'utf8'), values.manifest);
  const text = renderWorkerModelList(workerModelList(config, manifest));
  if (values.check) {
    let current = '';
    try {
      current = readFileSync(values.out, 'utf8');
    } catch {
      // a missing file is out of date too
    }
    if (current !== text) {
      process.stderr.write(
        `${values.out} is out of date with ${values.config}: run node --import tsx ${path.relative(root, import.meta.filename)}\n`,
      );
      return 1;
    }
    return 0;
  }
  writeFileSync(values.out, text);
  process.stderr.write(`wrote ${values.out}: the required models of ${values.config}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`worker-models: ${errorMessage(err)}\n`);
    process.exit(1);
  },
);
