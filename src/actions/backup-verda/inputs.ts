import path from 'node:path';
import { parseRecipients } from '../../lib/age-stream.js';
import { InputError } from '../../lib/errors.js';
import { Inputs, type InputSource } from '../../lib/inputs.js';
import { R2_MIN_PART, validateBucketName } from '../../lib/r2.js';
import { parseRetention, type RetentionPolicy } from '../../backup/retention.js';
import { parseSigningKey } from '../../backup/signing-key.js';
import type { SshSigner } from '../../lib/sshsig.js';
import { parseSshTarget, type SshTarget } from '../shared/ssh-inputs.js';
import { MAX_PART_MIB } from '../../backup/run-backup.js';
import { parsePrefix, parseR2Access, type R2Access } from '../shared/r2-inputs.js';

/** backup: the nightly backup; retention: retention alone, its own job (no SSH, nothing written). */
export type BackupMode = 'backup' | 'retention';

export function parseMode(source: InputSource): BackupMode {
  return new Inputs(source).oneOf('mode', ['backup', 'retention'] as const, 'backup');
}

/** What both modes need: where the backups are, the key pair, the policy. */
export interface BucketInputs extends R2Access {
  bucket: string;
  prefix: string;
  retention: RetentionPolicy;
  dryRun: boolean;
}

export type RetentionInputs = BucketInputs;

export interface BackupInputs extends BucketInputs {
  ssh: SshTarget;
  configFile: string;
  /** config/verify.yml: the checks RESTORE.sh's verify step runs (absent: all, required). */
  verifyConfigFile: string;
  recipients: string[];
  signer: SshSigner;
  /** apply-retention: false — this run deletes nothing (retention runs as its own job). */
  skipRetention: boolean;
  withModels: boolean;
  modelsBucket: string;
  modelsPrefix: string;
  verify: 'read-back' | 'in-transit';
  /** undefined: sized per item from its last backup. */
  partSize: number | undefined;
  githubToken: string | undefined;
}

/** The secret inputs, to mask before anything else happens. */
export const SECRET_INPUTS = [
  'ssh-private-key',
  'signing-key',
  'r2-access-key-id',
  'r2-secret-access-key',
  'github-token',
] as const;

function parseBucketInputs(inputs: Inputs): BucketInputs {
  const bucket = validateBucketName('bucket', inputs.required('bucket', 'an R2 bucket name'));
  const prefix = parsePrefix(
    'prefix',
    inputs.required('prefix', 'a key prefix such as backups/verda'),
  );
  const access = parseR2Access(inputs);
  const retention = parseRetention(
    'retention',
    inputs.raw('retention') || 'daily=7,weekly=4,monthly=6',
  );
  const dryRun = inputs.boolean('dry-run', false);
  return { bucket, prefix, ...access, retention, dryRun };
}

/**
 * mode: retention — the bucket inputs only. The job holds neither the SSH key nor the signing
 * key (given ones are refused, not ignored), and it must apply retention.
 */
export function parseRetentionInputs(source: InputSource): RetentionInputs {
  const inputs = new Inputs(source);
  for (const secret of ['ssh-private-key', 'signing-key'] as const) {
    if (inputs.raw(secret) !== '')
      throw new InputError(secret, '', 'empty in mode retention (that job needs no such key)');
  }
  if (inputs.boolean('with-models', false))
    throw new InputError('with-models', inputs.raw('with-models'), 'false in mode retention');
  if (!inputs.boolean('apply-retention', true))
    throw new InputError(
      'apply-retention',
      inputs.raw('apply-retention'),
      'true in mode retention (that mode only applies retention)',
    );
  return parseBucketInputs(inputs);
}

/** Every input checked before any connection or request (each error names input and value). */
export async function parseBackupInputs(
  source: InputSource,
  cwd = process.cwd(),
): Promise<BackupInputs> {
  const inputs = new Inputs(source);
  const ssh = parseSshTarget(inputs);
  const configFile = path.resolve(
    cwd,
    inputs.required('config', 'the path of the backup config (config/backup.yml)'),
  );
  const bucketInputs = parseBucketInputs(inputs);
  const recipients = await parseRecipients('age-recipients', inputs.list('age-recipients'));
  const signer = parseSigningKey(
    'signing-key',
    inputs.secret('signing-key', 'the backup signing key (an OpenSSH Ed25519 private key)'),
  );
  const skipRetention = !inputs.boolean('apply-retention', true);
  const withModels = inputs.boolean('with-models', false);
  const modelsBucket = validateBucketName(
    'models-bucket',
    inputs.optional('models-bucket') ?? bucketInputs.bucket,
  );
  const modelsPrefix = parsePrefix('models-prefix', inputs.raw('models-prefix') || 'models');
  const verify = inputs.oneOf('verify', ['read-back', 'in-transit'] as const, 'in-transit');
  // Memory is about 4 parts (2 items, each one part filling and one uploading): cap it.
  const partSize = inputs.size('part-size', {
    min: R2_MIN_PART,
    max: MAX_PART_MIB * 2 ** 20,
    allowAuto: true,
  });
  return {
    ssh,
    configFile,
    verifyConfigFile: path.resolve(cwd, inputs.raw('verify-config') || 'config/verify.yml'),
    ...bucketInputs,
    recipients,
    signer,
    skipRetention,
    withModels,
    modelsBucket,
    modelsPrefix,
    verify,
    partSize,
    githubToken: inputs.optional('github-token'),
  };
}
