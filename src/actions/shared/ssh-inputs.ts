// The GPU host as an action names it: host, port, user, ssh-private-key, host-key-fingerprints.
// Checked before anything connects; the key is refused when it is not a private key.
import { InputError } from '../../lib/errors.js';
import type { Inputs } from '../../lib/inputs.js';
import { checkPrivateKey, parseFingerprints, type ConnectOptions } from '../../lib/ssh.js';

export type SshTarget = Omit<ConnectOptions, 'logger'>;

const HOST_RE = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$/;
const USER_RE = /^[a-z_][a-z0-9_.-]{0,31}$/i;

export function parseSshTarget(inputs: Inputs): SshTarget {
  const host = inputs.required('host', 'the GPU host name or address');
  if (!HOST_RE.test(host)) throw new InputError('host', host, 'a host name or IP address');
  const port = inputs.int('port', { min: 1, max: 65535, default: 22 });
  const username = inputs.required('user', 'the SSH user on the host');
  if (!USER_RE.test(username)) throw new InputError('user', username, 'a Unix user name');
  const privateKey = checkPrivateKey(
    'ssh-private-key',
    inputs.secret('ssh-private-key', 'the private key of the SSH user (OpenSSH format)'),
  );
  const fingerprints = parseFingerprints(
    'host-key-fingerprints',
    inputs.list('host-key-fingerprints'),
  );
  return { host, port, username, privateKey, fingerprints };
}
