// The one rule for a model's path under the models directory, wherever the path comes from: a
// bucket key, models-manifest.json, config/models.yml or the host's own listing (on push).
import { OpsError } from '../lib/errors.js';
import { SAFE_PATH_EXPECTED, unsafePathReason } from '../lib/safe-path.js';

export const PARTIAL_SUFFIX = '.partial';

/** Why `rel` cannot be a model path, or undefined when it can. */
export function modelPathProblem(rel: string): string | undefined {
  return (
    unsafePathReason(rel) ??
    (rel.endsWith(PARTIAL_SUFFIX)
      ? `it ends in '${PARTIAL_SUFFIX}' (the name of a download in progress)`
      : undefined)
  );
}

/** `"path" (why)` for every path that cannot be a model path. */
export function unsafeModelPaths(paths: Iterable<string>): string[] {
  const out: string[] = [];
  for (const p of paths) {
    const problem = modelPathProblem(p);
    if (problem) out.push(`${JSON.stringify(p)} (${problem})`);
  }
  return out;
}

/** Throws one error naming the refused paths (from unsafeModelPaths or alike), if there are any. */
export function refuseUnsafePaths(what: string, refused: string[], remedy: string): void {
  if (refused.length === 0) return;
  const shown = refused.slice(0, 10).join(', ') + (refused.length > 10 ? ', ...' : '');
  throw new OpsError(
    `${what}: ${shown}; expected ${SAFE_PATH_EXPECTED}. Nothing was written; ${remedy}.`,
  );
}
