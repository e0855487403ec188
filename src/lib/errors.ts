/** A bad action input or CLI flag: names the input, the value given and what is expected. */
export class InputError extends Error {
  constructor(
    readonly input: string,
    readonly value: string,
    readonly expected: string,
  ) {
    super(`Input '${input}' is invalid: got ${quote(value)}; expected ${expected}.`);
    this.name = 'InputError';
  }
}

/** A config file that does not match its schema: names the file, the field path and the problem. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`Config ${file} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** A failure the user must act on, reported as its message alone (no stack trace). */
export class OpsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OpsError';
  }
}

/** Errors whose message is the whole story; anything else is a bug and keeps its stack. */
export function isExpectedError(err: unknown): err is InputError | ConfigError | OpsError {
  return err instanceof InputError || err instanceof ConfigError || err instanceof OpsError;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Quotes a value for an error message; secrets must never be passed here (callers redact). */
export function quote(value: string): string {
  const shown = value.length > 120 ? `${value.slice(0, 117)}...` : value;
  return JSON.stringify(shown);
}
