// Backups are signed: age gives confidentiality, not authenticity (anyone with the public
// recipient can write a backup that decrypts). backup-verda signs each manifest.json with an
// Ed25519 key held as a repository secret; the manifest holds the sha256 of every object and of
// RESTORE.sh, so the signature covers the whole backup. The drill and RESTORE.sh accept a backup
// only when manifest.json.sig verifies against config/backup-signers (an ssh-keygen allowed
// signers file): `ssh-keygen -Y verify -f config/backup-signers -I comfyume-backup
// -n comfyume-backup -s manifest.json.sig < manifest.json` checks it by hand.
import { readFile } from 'node:fs/promises';
import { ConfigError, OpsError } from '../lib/errors.js';
import { parseAllowedSigners, verifySshsig, type AllowedSigner } from '../lib/sshsig.js';

/** The SSHSIG namespace and the principal of config/backup-signers. */
export const SIGNATURE_NAMESPACE = 'comfyume-backup';
export const SIGNER_PRINCIPAL = 'comfyume-backup';
export const DEFAULT_SIGNERS_FILE = 'config/backup-signers';

/** Reads an allowed signers file; one without a key is an error that says how to add one. */
export async function loadAllowedSigners(
  file: string,
): Promise<{ text: string; signers: AllowedSigner[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot be read: ${errnoCode(err) ?? String(err)}`]);
  }
  const signers = parseAllowedSigners(text, file).filter((s) =>
    s.principals.some((p) => p === SIGNER_PRINCIPAL || p === '*'),
  );
  if (signers.length === 0) {
    throw new ConfigError(file, [
      `lists no key for ${SIGNER_PRINCIPAL}: add the public key of the backup signing key as a line '${SIGNER_PRINCIPAL} namespaces="${SIGNATURE_NAMESPACE}" ssh-ed25519 AAAA…' (see SECURITY.md)`,
    ]);
  }
  return { text, signers };
}

/** The code of a failed read (ENOENT, EACCES), when the error has one. */
function errnoCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** Checks manifest.json against its signature; throws naming the manifest's key otherwise. */
export function verifyManifestSignature(
  manifest: Buffer,
  signature: string | undefined,
  allowed: AllowedSigner[],
  manifestKey: string,
): AllowedSigner {
  const what = `${manifestKey}: not accepted`;
  if (signature === undefined) {
    throw new OpsError(
      `${what}: it has no signature (${manifestKey}.sig); only a backup signed by backup-verda's signing key is restored`,
    );
  }
  return verifySshsig({
    message: manifest,
    signature,
    namespace: SIGNATURE_NAMESPACE,
    principal: SIGNER_PRINCIPAL,
    allowed,
    what,
  });
}
