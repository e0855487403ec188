// `comfyume-ops`: the actions' code from a laptop or a VPS, plus the embedded sandbox.
import { errorMessage, isExpectedError } from '../lib/errors.js';
import { loadActionSpec, runActionInProcess, type ActionName } from './action-runner.js';
import { parseArgs, withEnvInputs } from './args.js';

const commands: Record<string, ActionName> = {
  backup: 'backup-verda',
  'sync-models': 'sync-models',
  deploy: 'deploy-serverless',
  'restore-drill': 'restore-drill',
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
  );
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const { command, flags } = parseArgs(argv);
  if (command === undefined || command === 'help' || flags.help) {
    process.stdout.write(`${await usage()}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === 'sandbox') {
    // Ctrl-C or a kill: exit through process.exit so the stand-ins' exit handlers still remove
    // the sshd, its sudoers drop-in and authorized_keys line, and the temp tree.
    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ] as const)
      process.once(signal, () => process.exit(code));
    const { runSandbox } = await import('./sandbox.js');
    return (await runSandbox(flags)) ? 0 : 1;
  }
  const action = commands[command];
  if (!action) {
    process.stderr.write(`unknown command '${command}'\n${await usage()}\n`);
    return 2;
  }
  const spec = await loadActionSpec(action);
  const inputs = withEnvInputs(Object.keys(spec.inputs ?? {}), flags);
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
