import path from 'node:path';
import { parseIdentities } from '../../lib/age-stream.js';
import { InputError } from '../../lib/errors.js';
import { Inputs, type InputSource } from '../../lib/inputs.js';
import { validateBucketName } from '../../lib/r2.js';
import { parseBackupId } from '../../backup/manifest.js';
import { DEFAULT_SIGNERS_FILE } from '../../backup/signature.js';
import type { SecretInput } from '../shared/port.js';
import { parsePrefix, parseR2Access, type R2Access } from '../shared/r2-inputs.js';

export interface DrillInputs extends R2Access {
  bucket: string;
  prefix: string;
  identities: { identity: string; recipient: string }[];
  backupId: string | undefined;
  items: string[];
  maxAgeMs: number;
  /** max-age as given, for messages. */
  maxAge: string;
  /** config/backup.yml and config/backup-signers, resolved. */
  configFile: string;
  signersFile: string;
  /** keep-backup-dir, resolved: where a passed drill leaves the verified backup. */
  keepDir: string | undefined;
}

/** The secret inputs, to mask before anything else happens. */
/** The secret inputs, masked before anything else happens. */
export const SECRET_INPUTS: readonly SecretInput[] = [
  { name: 'age-identity', lines: /^AGE-SECRET-KEY-/i },
  'r2-access-key-id',
  'r2-secret-access-key',
];

/** Every input checked before any request (each error names the input and its value). */
export async function parseDrillInputs(
  source: InputSource,
  cwd = process.cwd(),
): Promise<DrillInputs> {
  const inputs = new Inputs(source);
  const configFile = path.resolve(cwd, inputs.raw('config') || 'config/backup.yml');
  const signersFile = path.resolve(cwd, inputs.raw('signers') || DEFAULT_SIGNERS_FILE);
  const bucket = validateBucketName('bucket', inputs.required('bucket', 'an R2 bucket name'));
  const prefix = parsePrefix(
    'prefix',
    inputs.required('prefix', 'a key prefix such as backups/verda'),
  );
  const access = parseR2Access(inputs);
  const identities = await parseIdentities('age-identity', inputs.raw('age-identity'));
  const backupId = inputs.optional('backup-id');
  if (backupId !== undefined && !parseBackupId(backupId))
    throw new InputError('backup-id', backupId, 'a backup id such as 20261128T021500Z');
  const items = inputs.list('items');
  for (const id of items)
    if (!/^[a-z0-9][a-z0-9-]*$/.test(id))
      throw new InputError('items', id, 'item ids of the backup, such as ssh-host-keys');
  const maxAge = inputs.raw('max-age') || '48h';
  const maxAgeMs = inputs.duration('max-age', maxAge);
  const keep = inputs.optional('keep-backup-dir');
  return {
    bucket,
    prefix,
    ...access,
    identities,
    backupId,
    items,
    maxAgeMs,
    maxAge,
    configFile,
    signersFile,
    keepDir: keep === undefined ? undefined : path.resolve(cwd, keep),
  };
}
