// The GPU host as an action names it: host, port, user, ssh-private-key, host-key-fingerprints.
// Checked before anything connects; the key is refused when it is not a private key.
import { InputError } from '../../lib/errors.js';
import type { Inputs } from '../../lib/inputs.js';
import { checkPrivateKey, parseFingerprints, type ConnectOptions } from '../../lib/ssh.js';

export type SshTarget = Omit<ConnectOptions, 'logger'>;

const HOST_RE = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$/;
const USER_RE = /^[a-z_][a-z0-9_.-]{0,31}$/i;

/** `prefix` names another host's inputs (deploy-serverless: `vps-host`, `vps-user`, ...). */
export function parseSshTarget(inputs: Inputs, prefix = ''): SshTarget {
  const n = (name: string) => `${prefix}${name}`;
  const host = inputs.required(n('host'), 'the host name or address');
  if (!HOST_RE.test(host)) throw new InputError(n('host'), host, 'a host name or IP address');
  const port = inputs.int(n('port'), { min: 1, max: 65535, default: 22 });
  const username = inputs.required(n('user'), 'the SSH user on the host');
  if (!USER_RE.test(username)) throw new InputError(n('user'), username, 'a Unix user name');
  const privateKey = checkPrivateKey(
    n('ssh-private-key'),
    inputs.secret(n('ssh-private-key'), 'the private key of the SSH user (OpenSSH format)'),
  );
  const fingerprints = parseFingerprints(
    n('host-key-fingerprints'),
    inputs.list(n('host-key-fingerprints')),
  );
  return { host, port, username, privateKey, fingerprints };
}
