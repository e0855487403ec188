import path from 'node:path';
import { InputError } from '../../lib/errors.js';
import { Inputs, type InputSource } from '../../lib/inputs.js';
import type { SecretInput } from '../shared/port.js';
import { parseSshTarget, type SshTarget } from '../shared/ssh-inputs.js';

export interface VerifyInputs {
  ssh: SshTarget;
  /** config/verify.yml and config/backup.yml (its host: section), resolved. */
  configFile: string;
  backupConfigFile: string;
  /** Overrides host.tailscale-ip of the backup config. */
  tailscaleIp: string | undefined;
  alert: boolean;
  githubToken: string | undefined;
}

/** The secret inputs, masked before anything else happens. */
export const SECRET_INPUTS: readonly SecretInput[] = ['ssh-private-key', 'github-token'];

const IPV4_RE = /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$/;

/** Every input checked before any connection (each error names the input and its value). */
export function parseVerifyInputs(source: InputSource, cwd = process.cwd()): VerifyInputs {
  const inputs = new Inputs(source);
  const ssh = parseSshTarget(inputs);
  const tailscaleIp = inputs.optional('tailscale-ip');
  if (tailscaleIp !== undefined && !IPV4_RE.test(tailscaleIp))
    throw new InputError('tailscale-ip', tailscaleIp, 'an IPv4 address such as 100.89.38.43');
  const alert = inputs.boolean('alert', false);
  const githubToken = inputs.optional('github-token');
  if (alert && !githubToken)
    throw new InputError('github-token', '', 'a token with issues: write when alert is true');
  return {
    ssh,
    configFile: path.resolve(cwd, inputs.raw('config') || 'config/verify.yml'),
    backupConfigFile: path.resolve(cwd, inputs.raw('backup-config') || 'config/backup.yml'),
    tailscaleIp,
    alert,
    githubToken,
  };
}
