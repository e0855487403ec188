// Runs an action's own main() in this process through a port (./terminal-port.ts), so the CLI and
// the sandbox use exactly the code the workflows use, with action.yml's defaults applied.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { ActionPort } from '../actions/shared/port.js';
import { InputError } from '../lib/errors.js';
import { terminalPort, type ActionResult } from './terminal-port.js';

export type { ActionResult };

export const actionNames = [
  'backup-verda',
  'sync-models',
  'deploy-serverless',
  'restore-drill',
  'verify-host',
  'restore-host',
  'provision-host',
] as const;
export type ActionName = (typeof actionNames)[number];

export interface ActionSpec {
  description?: string;
  inputs?: Record<string, { default?: string; required?: boolean; description?: string }>;
}

const packageRoot = path.resolve(import.meta.dirname, '../..');

export async function loadActionSpec(name: ActionName): Promise<ActionSpec> {
  const text = await readFile(path.join(packageRoot, 'actions', name, 'action.yml'), 'utf8');
  return parseYaml(text) as ActionSpec;
}

/** Every action's spec by name (what the CLI's usage lists). */
export async function loadActionSpecs(): Promise<Record<ActionName, ActionSpec>> {
  const specs = await Promise.all(actionNames.map(async (n) => [n, await loadActionSpec(n)]));
  return Object.fromEntries(specs) as Record<ActionName, ActionSpec>;
}

/** INPUT_<NAME> variables for an action's inputs, its action.yml defaults applied as the runner does. */
export function inputEnv(spec: ActionSpec, inputs: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(withDefaults(spec, inputs)).map(([input, value]) => [
      `INPUT_${input.replace(/ /g, '_').toUpperCase()}`,
      value,
    ]),
  );
}

/** Each action's main, loaded only when its command runs (help stays fast, no SDK loaded). */
const mains: Record<ActionName, () => Promise<{ run(port: ActionPort): Promise<void> }>> = {
  'backup-verda': () => import('../actions/backup-verda/main.js'),
  'sync-models': () => import('../actions/sync-models/main.js'),
  'deploy-serverless': () => import('../actions/deploy-serverless/main.js'),
  'restore-drill': () => import('../actions/restore-drill/main.js'),
  'verify-host': () => import('../actions/verify-host/main.js'),
  'restore-host': () => import('../actions/restore-host/main.js'),
  'provision-host': () => import('../actions/provision-host/main.js'),
};

/** Input values by name with action.yml's defaults applied, as the runner hands them over. */
export function withDefaults(
  spec: ActionSpec,
  inputs: Record<string, string>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [input, s] of Object.entries(spec.inputs ?? {}))
    out[input] = inputs[input] ?? s.default ?? '';
  return out;
}

/**
 * Runs one action's own main in this process through a terminal port: exactly the workflow's code
 * path from the main down. `inputs` are by action input name; unknown inputs are refused.
 */
export async function runActionInProcess(
  name: ActionName,
  inputs: Record<string, string>,
  opts: { quiet?: boolean; write?: (text: string) => void } = {},
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
  const terminal = terminalPort({
    inputs: withDefaults(spec, inputs),
    ...(opts.quiet !== undefined ? { quiet: opts.quiet } : {}),
    ...(opts.write ? { write: opts.write } : {}),
    debug: Boolean(process.env.COMFYUME_DEBUG),
  });
  const main = await mains[name]();
  await main.run(terminal.port);
  return terminal.result();
}
