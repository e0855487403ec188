import { readFileSync } from 'node:fs';
import { InputError } from '../lib/errors.js';

export interface ParsedArgs {
  command: string | undefined;
  flags: Record<string, string>;
}

/**
 * `--name value`, `--name=value`, a bare `--flag` (= "true"), and `--name-file PATH` which reads
 * the value from a file (keeps secrets such as private keys off the command line).
 * Inputs may also come from COMFYUME_<NAME> environment variables (NAME upper-snake-case).
 */
export function parseArgs(argv: string[], opts: { readFiles?: boolean } = {}): ParsedArgs {
  const flags: Record<string, string> = {};
  let command: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('--')) {
      if (command === undefined) command = arg;
      else throw new InputError('arguments', arg, 'one command followed by --flags');
      continue;
    }
    const eq = arg.indexOf('=');
    let name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    let value: string;
    if (eq > 0) value = arg.slice(eq + 1);
    else if (i + 1 < argv.length && !(argv[i + 1] ?? '').startsWith('--')) value = argv[++i] ?? '';
    else value = 'true';
    if (name.endsWith('-file') && name !== 'file') {
      name = name.slice(0, -'-file'.length);
      // Without readFiles (deciding whether this is a help request) the value stays the path.
      if (opts.readFiles !== false)
        try {
          value = readFileSync(value, 'utf8');
        } catch {
          throw new InputError(`${name}-file`, value, 'a readable file');
        }
    }
    flags[name] = value;
  }
  return { command, flags };
}

/** Fills inputs not given as flags from COMFYUME_<INPUT_NAME> environment variables. */
export function withEnvInputs(
  names: string[],
  flags: Record<string, string>,
  env: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const out = { ...flags };
  for (const name of names) {
    const value = env[`COMFYUME_${name.replace(/-/g, '_').toUpperCase()}`];
    if (out[name] === undefined && value !== undefined) out[name] = value;
  }
  return out;
}
