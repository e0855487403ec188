// The CLI's side of the action port: the same main as the workflow, with its inputs from flags
// (action.yml's defaults applied, as the runner does), its log on a terminal, outputs and the
// summary collected for the caller, and every masked secret replaced by *** in what it prints.
import type { ActionPort } from '../actions/shared/port.js';
import type { Logger } from '../lib/logger.js';

export interface ActionResult {
  ok: boolean;
  outputs: Record<string, string>;
  /** The job summary, markdown. */
  summary: string;
}

export interface TerminalOptions {
  /** Input values by name, the defaults already applied. */
  inputs: Record<string, string>;
  /** Where lines go (default: stdout); nothing is written when quiet. */
  write?: (text: string) => void;
  quiet?: boolean;
  /** Show debug lines too. */
  debug?: boolean;
}

/** A port that prints to a terminal, and what the run produced once it is over. */
export function terminalPort(opts: TerminalOptions): { port: ActionPort; result(): ActionResult } {
  const secrets = new Set<string>();
  const outputs: Record<string, string> = {};
  let summary = '';
  let ok = true;
  const redact = (text: string) =>
    [...secrets].sort((a, b) => b.length - a.length).reduce((t, s) => t.split(s).join('***'), text);
  const write = opts.write ?? ((text: string) => void process.stdout.write(text));
  const print = (text: string) => {
    if (!opts.quiet) write(`${redact(text)}\n`);
  };
  const logger: Logger = {
    debug: (m) => (opts.debug ? print(`debug: ${m}`) : undefined),
    info: (m) => print(m),
    warn: (m) => print(`warning: ${m}`),
    error: (m) => print(`error: ${m}`),
    group: async (title, fn) => {
      print(`== ${title}`);
      return fn();
    },
  };
  const port: ActionPort = {
    input: (name) => (opts.inputs[name] ?? '').trim(),
    logger,
    // A value of a few characters would turn every word that holds it into ***; none is a real key.
    mask: (value) => void (value.length >= 4 && secrets.add(value)),
    setOutput: (name, value) => void (outputs[name] = value),
    summary: async (markdown) => void (summary += markdown),
    fail: (message) => {
      ok = false;
      logger.error(message);
    },
  };
  return {
    port,
    result: () => ({
      ok,
      outputs: Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, redact(v)])),
      summary: redact(summary),
    }),
  };
}
