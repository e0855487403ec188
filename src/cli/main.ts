// `comfyume-ops`: the actions' code from a laptop or a VPS, plus the embedded sandbox.
import { errorMessage, isExpectedError } from '../lib/errors.js';
import { loadActionSpec, runActionInProcess, type ActionName } from './action-runner.js';
import { parseArgs, withEnvInputs } from './args.js';
import { commandHelp, flagProblems } from './command-help.js';
import { TOOL_VERSION } from '../backup/version.js';

const commands: Record<string, ActionName> = {
  backup: 'backup-verda',
  'sync-models': 'sync-models',
  deploy: 'deploy-serverless',
  'restore-drill': 'restore-drill',
  'verify-host': 'verify-host',
  'restore-host': 'restore-host',
  'provision-host': 'provision-host',
};

async function usage(): Promise<string> {
  const lines = ['usage: comfyume-ops <command> [--input value ...]', '', 'commands:'];
  for (const [command, action] of Object.entries(commands)) {
    const spec = await loadActionSpec(action);
    lines.push(
      `  ${command.padEnd(12)} actions/${action}: --${Object.keys(spec.inputs ?? {}).join(' --')}`,
    );
  }
  lines.push(
    '  sandbox      run the nightly backup, the model sync and a workshop start against local stand-ins',
  );
  lines.push(
    '',
    'Any input may be given as --name-file PATH (read from a file) or COMFYUME_<NAME> in the environment.',
    '--json prints one JSON object {ok, outputs, summary} on stdout and the log on stderr.',
    '--version prints the version; comfyume-ops <command> --help lists its inputs.',
  );
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const { command, flags } = parseArgs(argv);
  if (flags.version !== undefined || command === 'version') {
    process.stdout.write(`comfyume-ops ${TOOL_VERSION}\n`);
    return 0;
  }
  const action = command === undefined ? undefined : commands[command];
  if (command !== undefined && action && flags.help !== undefined) {
    process.stdout.write(`${commandHelp(command, action, await loadActionSpec(action))}\n`);
    return 0;
  }
  if (command === undefined || command === 'help' || flags.help !== undefined) {
    process.stdout.write(`${await usage()}\n`);
    // Asked for help: 0; called with nothing to do: a usage error.
    return command === undefined && flags.help === undefined ? 2 : 0;
  }
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
  if (!action) {
    process.stderr.write(`unknown command '${command}'\n${await usage()}\n`);
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
