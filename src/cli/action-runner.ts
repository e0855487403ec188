// Runs an action's own main() in this process, the way the Actions runner would, so the CLI and
// the sandbox use exactly the code the workflows use: inputs become INPUT_* variables (action.yml
// defaults applied), outputs and the job summary go to temp files that we print afterwards.
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { InputError } from '../lib/errors.js';

export const actionNames = [
  'backup-verda',
  'sync-models',
  'deploy-serverless',
  'restore-drill',
] as const;
export type ActionName = (typeof actionNames)[number];

interface ActionSpec {
  inputs?: Record<string, { default?: string; required?: boolean; description?: string }>;
}

export interface ActionResult {
  ok: boolean;
  outputs: Record<string, string>;
  summary: string;
}

const packageRoot = path.resolve(import.meta.dirname, '../..');

export async function loadActionSpec(name: ActionName): Promise<ActionSpec> {
  const text = await readFile(path.join(packageRoot, 'actions', name, 'action.yml'), 'utf8');
  return parseYaml(text) as ActionSpec;
}

/** INPUT_<NAME> variables for an action's inputs, its action.yml defaults applied as the runner does. */
export function inputEnv(spec: ActionSpec, inputs: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [input, s] of Object.entries(spec.inputs ?? {}))
    env[`INPUT_${input.replace(/ /g, '_').toUpperCase()}`] = inputs[input] ?? s.default ?? '';
  return env;
}

/** Parses the GITHUB_OUTPUT file format (name=value and heredoc name<<DELIM). */
export function parseOutputFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const value: string[] = [];
      for (i++; i < lines.length && lines[i] !== heredoc[2]; i++) value.push(lines[i] ?? '');
      out[heredoc[1] ?? ''] = value.join('\n');
    } else if (line.includes('=')) {
      out[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1);
    }
  }
  return out;
}

/**
 * Workflow commands are for the runner; on a terminal they become plain lines, and add-mask
 * lines (which carry the secret itself) are dropped.
 */
export function rewriteWorkflowCommands(text: string, showDebug = false): string {
  return text
    .split(/(?<=\n)/)
    .filter((line) => !line.startsWith('::add-mask::') && !line.startsWith('::endgroup::'))
    .filter((line) => showDebug || !line.startsWith('::debug::'))
    .map((line) =>
      line
        .replace(/^::group::/, '== ')
        .replace(/^::(warning|error|notice|debug)[^:]*::/, (_m, kind: string) => `${kind}: `)
        .replace(/%0A/g, '\n')
        .replace(/%0D/g, '\r')
        .replace(/%25/g, '%'),
    )
    .join('');
}

let summaryFilePromise: Promise<string> | undefined;

function processSummaryFile(): Promise<string> {
  summaryFilePromise ??= (async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'comfyume-ops-summary-'));
    const file = path.join(dir, 'summary.md');
    await writeFile(file, '');
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return file;
  })();
  return summaryFilePromise;
}

/** Runs one action; `inputs` are by action input name. Unknown inputs are refused. */
export async function runActionInProcess(
  name: ActionName,
  inputs: Record<string, string>,
  opts: { quiet?: boolean } = {},
): Promise<ActionResult> {
  const spec = await loadActionSpec(name);
  const declared = spec.inputs ?? {};
  for (const key of Object.keys(inputs)) {
    if (!(key in declared)) {
      throw new InputError(
        key,
        inputs[key] === undefined ? '' : '(given)',
        `one of the inputs of ${name}: ${Object.keys(declared).join(', ')}`,
      );
    }
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), `comfyume-ops-${name}-`));
  const outputFile = path.join(dir, 'output');
  await writeFile(outputFile, '');
  // @actions/core remembers the summary file of its first use, so one file serves the whole
  // process and each run reads what it appended.
  const summaryFile = await processSummaryFile();
  const summaryStart = (await readFile(summaryFile)).length;

  const saved = { ...process.env };
  const savedExitCode = process.exitCode;
  const write = process.stdout.write.bind(process.stdout);
  try {
    Object.assign(process.env, inputEnv(spec, inputs));
    process.env.GITHUB_OUTPUT = outputFile;
    process.env.GITHUB_STEP_SUMMARY = summaryFile;
    process.env.RUNNER_TEMP ??= dir;
    process.exitCode = 0;
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      if (opts.quiet) return true;
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
      const showDebug = Boolean(process.env.COMFYUME_DEBUG);
      return write(rewriteWorkflowCommands(text, showDebug), ...(rest as []));
    }) as typeof process.stdout.write;
    const mod = (await import(`../actions/${name}/main.js`)) as { run: () => Promise<void> };
    await mod.run();
    const ok = !process.exitCode;
    return {
      ok,
      outputs: parseOutputFile(await readFile(outputFile, 'utf8')),
      summary: (await readFile(summaryFile)).subarray(summaryStart).toString('utf8'),
    };
  } finally {
    process.stdout.write = write;
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
    process.exitCode = savedExitCode;
    await rm(dir, { recursive: true, force: true });
  }
}
