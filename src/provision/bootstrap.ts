// No trust on first use for a fresh instance. The runner makes a one-time ed25519 host key, puts
// it into the instance's startup script and pins its fingerprint for the first connection; the
// restore then puts the backup's own host keys in place, after which the pin is the backup's
// fingerprint (VERDA_HOST_KEY_FINGERPRINTS) and the bootstrap key is gone from the host.
//
// Why this is safe: the bootstrap private key exists in this run's memory (masked), in the startup
// script held by Verda and as that script was delivered to the instance (where Verda's boot agent
// keeps it is not documented) - all with the party that runs the machine anyway and could read any
// key on it. The script is deleted from the account once the instance runs, and the restore
// replaces the host key, so the bootstrap key opens nothing afterwards. A host that answers with
// any other key (the image's own, generated at boot before the script ran, or a
// man-in-the-middle) is refused: the client waits for the pinned key or fails by its deadline.
import { fingerprintSha256, newEd25519KeyPair } from '../lib/ssh.js';
import { bashText, shellQuote } from '../lib/shell.js';

export interface BootstrapKey {
  /** OpenSSH private key: a secret (mask it). */
  privateKey: string;
  publicKey: string;
  /** SHA256:... of the public key, as ssh-keygen -l prints it: the pin for the first connection. */
  fingerprint: string;
}

export function newBootstrapKey(hostname: string): BootstrapKey {
  const pair = newEd25519KeyPair(`bootstrap@${hostname}`);
  const blob = Buffer.from(pair.public.split(' ')[1] ?? '', 'base64');
  return { privateKey: pair.private, publicKey: pair.public, fingerprint: fingerprintSha256(blob) };
}

const INSTALL_KEY = bashText`set -euo pipefail
umask 077
# Only the bootstrap key is served: the image's own keys (made at first boot) are removed.
rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub
printf '%s\n' "$BOOTSTRAP_PRIVATE" > /etc/ssh/ssh_host_ed25519_key
printf '%s\n' "$BOOTSTRAP_PUBLIC" > /etc/ssh/ssh_host_ed25519_key.pub
chmod 600 /etc/ssh/ssh_host_ed25519_key
chmod 644 /etc/ssh/ssh_host_ed25519_key.pub
unset BOOTSTRAP_PRIVATE
systemctl restart ssh 2>/dev/null || systemctl restart sshd 2>/dev/null || service ssh restart
echo "comfyume-ops: bootstrap host key installed"
`;

/**
 * The startup script: installs the bootstrap host key, then runs the config's own startup
 * script (if any) in a subshell, so its failure cannot undo the key.
 */
export function startupScript(key: BootstrapKey, extra: string | undefined): string {
  const lines = [
    '#!/bin/bash',
    '# comfyume-ops provision-host: bootstrap host key (the restore replaces it), then the',
    "# config's startup script.",
    `BOOTSTRAP_PRIVATE=${shellQuote(key.privateKey.trim())}`,
    `BOOTSTRAP_PUBLIC=${shellQuote(key.publicKey.trim())}`,
    `(${INSTALL_KEY})`,
    'rc=$?',
    'unset BOOTSTRAP_PRIVATE',
    '[ "$rc" -eq 0 ] || { echo "comfyume-ops: the bootstrap host key was not installed" >&2; exit "$rc"; }',
  ];
  if (extra !== undefined) lines.push('(', extra.trimEnd(), ')');
  return `${lines.join('\n')}\n`;
}
