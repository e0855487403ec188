/** The small logger core logic takes; the actions back it with @actions/core, the CLI with stderr. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  /** A warning the user should see (an annotation in Actions). */
  warn(message: string): void;
  error(message: string): void;
  /** Runs fn inside a collapsible group named title. */
  group<T>(title: string, fn: () => Promise<T>): Promise<T>;
}

export interface ConsoleLoggerOptions {
  debug?: boolean;
  write?: (line: string) => void;
}

export function consoleLogger(options: ConsoleLoggerOptions = {}): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  return {
    debug: (m) => {
      if (options.debug) write(`debug: ${m}`);
    },
    info: (m) => write(m),
    warn: (m) => write(`warning: ${m}`),
    error: (m) => write(`error: ${m}`),
    group: async (title, fn) => {
      write(`== ${title}`);
      return fn();
    },
  };
}

/** Keeps every line, for tests and for summaries built after the fact. */
export interface MemoryLogger extends Logger {
  lines: { level: 'debug' | 'info' | 'warn' | 'error' | 'group'; message: string }[];
  warnings(): string[];
}

export function memoryLogger(): MemoryLogger {
  const lines: MemoryLogger['lines'] = [];
  return {
    lines,
    debug: (message) => lines.push({ level: 'debug', message }),
    info: (message) => lines.push({ level: 'info', message }),
    warn: (message) => lines.push({ level: 'warn', message }),
    error: (message) => lines.push({ level: 'error', message }),
    group: async (title, fn) => {
      lines.push({ level: 'group', message: title });
      return fn();
    },
    warnings: () => lines.filter((l) => l.level === 'warn').map((l) => l.message),
  };
}

export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  group: async (_title, fn) => fn(),
};
