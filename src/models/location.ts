// A model directory: a local path, or ssh://user@host:port/absolute/path on the GPU host.
import { InputError } from '../lib/errors.js';

export type ModelLocation =
  | { kind: 'local'; dir: string }
  | { kind: 'ssh'; user: string; host: string; port: number; dir: string };

const SSH_EXPECTED =
  'ssh://user@host:port/absolute/path (port optional, default 22) or a local directory';

export function parseLocation(input: string, value: string): ModelLocation {
  if (!value.includes('://')) {
    if (value.trim() === '')
      throw new InputError(input, value, 'a local directory or ' + SSH_EXPECTED);
    return { kind: 'local', dir: value };
  }
  const m =
    /^ssh:\/\/([A-Za-z_][A-Za-z0-9_.-]*)@(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(\/[^\0\n]*)$/.exec(
      value,
    );
  const port = Number(m?.[3] ?? 22);
  if (!m || port < 1 || port > 65535 || (m[4] ?? '').split('/').includes('..'))
    throw new InputError(input, value, SSH_EXPECTED);
  return {
    kind: 'ssh',
    user: m[1] ?? '',
    host: (m[2] ?? '').replace(/^\[|\]$/g, ''),
    port,
    dir: (m[4] ?? '/').replace(/(.)\/+$/, '$1'),
  };
}
