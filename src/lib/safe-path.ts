// Relative paths that come from untrusted places (bucket keys, a bucket's manifest, config files)
// and are joined onto a local or remote directory. Only a plain relative path is accepted: one that
// cannot name anything outside its root, whatever the OS or shell does with it.
import path from 'node:path';
import { z } from 'zod';
import { OpsError } from './errors.js';

/** What a safe relative path is, for error messages. */
export const SAFE_PATH_EXPECTED =
  "a relative path of '/'-separated names, without '.', '..' or empty segments, '\\' or control characters";

// C0 controls (NUL, newline, ...), DEL and C1 controls: matching them is the point.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Whether text holds a control character: none belongs in a path, a name or a one-line value. */
export const hasControlChars = (value: string) => CONTROL.test(value);

/** Why `value` is not a safe relative path, or undefined when it is one. */
export function unsafePathReason(value: string): string | undefined {
  if (value === '') return 'it is empty';
  if (value.startsWith('/')) return 'it is absolute';
  if (CONTROL.test(value)) return 'it contains a control character';
  if (value.includes('\\')) return "it contains '\\'";
  const segments = value.split('/');
  if (segments.includes('..')) return "it has a '..' segment";
  if (segments.includes('.')) return "it has a '.' segment";
  if (segments.includes('')) return 'it has an empty segment';
  return undefined;
}

/**
 * `root` joined with the checked relative path `rel`; throws an OpsError naming `what` and the
 * value when `rel` is unsafe or would resolve outside `root`. `p` is path.posix for remote hosts.
 */
export function resolveInside(
  root: string,
  rel: string,
  what = 'path',
  p: path.PlatformPath = path,
): string {
  const reason = unsafePathReason(rel);
  const base = p.resolve(root);
  const full = p.resolve(base, rel);
  if (reason !== undefined || !full.startsWith(base === p.sep ? base : `${base}${p.sep}`)) {
    throw new OpsError(
      `${what} ${JSON.stringify(rel)} is refused: ${reason ?? `it resolves outside ${root}`}; expected ${SAFE_PATH_EXPECTED}`,
    );
  }
  return full;
}

/** An absolute path without '.', '..', empty segments or control characters. */
export function absolutePath(what: string, opts: { glob?: boolean } = {}) {
  return z.string().superRefine((value, ctx) => {
    const problem = pathProblem(value, opts.glob ?? false);
    if (problem)
      ctx.addIssue({ code: 'custom', message: `${what} ${JSON.stringify(value)} ${problem}` });
  });
}

function pathProblem(value: string, glob: boolean): string | undefined {
  if (!value.startsWith('/')) return 'must be absolute (start with /)';
  if (hasControlChars(value)) return 'must not contain control characters';
  const segments = value === '/' ? [] : value.slice(1).replace(/\/$/, '').split('/');
  if (segments.some((s) => s === '..')) return "must not contain '..'";
  if (segments.some((s) => s === '.' || s === '')) return "must not contain '.' or empty segments";
  const globbed = segments.findIndex((s) => /[*?]/.test(s));
  if (/[[\]{}]/.test(value)) return 'must not contain [ ] { } (only * and ? globs are supported)';
  if (globbed >= 0 && (!glob || globbed !== segments.length - 1)) {
    return glob ? 'may use * or ? only in its last segment' : 'must not contain * or ?';
  }
  return undefined;
}
