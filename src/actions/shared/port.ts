// The one seam between an action's main and where it runs. A main takes an ActionPort and never
// reaches @actions/core itself: the Actions runtime (runtime.ts) wraps @actions/core, the CLI
// (src/cli/terminal-port.ts) prints to a terminal or as JSON. Both run the same main, so the CLI
// and the sandbox run exactly the workflow's code path from the main down (as actions/cache
// injects its state provider).
import { errorMessage, isExpectedError } from '../../lib/errors.js';
import type { InputSource } from '../../lib/inputs.js';
import type { Logger } from '../../lib/logger.js';
import { tableToMarkdown, type Table } from '../../lib/summary.js';

export interface ActionPort {
  /** An input as the runner hands it over: '' when not given, action.yml's default applied. */
  input: InputSource;
  logger: Logger;
  /** Registers a secret: no later line, output or summary shows it. */
  mask(value: string): void;
  setOutput(name: string, value: string): void;
  /** Appends markdown to the job summary. */
  summary(markdown: string): Promise<void>;
  /** The run failed with this message (shown alone, no stack trace). */
  fail(message: string): void;
}

/**
 * An action's secret input: masked whole (and line by line), or only its lines that match
 * `lines` (a pasted age key file: its comment lines hold the public key, which errors may name).
 */
export type SecretInput = string | { name: string; lines: RegExp };

/** Masks a secret, and each line of a multi-line one (private keys) as the runner does. */
export function maskSecret(port: ActionPort, value: string | undefined): void {
  if (!value) return;
  port.mask(value);
  for (const line of value.split(/\r?\n/)) if (line.trim().length >= 4) port.mask(line.trim());
}

/**
 * Masks every secret input an action declares, before anything else can print one; returns the
 * masked values (for text that leaves the runner's masking, such as an issue body).
 */
export function maskSecretInputs(port: ActionPort, secrets: readonly SecretInput[]): string[] {
  const values = secrets.flatMap((secret) =>
    typeof secret === 'string'
      ? [port.input(secret)]
      : port
          .input(secret.name)
          .split(/\r?\n/)
          .map((line) => line.trim())
          .filter((line) => secret.lines.test(line)),
  );
  const given = values.filter((v) => v !== '');
  for (const value of given) maskSecret(port, value);
  return given;
}

export function setOutputs(
  port: ActionPort,
  outputs: Record<string, string | number | boolean>,
): void {
  for (const [name, value] of Object.entries(outputs)) port.setOutput(name, String(value));
}

export async function writeSummary(port: ActionPort, parts: (string | Table)[]): Promise<void> {
  // Each part ends with an empty line, so a table never runs into the text before it.
  const blocks = parts.map((part) =>
    typeof part === 'string' ? `${part}\n` : tableToMarkdown(part),
  );
  await port.summary(blocks.map((block) => `${block}\n`).join(''));
}

/**
 * Runs an action's main and turns any failure into `fail`: expected errors (bad input, config,
 * an operational failure) show their message alone; anything else also logs its stack at debug
 * level so a bug report has it without flooding the user.
 */
export async function runAction(port: ActionPort, main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (err) {
    if (!isExpectedError(err) && err instanceof Error && err.stack) port.logger.debug(err.stack);
    port.fail(errorMessage(err));
  }
}
