// What `comfyume-ops --help`, `<command> --help` and `--version` print. Pure: it takes the
// action specs as data, so bin/comfyume-ops.mjs answers these from a small prebuilt bundle
// (bin/help.mjs, scripts/build-cli-help.mjs) without tsx, yaml, the SDK or any action main,
// and src/cli/main.ts gives the same answer from the action.yml files themselves.
import { TOOL_VERSION } from '../backup/version.js';
import type { ActionName, ActionSpec } from './action-runner.js';
import type { ParsedArgs } from './args.js';
import { commandHelp } from './command-help.js';

export const commands: Record<string, ActionName> = {
  backup: 'backup-verda',
  'sync-models': 'sync-models',
  deploy: 'deploy-serverless',
  'restore-drill': 'restore-drill',
  'verify-host': 'verify-host',
  'restore-host': 'restore-host',
  'provision-host': 'provision-host',
};

export type Specs = Record<ActionName, ActionSpec>;

export function usage(specs: Specs): string {
  const lines = ['usage: comfyume-ops <command> [--input value ...]', '', 'commands:'];
  for (const [command, action] of Object.entries(commands)) {
    lines.push(
      `  ${command.padEnd(12)} actions/${action}: --${Object.keys(specs[action].inputs ?? {}).join(' --')}`,
    );
  }
  lines.push(
    '  sandbox      run the nightly backup, the model sync, a workshop start and a host rebuild against local stand-ins',
  );
  lines.push(
    '',
    'Any input may be given as --name-file PATH (read from a file) or COMFYUME_<NAME> in the environment.',
    '--json prints one JSON object {ok, outputs, summary} on stdout and the log on stderr.',
    '--version prints the version; comfyume-ops <command> --help lists its inputs.',
  );
  return lines.join('\n');
}

export interface HelpAnswer {
  stdout: string;
  code: number;
}

/**
 * The answer when the arguments ask for help or the version (or give no command); else undefined.
 * Decide it on parseArgs(argv, { readFiles: false }): help never reads --NAME-file files (in the
 * bin that would read them a second time, and /dev/stdin not at all in the process that runs).
 */
export async function helpAnswer(
  { command, flags }: ParsedArgs,
  specs: () => Promise<Specs>,
): Promise<HelpAnswer | undefined> {
  if (flags.version !== undefined || command === 'version')
    return { stdout: `comfyume-ops ${TOOL_VERSION}\n`, code: 0 };
  const action = command === undefined ? undefined : commands[command];
  if (command !== undefined && action && flags.help !== undefined)
    return { stdout: `${commandHelp(command, action, (await specs())[action])}\n`, code: 0 };
  if (command === undefined || command === 'help' || flags.help !== undefined) {
    // Asked for help: 0; called with nothing to do: a usage error.
    return {
      stdout: `${usage(await specs())}\n`,
      code: command === undefined && flags.help === undefined ? 2 : 0,
    };
  }
  return undefined;
}
