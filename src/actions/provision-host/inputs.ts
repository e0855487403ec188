import { InputError } from '../../lib/errors.js';
import { Inputs, type InputSource } from '../../lib/inputs.js';
import { checkPrivateKey } from '../../lib/ssh.js';
import { parseVerdaApiInputs, type VerdaApiInputs } from '../shared/verda-inputs.js';
import type { WaitSettings, SshSettings } from '../../provision/provision.js';

export const provisionCommands = [
  'plan',
  'create',
  'status',
  'stop',
  'start',
  'delete',
  'reap',
] as const;
export type ProvisionCommand = (typeof provisionCommands)[number];

/** The secret inputs, masked before anything else happens. */
export const SECRET_INPUTS = ['verda-client-id', 'verda-client-secret', 'ssh-private-key'] as const;

export interface ProvisionInputs extends VerdaApiInputs {
  command: ProvisionCommand;
  config: string;
  preset: string | undefined;
  wait: WaitSettings;
  /** For create: SSH is waited for with the bootstrap key when a private key is given. */
  ssh: SshSettings | undefined;
  confirm: string | undefined;
  deleteVolumes: boolean;
  dryRun: boolean;
}

/** Every input checked before anything is read or requested; each bad one is an InputError. */
export function parseProvisionInputs(source: InputSource): ProvisionInputs {
  const inputs = new Inputs(source);
  const command = inputs.oneOf('command', provisionCommands);
  const api = parseVerdaApiInputs(inputs);
  const timeoutMs = inputs.duration('wait-timeout', '20m');
  if (timeoutMs <= 0)
    throw new InputError('wait-timeout', inputs.raw('wait-timeout'), 'a duration above 0');
  const pollMs = inputs.duration('poll-interval', '10s');
  if (pollMs <= 0)
    throw new InputError('poll-interval', inputs.raw('poll-interval'), 'a duration above 0');
  const key = inputs.optional('ssh-private-key');
  const ssh =
    key === undefined
      ? undefined
      : {
          privateKey: checkPrivateKey('ssh-private-key', key),
          user: inputs.optional('ssh-user') ?? 'root',
          port: inputs.optionalInt('ssh-port', { min: 1, max: 65_535 }) ?? 22,
        };
  const confirm = inputs.optional('confirm');
  if (command === 'delete' && confirm === undefined)
    throw new InputError('confirm', '', 'the hostname of the instance, to confirm the delete');
  return {
    command,
    config: inputs.optional('config') ?? 'config/host.yml',
    preset: inputs.optional('preset'),
    ...api,
    wait: { timeoutMs, pollMs },
    ssh,
    confirm,
    deleteVolumes: inputs.boolean('delete-volumes', false),
    dryRun: inputs.boolean('dry-run', false),
  };
}
