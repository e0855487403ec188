import * as core from '@actions/core';
import { errorMessage, isExpectedError } from '../../lib/errors.js';
import type { InputSource } from '../../lib/inputs.js';
import type { Logger } from '../../lib/logger.js';
import { tableToMarkdown, type Table } from '../../lib/summary.js';

/** Inputs exactly as the runner hands them over (INPUT_<NAME> env), via @actions/core. */
export const actionInputs: InputSource = (name) => core.getInput(name);

/** The core logger on top of @actions/core: warnings become annotations, groups fold. */
export const actionsLogger: Logger = {
  debug: (m) => core.debug(m),
  info: (m) => core.info(m),
  warn: (m) => core.warning(m),
  error: (m) => core.error(m),
  group: (title, fn) => core.group(title, fn),
};

/**
 * An action's secret input: masked whole (and line by line), or only its lines that match
 * `lines` (a pasted age key file: its comment lines hold the public key, which errors may name).
 */
export type SecretInput = string | { name: string; lines: RegExp };

/**
 * Masks every secret input an action declares, before anything else can print one; returns the
 * masked values (for text that leaves the runner's masking, such as an issue body).
 */
export function maskSecretInputs(secrets: readonly SecretInput[]): string[] {
  const values = secrets.flatMap((secret) =>
    typeof secret === 'string'
      ? [actionInputs(secret)]
      : actionInputs(secret.name)
          .split(/\r?\n/)
          .map((line) => line.trim())
          .filter((line) => secret.lines.test(line)),
  );
  const given = values.filter((v) => v !== '');
  for (const value of given) maskSecret(value);
  return given;
}

/** Registers a secret with the runner so it is masked in every later log line. */
export function maskSecret(value: string | undefined): void {
  if (!value) return;
  core.setSecret(value);
  // Multi-line secrets (private keys) are masked line by line as the runner does.
  for (const line of value.split(/\r?\n/)) if (line.trim().length >= 4) core.setSecret(line.trim());
}

export function setOutputs(outputs: Record<string, string | number | boolean>): void {
  for (const [name, value] of Object.entries(outputs)) core.setOutput(name, String(value));
}

export async function writeSummary(parts: (string | Table)[]): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return;
  for (const part of parts)
    core.summary.addRaw(typeof part === 'string' ? `${part}\n` : tableToMarkdown(part), true);
  await core.summary.write();
}

/**
 * Runs an action's main and turns any failure into core.setFailed: expected errors (bad input,
 * config, an operational failure) show their message alone; anything else also logs its stack at
 * debug level so a bug report has it without flooding the user.
 */
export async function runAction(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (err) {
    if (!isExpectedError(err) && err instanceof Error && err.stack) core.debug(err.stack);
    core.setFailed(errorMessage(err));
  }
}
