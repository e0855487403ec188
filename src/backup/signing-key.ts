// The backup signing key (backup-verda's `signing-key` input). Apart from signature.ts so that
// the restore drill, which only verifies, does not bundle ssh2's key parser.
import ssh2 from 'ssh2';
import { InputError } from '../lib/errors.js';
import type { SshSigner } from '../lib/sshsig.js';

/**
 * The signer of an OpenSSH Ed25519 private key (ssh-keygen -t ed25519), as given in the
 * `signing-key` input. The key is never echoed. ssh2 parses the OpenSSH format.
 */
export function parseSigningKey(input: string, text: string): SshSigner {
  const expected =
    "an unencrypted OpenSSH Ed25519 private key (ssh-keygen -t ed25519 -N '' -f backup-signing)";
  const key = text.trim() === '' ? undefined : ssh2.utils.parseKey(text.trim());
  if (!key || key instanceof Error || Array.isArray(key))
    throw new InputError(input, '<redacted>', expected);
  if (!key.isPrivateKey())
    throw new InputError(input, '<redacted>', `${expected}: this is a public key`);
  if (key.type !== 'ssh-ed25519')
    throw new InputError(input, '<redacted>', `${expected}: this is a ${key.type} key`);
  return { publicKey: key.getPublicSSH(), sign: (data) => key.sign(data) };
}
