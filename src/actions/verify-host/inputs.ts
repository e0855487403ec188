import path from 'node:path';
import { InputError } from '../../lib/errors.js';
import { Inputs, type InputSource } from '../../lib/inputs.js';
import { checkPrivateKey, parseFingerprints } from '../../lib/ssh.js';
import type { SecretInput } from '../shared/port.js';

export interface VerifyInputs {
  host: string;
  port: number;
  user: string;
  sshPrivateKey: string;
  fingerprints: string[];
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

const HOST_RE = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$/;
const IPV4_RE = /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$/;

/** Every input checked before any connection (each error names the input and its value). */
export function parseVerifyInputs(source: InputSource, cwd = process.cwd()): VerifyInputs {
  const inputs = new Inputs(source);
  const host = inputs.required('host', 'the GPU host name or address');
  if (!HOST_RE.test(host)) throw new InputError('host', host, 'a host name or IP address');
  const port = inputs.int('port', { min: 1, max: 65535, default: 22 });
  const user = inputs.required('user', 'the SSH user on the host');
  if (!/^[a-z_][a-z0-9_.-]{0,31}$/i.test(user))
    throw new InputError('user', user, 'a Unix user name');
  const sshPrivateKey = inputs.secret(
    'ssh-private-key',
    'the private key of the SSH user (OpenSSH format)',
  );
  checkPrivateKey('ssh-private-key', sshPrivateKey);
  const fingerprints = parseFingerprints(
    'host-key-fingerprints',
    inputs.list('host-key-fingerprints'),
  );
  const tailscaleIp = inputs.optional('tailscale-ip');
  if (tailscaleIp !== undefined && !IPV4_RE.test(tailscaleIp))
    throw new InputError('tailscale-ip', tailscaleIp, 'an IPv4 address such as 100.89.38.43');
  const alert = inputs.boolean('alert', false);
  const githubToken = inputs.optional('github-token');
  if (alert && !githubToken)
    throw new InputError('github-token', '', 'a token with issues: write when alert is true');
  return {
    host,
    port,
    user,
    sshPrivateKey,
    fingerprints,
    configFile: path.resolve(cwd, inputs.raw('config') || 'config/verify.yml'),
    backupConfigFile: path.resolve(cwd, inputs.raw('backup-config') || 'config/backup.yml'),
    tailscaleIp,
    alert,
    githubToken,
  };
}
