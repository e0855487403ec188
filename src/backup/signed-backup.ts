// Which backup a restore takes, and the proof that it is one: latest.json's or one by id, its
// manifest.json verified against config/backup-signers BEFORE it is even parsed, then parsed
// strictly. The drill and restore-host both select a backup this way.
import { InputError, OpsError } from '../lib/errors.js';
import type { AllowedSigner } from '../lib/sshsig.js';
import { backupKeys, parseManifest, type Manifest } from './manifest.js';
import { verifyManifestSignature } from './signature.js';
import type { BackupStore } from './store.js';

export interface SignedManifest {
  manifest: Manifest;
  /** manifest.json and manifest.json.sig exactly as stored (RESTORE.sh verifies them again). */
  text: string;
  signature: string;
}

export interface SelectBackup {
  /** Default: the backup latest.json names. */
  backupId?: string;
  signers: AllowedSigner[];
  /** The input that named the backup id, for its error ('backup-id', 'backup'). */
  input: string;
  /** What the backup is for, in "no backup to <what>". */
  purpose: string;
}

/** The manifest and its signature, verified before the manifest is even parsed. */
export async function readSignedManifest(
  store: BackupStore,
  select: SelectBackup,
  where: string,
): Promise<SignedManifest> {
  let key: string;
  if (select.backupId) {
    key = backupKeys(store.prefix, select.backupId).manifest;
  } else {
    const latest = await store.latest();
    if (!latest)
      throw new OpsError(
        `no backup to ${select.purpose}: ${where}/latest.json is missing or unreadable`,
      );
    key = latest.manifestKey;
  }
  const [text, signature] = await Promise.all([store.getText(key), store.getText(`${key}.sig`)]);
  if (text === undefined) {
    throw select.backupId
      ? new InputError(
          select.input,
          select.backupId,
          `a backup under ${where} (it has no manifest.json)`,
        )
      : new OpsError(`latest.json names ${key}, which does not exist`);
  }
  verifyManifestSignature(Buffer.from(text), signature, select.signers, key);
  return { manifest: parseManifest(text, key, store.prefix), text, signature: signature ?? '' };
}

/** One of the identities must be the secret key of a recipient the backup was encrypted to. */
export function checkIdentities(
  manifest: Manifest,
  identities: { identity: string; recipient: string }[],
): void {
  const recipients = manifest.encryption.recipients;
  if (!identities.some((i) => recipients.includes(i.recipient))) {
    throw new InputError(
      'age-identity',
      `<keys of ${identities.map((i) => i.recipient).join(', ')}>`,
      `the secret key of one of backup ${manifest.backupId}'s recipients: ${recipients.join(', ')}`,
    );
  }
}
