// The one way a failed schema check is told: a line per problem, `<where>: <message>`, where
// `where` reads as the document does (items[0].after-restore) and `(top level)` is the document
// itself. Config files, stored manifests and API answers all report through it.
import type { z } from 'zod';
import { ConfigError } from './errors.js';

export function issuePath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`))
    .join('');
}

/** One line per problem of a failed parse; unknown keys are named. */
export function schemaProblems(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const keys = issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : '';
    const named = keys && !issue.message.includes(keys) ? `: ${keys}` : '';
    return `${issuePath(issue.path)}: ${issue.message}${named}`;
  });
}

/** Data checked by a schema, or a ConfigError naming the file and every problem. */
export function parseWithSchema<S extends z.ZodType>(
  schema: S,
  data: unknown,
  file: string,
): z.infer<S> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  throw new ConfigError(file, schemaProblems(result.error));
}
