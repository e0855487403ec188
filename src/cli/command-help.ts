// What a command of the CLI takes, from its action.yml (the one source of inputs and defaults):
// per-command help, and the flags checked before anything runs: an unknown flag is named with
// the nearest input, every missing required input is listed at once.
import type { ActionSpec } from './action-runner.js';

/** Inputs that hold a secret: better given as --NAME-file or COMFYUME_NAME than on the command line. */
const SECRET_NAME = /(key|secret|token|identity|password)$/;
/** Flags of the CLI itself, not inputs. */
export const CLI_FLAGS = ['json', 'help', 'version'] as const;

export function commandHelp(command: string, action: string, spec: ActionSpec): string {
  const lines = [
    `usage: comfyume-ops ${command} [--input value ...]   (actions/${action})`,
    '',
    ...wrap(spec.description ?? '', 78),
    '',
    'inputs:',
  ];
  for (const [name, input] of Object.entries(spec.inputs ?? {})) {
    const tags = [
      input.required ? 'required' : undefined,
      input.default !== undefined && input.default !== '' ? `default ${input.default}` : undefined,
      SECRET_NAME.test(name) ? `secret: --${name}-file PATH or ${envName(name)}` : undefined,
    ].filter((t) => t !== undefined);
    lines.push(`  --${name}${tags.length ? `  (${tags.join('; ')})` : ''}`);
    lines.push(...wrap(input.description ?? '', 72).map((l) => `      ${l}`));
  }
  lines.push(
    '',
    'Every input may also be given as --NAME-file PATH or COMFYUME_<NAME> in the environment.',
    '--json prints {ok, outputs, summary} on stdout and the log on stderr.',
  );
  return lines.join('\n');
}

export function envName(input: string): string {
  return `COMFYUME_${input.replace(/-/g, '_').toUpperCase()}`;
}

/**
 * What is wrong with the flags given for a command, all at once: unknown flags (with the nearest
 * input) and required inputs that are neither flags nor environment variables.
 */
export function flagProblems(
  command: string,
  spec: ActionSpec,
  given: Record<string, string>,
): string[] {
  const names = Object.keys(spec.inputs ?? {});
  const problems: string[] = [];
  for (const flag of Object.keys(given)) {
    if (names.includes(flag) || (CLI_FLAGS as readonly string[]).includes(flag)) continue;
    const near = nearest(flag, names);
    problems.push(
      `unknown flag --${flag} for ${command}${near ? ` (did you mean --${near}?)` : ''}`,
    );
  }
  const missing = Object.entries(spec.inputs ?? {})
    .filter(([name, s]) => s.required && !s.default && (given[name] ?? '') === '')
    .map(([name]) => `--${name}`);
  if (missing.length > 0)
    problems.push(`missing required input(s) for ${command}: ${missing.join(', ')}`);
  return problems;
}

/** The input closest to a mistyped flag, when it is close enough to be what was meant. */
function nearest(flag: string, names: string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const name of names) {
    const d = distance(flag, name);
    if (!best || d < best.d) best = { name, d };
  }
  return best && best.d <= Math.max(2, Math.floor(flag.length / 3)) ? best.name : undefined;
}

/** Levenshtein distance. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = row;
  }
  return prev[b.length] ?? 0;
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out;
}
