// `comfyume-ops`: the actions' code from a laptop or a VPS, plus the embedded sandbox.
import { errorMessage, isExpectedError } from '../lib/errors.js';
import { loadActionSpec, loadActionSpecs, runActionInProcess } from './action-runner.js';
import { parseArgs, withEnvInputs } from './args.js';
import { flagProblems } from './command-help.js';
import { commands, helpAnswer, usage } from './help.js';

async function main(argv: string[]): Promise<number> {
  const help = await helpAnswer(parseArgs(argv, { readFiles: false }), loadActionSpecs);
  if (help) {
    process.stdout.write(help.stdout);
    return help.code;
  }
  const { command, flags } = parseArgs(argv);
  const action = command === undefined ? undefined : commands[command];
  if (command === 'sandbox') {
    // Ctrl-C or a kill: the stand-ins are stopped and the temp tree removed (awaited), then
    // process.exit, whose handlers still remove the sshd, its sudoers drop-in and key line.
    const { runSandbox, stopSandbox } = await import('./sandbox.js');
    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ] as const)
      process.once(signal, () => {
        const exit = () => process.exit(code);
        void stopSandbox().then(exit, exit);
        // A second signal, or a cleanup that hangs, does not keep the process alive.
        setTimeout(exit, 15_000).unref();
      });
    return (await runSandbox(flags)) ? 0 : 1;
  }
  // (No command at all was answered as help above.)
  if (command === undefined || !action) {
    process.stderr.write(`unknown command '${command}'\n${usage(await loadActionSpecs())}\n`);
    return 2;
  }
  const spec = await loadActionSpec(action);
  const { json, ...inputFlags } = flags;
  const inputs = withEnvInputs(Object.keys(spec.inputs ?? {}), inputFlags);
  const problems = flagProblems(command, spec, { ...inputs, ...(json ? { json } : {}) });
  if (problems.length > 0) {
    process.stderr.write(
      `${problems.map((p) => `error: ${p}`).join('\n')}\nsee: comfyume-ops ${command} --help\n`,
    );
    return 2;
  }
  if (json !== undefined) {
    const result = await runActionInProcess(action, inputs, {
      write: (text) => void process.stderr.write(text),
    });
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return result.ok ? 0 : 1;
  }
  const result = await runActionInProcess(action, inputs);
  for (const [name, value] of Object.entries(result.outputs))
    process.stdout.write(`${name}=${value}\n`);
  return result.ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`error: ${errorMessage(err)}\n`);
    if (!isExpectedError(err) && err instanceof Error && err.stack)
      process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  },
);
