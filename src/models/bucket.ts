// The vault side: one listing of the prefix (ListObjectsV2 pages of 1,000, never a HEAD per
// file), the models-manifest.json written last by every push, and pending multipart uploads.
import { z } from 'zod';
import { OpsError, errorMessage } from '../lib/errors.js';
import type { R2Store } from '../lib/r2-store.js';
import { schemaProblems } from '../lib/schema.js';
import { unsafePathReason } from '../lib/safe-path.js';
import { modelPathProblem, refuseUnsafePaths } from './model-path.js';

export const MANIFEST_NAME = 'models-manifest.json';

export interface VaultObject {
  /** Relative to the prefix. */
  path: string;
  size: number;
}

export interface Vault {
  store: R2Store;
  /** '' or 'models/' (always ends with '/' when set). */
  prefix: string;
}

/** r2://bucket/prefix, for messages. */
export const vaultUrl = (v: Vault, rel = ''): string => `r2://${v.store.bucket}/${v.prefix}${rel}`;

export const vaultKey = (v: Vault, rel: string): string => `${v.prefix}${rel}`;

export const normalizePrefix = (prefix: string): string => {
  const p = prefix.replace(/^\/+|\/+$/g, '');
  return p ? `${p}/` : '';
};

/**
 * Every object under the prefix; the manifest itself is returned apart. The listing is untrusted:
 * a key that is not a safe model path under the prefix fails the whole listing (nothing has been
 * written yet), so no caller ever joins one onto a directory.
 */
export async function listVault(
  v: Vault,
): Promise<{ objects: VaultObject[]; hasManifest: boolean }> {
  const objects: VaultObject[] = [];
  const refused: string[] = [];
  let hasManifest = false;
  for (const o of await v.store.list(v.prefix)) {
    const { key, size } = o;
    const rel = key.startsWith(v.prefix) ? key.slice(v.prefix.length) : undefined;
    if (rel === MANIFEST_NAME) {
      hasManifest = true;
      continue;
    }
    // A console's empty "folder" object (`checkpoints/`): nothing to sync.
    if (rel === '' || (rel?.endsWith('/') && size === 0 && !unsafePathReason(rel.slice(0, -1))))
      continue;
    const problem =
      rel === undefined
        ? `it is not under the prefix ${JSON.stringify(v.prefix)}`
        : (modelPathProblem(rel) ??
          (Number.isSafeInteger(size) && size >= 0 ? undefined : `its size ${size} is invalid`));
    if (problem) refused.push(`${JSON.stringify(key)} (${problem})`);
    else if (rel !== undefined) objects.push({ path: rel, size });
  }
  refuseUnsafePaths(
    `bucket ${v.store.bucket} lists ${refused.length} key(s) that are not safe model paths under ${JSON.stringify(v.prefix)}`,
    refused,
    'remove or rename them in the bucket',
  );
  return { objects, hasManifest };
}

const modelPath = z.string().superRefine((value, ctx) => {
  const problem = modelPathProblem(value);
  if (problem)
    ctx.addIssue({ code: 'custom', message: `path ${JSON.stringify(value)}: ${problem}` });
});

/** models-manifest.json, as every push writes it; anything else in the file is refused. */
const manifestSchema = z.strictObject({
  version: z.literal(1),
  updated: z.iso.datetime(),
  files: z
    .array(
      z.strictObject({
        path: modelPath,
        size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'sha256 must be 64 lowercase hex characters'),
      }),
    )
    .superRefine((files, ctx) => {
      const seen = new Set<string>();
      files.forEach((f, i) => {
        if (seen.has(f.path))
          ctx.addIssue({
            code: 'custom',
            path: [i, 'path'],
            message: `duplicate path ${JSON.stringify(f.path)}`,
          });
        seen.add(f.path);
      });
    }),
});

export type VaultManifest = z.infer<typeof manifestSchema>;

export async function readManifest(
  v: Vault,
): Promise<Map<string, { size: number; sha256: string }>> {
  const key = vaultKey(v, MANIFEST_NAME);
  const text = (await v.store.getText(key)) ?? '';
  return parseManifestText(text, `${key} in bucket ${v.store.bucket}`);
}

/** A models-manifest.json's text (from the bucket or a downloaded copy); `where` names it in errors. */
export function parseManifestText(
  text: string,
  where: string,
): Map<string, { size: number; sha256: string }> {
  const invalid = (why: string): OpsError =>
    new OpsError(`${where} is not a valid models manifest: ${why}`);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw invalid(errorMessage(err));
  }
  const parsed = manifestSchema.safeParse(data);
  if (!parsed.success) {
    const issues = schemaProblems(parsed.error);
    throw invalid(issues.slice(0, 10).join('; ') + (issues.length > 10 ? '; ...' : ''));
  }
  return new Map(parsed.data.files.map((f) => [f.path, { size: f.size, sha256: f.sha256 }]));
}

export async function writeManifest(
  v: Vault,
  files: Map<string, { size: number; sha256: string }>,
): Promise<string> {
  const key = vaultKey(v, MANIFEST_NAME);
  const body: VaultManifest = {
    version: 1,
    updated: new Date().toISOString(),
    files: [...files].sort(([a], [b]) => (a < b ? -1 : 1)).map(([path, f]) => ({ path, ...f })),
  };
  const text = `${JSON.stringify(body, null, 2)}\n`;
  await v.store.put(key, text, { contentType: 'application/json' });
  return key;
}
