import path from 'node:path';
import { parseIdentities } from '../../lib/age-stream.js';
import { InputError } from '../../lib/errors.js';
import { Inputs, type InputSource } from '../../lib/inputs.js';
import { validateBucketName } from '../../lib/r2.js';
import { hasControlChars } from '../../lib/safe-path.js';
import { parseBackupId } from '../../backup/manifest.js';
import { RESTORE_STEPS, type RestoreStep } from '../../backup/restore-steps.js';
import { DEFAULT_SIGNERS_FILE } from '../../backup/signature.js';
import type { SecretInput } from '../shared/port.js';
import { parsePrefix, parseR2Access, type R2Access } from '../shared/r2-inputs.js';
import { parseSshTarget, type SshTarget } from '../shared/ssh-inputs.js';

export interface RestoreHostInputs extends R2Access {
  bucket: string;
  prefix: string;
  /** undefined: the backup latest.json names. */
  backupId: string | undefined;
  identities: { identity: string; recipient: string }[];
  /** config/backup-signers, resolved. */
  signersFile: string;
  ssh: SshTarget;
  workDir: string;
  keepBackup: boolean;
  modelsMount: string | undefined;
  scratchMount: string | undefined;
  onlySteps: RestoreStep[];
  skipSteps: RestoreStep[];
  ohmyzshRepo: string | undefined;
  dryRun: boolean;
}

/** The secret inputs, masked before anything else happens. */
export const SECRET_INPUTS: readonly SecretInput[] = [
  { name: 'age-identity', lines: /^AGE-SECRET-KEY-/i },
  'r2-access-key-id',
  'r2-secret-access-key',
  'ssh-private-key',
];

export const DEFAULT_WORK_DIR = '/root/comfyume-restore';

// Two levels at least: the directory is replaced and removed as root.
const WORK_DIR_RE = /^(?:\/[A-Za-z0-9._-]+){2,}$/;
const MOUNT_RE = /^[^\s-]\S* \S+(?: \S+)?$/;
const GIT_URL_RE = /^(?:(?:https?|ssh|git|file):\/\/|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)\S+$/;

function steps(inputs: Inputs, name: string): RestoreStep[] {
  return inputs.list(name).map((step) => {
    const known = RESTORE_STEPS.find((s) => s === step);
    if (!known)
      throw new InputError(
        name,
        step,
        `steps of RESTORE.sh, comma separated: ${RESTORE_STEPS.join(', ')}`,
      );
    return known;
  });
}

function mount(inputs: Inputs, name: string): string | undefined {
  const value = inputs.optional(name);
  if (
    value !== undefined &&
    (!MOUNT_RE.test(value) || value.length > 1000 || hasControlChars(value))
  )
    throw new InputError(
      name,
      value,
      "'SOURCE FSTYPE [OPTIONS]' as fstab has it, e.g. '/dev/vdb ext4' or 'nfs.verda:/share nfs rw'",
    );
  return value;
}

/** Every input checked before any request or connection (each error names the input and value). */
export async function parseRestoreHostInputs(
  source: InputSource,
  cwd = process.cwd(),
): Promise<RestoreHostInputs> {
  const inputs = new Inputs(source);
  const bucket = validateBucketName('bucket', inputs.required('bucket', 'an R2 bucket name'));
  const prefix = parsePrefix('prefix', inputs.raw('prefix') || 'backups/verda');
  const access = parseR2Access(inputs);
  const backup = inputs.raw('backup') || 'latest';
  if (backup !== 'latest' && !parseBackupId(backup))
    throw new InputError('backup', backup, "'latest' or a backup id such as 20261128T021500Z");
  const identities = await parseIdentities('age-identity', inputs.raw('age-identity'));
  const ssh = parseSshTarget(inputs);
  const workDir = inputs.raw('work-dir') || DEFAULT_WORK_DIR;
  if (!WORK_DIR_RE.test(workDir) || workDir.split('/').some((p) => p === '.' || p === '..'))
    throw new InputError(
      'work-dir',
      workDir,
      'an absolute directory at least two levels deep, such as /root/comfyume-restore (letters, digits, . _ -)',
    );
  const onlySteps = steps(inputs, 'only-steps');
  const skipSteps = steps(inputs, 'skip-steps');
  const ohmyzshRepo = inputs.optional('ohmyzsh-repo');
  if (ohmyzshRepo !== undefined && !GIT_URL_RE.test(ohmyzshRepo))
    throw new InputError(
      'ohmyzsh-repo',
      ohmyzshRepo,
      'a git URL such as https://github.com/ohmyzsh/ohmyzsh.git',
    );
  return {
    bucket,
    prefix,
    ...access,
    backupId: backup === 'latest' ? undefined : backup,
    identities,
    signersFile: path.resolve(cwd, inputs.raw('signers') || DEFAULT_SIGNERS_FILE),
    ssh,
    workDir,
    keepBackup: inputs.boolean('keep-backup', false),
    modelsMount: mount(inputs, 'models-mount'),
    scratchMount: mount(inputs, 'scratch-mount'),
    onlySteps,
    skipSteps,
    ohmyzshRepo,
    dryRun: inputs.boolean('dry-run', false),
  };
}
