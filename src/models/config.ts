// config/models.yml: the models a host needs, with their HuggingFace source URLs (the seed's
// Option B). Validated with zod before anything connects; duplicate paths are an error.
import { z } from 'zod';
import { ConfigError } from '../lib/errors.js';
import { SAFE_PATH_EXPECTED } from '../lib/safe-path.js';
import { parseWithSchema } from '../lib/schema.js';
import { readYamlFile } from '../lib/yaml-file.js';
import { modelPathProblem } from './model-path.js';

export interface ModelEntry {
  /** Relative path under the models directory, e.g. checkpoints/x.safetensors. */
  path: string;
  size?: number;
  sha256?: string;
  url?: string;
  required: boolean;
}

export interface ModelManifestConfig {
  file: string;
  models: ModelEntry[];
}

// Joined onto the models directory (local or on the host) and used as a bucket key.
const relativePath = z.string().superRefine((value, ctx) => {
  const problem = modelPathProblem(value);
  if (problem)
    ctx.addIssue({
      code: 'custom',
      message: `path ${JSON.stringify(value)} is refused: ${problem}; expected ${SAFE_PATH_EXPECTED} under the models directory`,
    });
});

const modelSchema = z.strictObject({
  path: relativePath,
  size: z.number().int().nonnegative().nullish(),
  sha256: z
    .string()
    .regex(/^([0-9a-f]{64})?$/, 'sha256 must be 64 lowercase hex characters or empty')
    .nullish(),
  url: z.url({ protocol: /^https?$/, error: 'url must be an http(s) URL' }).nullish(),
  required: z.boolean().default(true),
});

const fileSchema = z.strictObject({ models: z.array(modelSchema) });

/** Validates parsed YAML; `file` names the source in errors. */
export function parseModelsConfig(file: string, data: unknown): ModelManifestConfig {
  const parsed = parseWithSchema(fileSchema, data, file);
  const seen = new Map<string, number>();
  const problems: string[] = [];
  const models = parsed.models.map((m, i): ModelEntry => {
    const first = seen.get(m.path);
    if (first !== undefined) {
      problems.push(
        `models[${i}].path: duplicate path ${JSON.stringify(m.path)} (also models[${first}])`,
      );
    }
    seen.set(m.path, i);
    return {
      path: m.path,
      required: m.required,
      ...(m.size != null ? { size: m.size } : {}),
      ...(m.sha256 ? { sha256: m.sha256 } : {}),
      ...(m.url ? { url: m.url } : {}),
    };
  });
  if (problems.length) throw new ConfigError(file, problems);
  return { file, models };
}

export async function loadModelsConfig(file: string): Promise<ModelManifestConfig> {
  return parseModelsConfig(file, await readYamlFile(file));
}
