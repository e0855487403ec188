// restore-host: a backup restored onto a (fresh) host over SSH, the runbook's "copy the backup to
// the instance and run RESTORE.sh" as one step. On the runner the backup is selected and its
// manifest's signature verified (as the drill does); then RESTORE.sh, the manifest and its .sig
// and every item object are streamed from R2 over SSH into the work directory on the host (never
// onto the runner's disk), each stream's sha256 checked against the signed manifest on the way;
// only then is the age identity written there (0600) and RESTORE.sh run with --from, its output
// logged line by line. The identity always goes again, and the copied backup unless it is kept:
// a remote `trap` when RESTORE.sh ends (also when it fails), and a cleanup command on a new
// connection afterwards (also when the first one dropped), which fails loudly if it is still
// there.
import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { errorMessage, OpsError } from '../lib/errors.js';
import { formatBytes } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';
import { R2_RETRY, isRetryableS3Error } from '../lib/r2-store.js';
import { retry, type RetryOptions } from '../lib/retry.js';
import { bashText, shellQuote } from '../lib/shell.js';
import { factsTable, type Table } from '../lib/summary.js';
import {
  connectSsh,
  fingerprintSha256,
  type ConnectOptions,
  type SshConnection,
} from '../lib/ssh.js';
import type { AllowedSigner } from '../lib/sshsig.js';
import { backupKeys, type Manifest } from '../backup/manifest.js';
import { RESTORE_STEPS, type RestoreStep } from '../backup/restore-steps.js';
import {
  checkIdentities,
  readSignedManifest,
  type SignedManifest,
} from '../backup/signed-backup.js';
import { BackupStore } from '../backup/store.js';

export interface RestoreHostOptions {
  client: S3Client;
  bucket: string;
  prefix: string;
  /** Default: the backup latest.json names. */
  backupId?: string;
  /** age identities with their recipients; one must be the backup's. */
  identities: { identity: string; recipient: string }[];
  /** config/backup-signers, parsed and as text (RESTORE.sh checks the signature again). */
  signers: AllowedSigner[];
  signersText: string;
  ssh: Omit<ConnectOptions, 'logger'>;
  /** The directory on the host the backup is copied into (made 0700, removed afterwards). */
  workDir: string;
  /** Leave the copied backup (never the identity) in workDir. */
  keepBackup?: boolean;
  /** RESTORE.sh's own options. */
  modelsMount?: string;
  scratchMount?: string;
  onlySteps?: RestoreStep[];
  skipSteps?: RestoreStep[];
  ohmyzshRepo?: string;
  dryRun?: boolean;
  /** Cancels the restore (the workflow was cancelled): the connection is cut, cleanup still runs. */
  signal?: AbortSignal;
  logger: Logger;
  retry?: RetryOptions;
}

export interface StepResult {
  step: RestoreStep;
  changes: number;
  seconds: number;
}

export interface RestoreHostResult {
  backupId: string;
  dryRun: boolean;
  steps: StepResult[];
  /** RESTORE.sh's total: changes made (or, in a dry run, that would be made). */
  changes: number;
  /** RESTORE.sh's own measure of the whole run (its "restore time"). */
  restoreSeconds: number;
  /** Bytes streamed from R2 to the host, and how long that took. */
  copiedBytes: number;
  copySeconds: number;
  /**
   * The host keys sshd serves after the restore (read on the host, the one presented on the
   * cleanup connection among them): the pins from now on. Empty after a dry run.
   */
  hostKeyFingerprints: string[];
}

/** A marker in the work directory: an existing directory without it is not ours to replace. */
const MARKER = '.comfyume-restore-host';
const IDENTITY = 'identity';

export async function restoreHost(opts: RestoreHostOptions): Promise<RestoreHostResult> {
  const { logger } = opts;
  const store = BackupStore.open(
    { client: opts.client, bucket: opts.bucket, prefix: opts.prefix, ...retryOf(opts) },
    logger,
  );
  const where = `s3://${opts.bucket}/${opts.prefix}`;
  const signed = await readSignedManifest(
    store,
    {
      ...(opts.backupId ? { backupId: opts.backupId } : {}),
      signers: opts.signers,
      input: 'backup',
      purpose: 'restore',
    },
    where,
  );
  const { manifest } = signed;
  checkIdentities(manifest, opts.identities);
  logger.info(
    `backup ${manifest.backupId} (finished ${manifest.finishedAt}, ${manifest.items.length} item(s)): signature verified`,
  );

  // A wrong pin fails here, before anything is written on the host.
  const conn = await connectSsh({ ...opts.ssh, logger });
  const host = `${opts.ssh.username}@${conn.host}:${conn.port}`;
  logger.info(`connected to ${host} (host key ${conn.hostFingerprint})`);
  let remote: Remote | undefined;
  let outcome: RunOutcome | undefined;
  let failure: unknown;
  const onAbort = () => void conn.close();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    remote = await Remote.open(conn, opts.workDir);
    const r = remote;
    const copied = await logger.group(
      `Copy backup ${manifest.backupId} to ${host}:${opts.workDir}`,
      () => copyBackup(r, store, signed, opts),
    );
    if (opts.signal?.aborted) throw new OpsError('restore-host was cancelled');
    outcome = await logger.group(`RESTORE.sh on ${host}${opts.dryRun ? ' (dry run)' : ''}`, () =>
      runRestore(r, opts, copied),
    );
  } catch (err) {
    failure = opts.signal?.aborted ? new OpsError('restore-host was cancelled') : err;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  // The host's keys as it serves them now (the security step restores the backup's and restarts
  // sshd), read on the connection that is still pinned to the old ones.
  const served = remote && !remote.dropped ? await readHostKeys(conn).catch(() => []) : [];
  await conn.close().catch(() => undefined);
  const sudo = remote?.sudo;
  const cleanup =
    sudo === undefined
      ? undefined
      : await logger
          .group(`Remove the identity from ${host}`, () => cleanUp(opts, sudo, served, manifest))
          .catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
  if (cleanup instanceof Error) {
    const message = `the age identity may still be on ${host} in ${opts.workDir}/${IDENTITY}: remove it by hand (rm -rf ${shellQuote(opts.workDir)}). Cleanup failed: ${errorMessage(cleanup)}`;
    if (failure !== undefined) {
      logger.error(message);
      throw failure;
    }
    throw new OpsError(message);
  }
  if (failure !== undefined) throw failure;
  if (!outcome) throw new OpsError('RESTORE.sh did not run');
  const dryRun = opts.dryRun ?? false;
  return {
    backupId: manifest.backupId,
    dryRun,
    ...outcome.parsed,
    copiedBytes: outcome.copied.bytes,
    copySeconds: outcome.copied.seconds,
    hostKeyFingerprints: dryRun ? [] : (cleanup?.fingerprints ?? []),
  };
}

const retryOf = (opts: { retry?: RetryOptions }) => (opts.retry ? { retry: opts.retry } : {});

/** Commands on the host as root: directly when the user is root, else through `sudo -n`. */
class Remote {
  dropped = false;

  private constructor(
    readonly conn: SshConnection,
    readonly workDir: string,
    readonly sudo: boolean,
  ) {}

  /** Checks root (or sudo -n) and makes the work directory, empty, 0700, with its marker. */
  static async open(conn: SshConnection, workDir: string): Promise<Remote> {
    const who = await conn.run('id -u; sudo -n true >/dev/null 2>&1 && echo sudo || echo no', {
      allowedExitCodes: [0],
    });
    const [uid, canSudo] = who.stdout.trim().split('\n');
    if (uid !== '0' && canSudo !== 'sudo')
      throw new OpsError(
        `RESTORE.sh must run as root on ${conn.host}: the SSH user is not root (uid ${uid ?? '?'}) and 'sudo -n' is refused; use root or give the user passwordless sudo`,
      );
    const remote = new Remote(conn, workDir, uid !== '0');
    const made = await conn.run(remote.command(PREPARE, [workDir, MARKER]), {
      allowedExitCodes: [0, 3],
    });
    if (made.code === 3)
      throw new OpsError(
        `work-dir ${workDir} on ${conn.host} exists, is not empty and was not made by restore-host: choose another work-dir or remove it`,
      );
    return remote;
  }

  command(script: string, args: string[]): string {
    return asRoot(this.sudo, script, args);
  }

  /**
   * Writes `data`, or a stream through `through` (a hash on the way), to a file in the work
   * directory, mode 0600. A failed source errors the whole pipeline (not only its own stream).
   */
  async write(name: string, data: Buffer | Readable, through?: Transform): Promise<void> {
    const upload = this.conn.writeTo(this.command(WRITE, [`${this.workDir}/${name}`]));
    try {
      if (Buffer.isBuffer(data)) upload.stdin.end(data);
      else if (through) await pipeline(data, through, upload.stdin);
      else await pipeline(data, upload.stdin);
    } catch (err) {
      // The remote `cat` got EOF: wait until it exited, so a retry does not overlap it.
      await upload.done.catch(() => undefined);
      throw err;
    }
    await upload.done;
  }
}

/** `bash -c SCRIPT` as root with its arguments quoted; the script is constant text. */
function asRoot(sudo: boolean, script: string, args: string[]): string {
  return `${sudo ? 'sudo -n ' : ''}bash -c ${shellQuote(script)} restore-host ${args.map(shellQuote).join(' ')}`;
}

const PREPARE = bashText`set -eu
work=$1 marker=$2
if [ -e "$work" ] && [ ! -e "$work/$marker" ] && [ -n "$(ls -A -- "$work" 2>/dev/null)" ]; then exit 3; fi
rm -rf -- "$work"
umask 077
mkdir -p -- "$work/backup"
chmod 700 -- "$work"
: >"$work/$marker"`;

const WRITE = bashText`umask 077
cat >"$1"`;

/** RESTORE.sh, run so that the identity goes whatever happens; its stderr joins its stdout. */
const RUN = bashText`work=$1 keep=$2 identity=$3
shift 3
cleanup() {
  rm -f -- "$work/$identity"
  if [ "$keep" != 1 ]; then rm -rf -- "$work"; fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE
cd -- "$work" || exit 1
bash "$work/RESTORE.sh" --signers "$work/signers" --identity "$work/$identity" --from "$work/backup" "$@" </dev/null 2>&1`;

/** The same, from the runner afterwards; prints what is left (nothing, or the kept backup). */
const CLEANUP = bashText`work=$1 keep=$2 identity=$3
rm -f -- "$work/$identity"
if [ "$keep" != 1 ]; then rm -rf -- "$work"; fi
if [ -e "$work/$identity" ]; then echo identity; fi
if [ -e "$work" ]; then echo work; fi
exit 0`;

interface Copied {
  bytes: number;
  seconds: number;
}

/**
 * RESTORE.sh and every item from R2 to the host, through a sha256 on the runner (a mismatch
 * fails before RESTORE.sh runs anything); the manifest and its .sig as verified; the signers.
 */
async function copyBackup(
  remote: Remote,
  store: BackupStore,
  signed: SignedManifest,
  opts: RestoreHostOptions,
): Promise<Copied> {
  const { manifest } = signed;
  const started = Date.now();
  let bytes = 0;
  const keys = backupKeys(store.prefix, manifest.backupId);
  await remote.write(`backup/${baseName(keys.manifest)}`, Buffer.from(signed.text));
  await remote.write(`backup/${baseName(keys.signature)}`, Buffer.from(signed.signature));
  await remote.write('signers', Buffer.from(opts.signersText));
  const objects = [
    { what: 'RESTORE.sh', name: 'RESTORE.sh', ...manifest.restoreScript },
    ...manifest.items.map((i) => ({
      what: i.id,
      name: `backup/${baseName(i.key)}`,
      key: i.key,
      sha256: i.sha256,
      bytes: i.storedBytes,
    })),
  ];
  for (const object of objects) {
    bytes += await streamObject(remote, store, object, opts);
    if (opts.signal?.aborted) break;
  }
  const seconds = (Date.now() - started) / 1000;
  opts.logger.info(
    `copied ${objects.length} object(s), ${bytes} bytes, to ${remote.workDir} in ${seconds.toFixed(1)} s`,
  );
  return { bytes, seconds };
}

const baseName = (key: string) => key.slice(key.lastIndexOf('/') + 1);

/** One object from R2 into a file on the host, hashed on the way; retried from its start. */
async function streamObject(
  remote: Remote,
  store: BackupStore,
  object: { what: string; name: string; key: string; sha256: string },
  opts: RestoreHostOptions,
): Promise<number> {
  let got = { sha256: '', bytes: 0 };
  await retry(
    async () => {
      const { body } = await store.r2.openRead(object.key);
      const hash = createHash('sha256');
      let n = 0;
      const hashing = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          n += chunk.length;
          cb(null, chunk);
        },
      });
      await remote.write(object.name, body, hashing);
      got = { sha256: hash.digest('hex'), bytes: n };
    },
    {
      ...R2_RETRY,
      ...opts.retry,
      // A failed read from R2 is sent again from the start (`cat >` truncates); an SSH failure
      // (an OpsError) is not retried.
      retryable: (err) =>
        !(err instanceof OpsError) &&
        (isRetryableS3Error(err) ||
          /premature|aborted|terminated|socket|ECONNRESET/i.test(errorMessage(err))),
      onRetry: ({ err, attempt }) =>
        opts.logger.warn(
          `${object.what}: copy attempt ${attempt} failed (${errorMessage(err)}); sending it again`,
        ),
    },
  ).catch((err: unknown) => {
    throw err instanceof OpsError
      ? err
      : new OpsError(`R2 read of ${object.key} failed: ${errorMessage(err)}`);
  });
  if (got.sha256 !== object.sha256)
    throw new OpsError(
      `${object.what} (${object.key}) does not match the signed manifest: sha256 ${got.sha256}, recorded ${object.sha256}; nothing was restored`,
    );
  opts.logger.info(`${object.what}: ${got.bytes} bytes copied, sha256 matches the manifest`);
  return got.bytes;
}

interface RunOutcome {
  copied: Copied;
  parsed: Pick<RestoreHostResult, 'steps' | 'changes' | 'restoreSeconds'>;
}

/** Writes the identity, runs RESTORE.sh (output line by line to the log), parses its result. */
async function runRestore(
  remote: Remote,
  opts: RestoreHostOptions,
  copied: Copied,
): Promise<RunOutcome> {
  const { logger } = opts;
  await remote.write(
    IDENTITY,
    Buffer.from(`${opts.identities.map((i) => i.identity).join('\n')}\n`),
  );
  const args = [remote.workDir, opts.keepBackup ? '1' : '0', IDENTITY, ...restoreArgs(opts)];
  logger.info(`running RESTORE.sh ${restoreArgs(opts).join(' ')}`.trimEnd());
  const exec = remote.conn.exec(remote.command(RUN, args), {
    allowedExitCodes: Array.from({ length: 256 }, (_, i) => i),
  });
  const lines: string[] = [];
  let pending = '';
  const take = (line: string) => {
    lines.push(line);
    logger.info(line);
  };
  exec.stdout.setEncoding('utf8');
  exec.stdout.on('data', (text: string) => {
    const parts = (pending + text).split('\n');
    pending = parts.pop() ?? '';
    for (const line of parts) take(line);
  });
  let code: number | null;
  try {
    code = (await exec.done).code;
  } catch (err) {
    remote.dropped = true;
    if (pending) take(pending);
    const step = failedStep(lines);
    // The command's text (the wrapper script) says nothing to the reader: only why it ended.
    const why = errorMessage(err).replace(/ \((?:sudo -n )?bash -c [\s\S]*$/, '');
    throw new OpsError(
      `RESTORE.sh did not finish${step ? ` (in step ${step})` : ''}: ${why}${tailOf(lines)}`,
    );
  }
  if (pending) take(pending);
  if (code !== 0) {
    const step = failedStep(lines);
    throw new OpsError(
      `RESTORE.sh failed${step ? ` in step ${step}` : ' before its first step'} (exit code ${code})${tailOf(lines)}`,
    );
  }
  return { copied, parsed: parseRestoreOutput(lines) };
}

function restoreArgs(opts: RestoreHostOptions): string[] {
  const args: string[] = [];
  if (opts.modelsMount) args.push('--models-mount', opts.modelsMount);
  if (opts.scratchMount) args.push('--scratch-mount', opts.scratchMount);
  if (opts.ohmyzshRepo) args.push('--ohmyzsh-repo', opts.ohmyzshRepo);
  for (const step of opts.onlySteps ?? []) args.push('--only', step);
  for (const step of opts.skipSteps ?? []) args.push('--skip', step);
  if (opts.dryRun) args.push('--dry-run');
  return args;
}

const STEP_START = /^== (\w+): /;
const STEP_END = /^== (\w+): \d+ change\(s\), \d+\.\d{3} s$/;

/** The step RESTORE.sh began ("== step: title") and did not end ("== step: N change(s), ..."). */
export function failedStep(lines: string[]): string | undefined {
  let current: string | undefined;
  for (const line of lines) {
    const end = STEP_END.exec(line);
    if (end) {
      if (end[1] === current) current = undefined;
      continue;
    }
    const start = STEP_START.exec(line);
    if (start) current = start[1];
  }
  return current;
}

const TAIL_LINES = 12;
const tailOf = (lines: string[]) => {
  const tail = lines.filter((l) => l.trim() !== '').slice(-TAIL_LINES);
  return tail.length > 0 ? `; its last lines:\n${tail.join('\n')}` : '; it printed nothing';
};

const digits = z
  .string()
  .regex(/^\d{1,12}$/)
  .transform(Number);
const stepLineSchema = z.tuple([z.literal('STEP'), z.enum(RESTORE_STEPS), digits, digits]);
const DONE_RE =
  /^RESTORE\.sh: done, (\d+) change\(s\)(?: that would be made)? in (\d+)\.(\d{3}) s(?: \(the restore time\))?$/;

/**
 * RESTORE.sh's result, strictly: every `STEP\t<step>\t<changes>\t<ms>` line well formed, each
 * step once and in RESTORE.sh's order, and the done line's total equal to their sum.
 */
export function parseRestoreOutput(
  lines: string[],
): Pick<RestoreHostResult, 'steps' | 'changes' | 'restoreSeconds'> {
  const steps: StepResult[] = [];
  let done: { changes: number; seconds: number } | undefined;
  for (const line of lines) {
    if (line.startsWith('STEP')) {
      const parsed = stepLineSchema.safeParse(line.split('\t'));
      if (!parsed.success)
        throw new OpsError(
          `RESTORE.sh printed ${JSON.stringify(line.slice(0, 200))}: expected STEP<tab><one of ${RESTORE_STEPS.join(', ')}><tab><changes><tab><milliseconds>`,
        );
      const [, step, changes, ms] = parsed.data;
      const last = steps[steps.length - 1];
      if (last && RESTORE_STEPS.indexOf(step) <= RESTORE_STEPS.indexOf(last.step))
        throw new OpsError(`RESTORE.sh reported step ${step} after ${last.step}: out of order`);
      steps.push({ step, changes, seconds: ms / 1000 });
      continue;
    }
    const m = DONE_RE.exec(line);
    if (m) done = { changes: Number(m[1]), seconds: Number(m[2]) + Number(m[3]) / 1000 };
  }
  if (!done) throw new OpsError('RESTORE.sh exited 0 without its "RESTORE.sh: done, ..." line');
  if (steps.length === 0) throw new OpsError('RESTORE.sh exited 0 without a STEP line');
  const sum = steps.reduce((n, s) => n + s.changes, 0);
  if (sum !== done.changes)
    throw new OpsError(
      `RESTORE.sh reported ${done.changes} change(s) in total but ${sum} in its STEP lines`,
    );
  return { steps, changes: done.changes, restoreSeconds: done.seconds };
}

const HOST_KEY_LINE = z
  .string()
  .regex(
    /^(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) [A-Za-z0-9+/]{40,1000}={0,2}(?: .{0,200})?$/,
  );

/** The fingerprints of the host keys in /etc/ssh, read on the host; odd lines are ignored. */
async function readHostKeys(conn: SshConnection): Promise<string[]> {
  const { stdout } = await conn.run('cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null; exit 0');
  return [
    ...new Set(
      stdout
        .split('\n')
        .slice(0, 20)
        .filter((line) => HOST_KEY_LINE.safeParse(line.trim()).success)
        .map((line) => fingerprintSha256(Buffer.from(line.trim().split(' ')[1] ?? '', 'base64'))),
    ),
  ];
}

/**
 * The cleanup command on a new connection, pinned to the given keys or those the host served
 * after the restore (or, when the first connection dropped and they could not be read, the key
 * the backup was taken through). Returns the served keys, the one presented among them.
 */
async function cleanUp(
  opts: RestoreHostOptions,
  sudo: boolean,
  served: string[],
  manifest: Manifest,
): Promise<{ fingerprints: string[] }> {
  const pins = [...new Set([...opts.ssh.fingerprints, ...served, manifest.host.fingerprint])];
  const conn = await connectSsh({ ...opts.ssh, fingerprints: pins, logger: opts.logger });
  try {
    const keep = opts.keepBackup ? '1' : '0';
    const command = asRoot(sudo, CLEANUP, [opts.workDir, keep, IDENTITY]);
    const left = (await conn.run(command)).stdout.split('\n');
    if (left.includes('identity'))
      throw new OpsError(`${opts.workDir}/${IDENTITY} is still there after rm`);
    if (!opts.keepBackup && left.includes('work'))
      throw new OpsError(`${opts.workDir} is still there after rm -rf`);
    opts.logger.info(
      `removed the identity${opts.keepBackup ? ` (the backup is kept in ${opts.workDir})` : ` and ${opts.workDir}`} from the host`,
    );
    if (served.length > 0 && !served.includes(conn.hostFingerprint))
      throw new OpsError(
        `after the restore ${conn.host} presents host key ${conn.hostFingerprint}, which is not one of its keys in /etc/ssh (${served.join(', ')})`,
      );
    return { fingerprints: served.length > 0 ? served : [conn.hostFingerprint] };
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** The job summary: one row per step with its changes and seconds, then the total. */
export function restoreHostReport(
  result: RestoreHostResult,
  opts: { host: string },
): (string | Table)[] {
  const verb = result.dryRun ? 'would change' : 'changed';
  return [
    `## ${result.dryRun ? 'Restore dry run' : 'Restore'} of backup ${result.backupId} onto ${opts.host}: ${result.changes} change(s)${result.dryRun ? ' that would be made' : ''} in ${result.restoreSeconds.toFixed(1)} s`,
    {
      title: 'RESTORE.sh steps',
      headers: ['Step', `Changes (${verb})`, 'Seconds'],
      rows: [
        ...result.steps.map((s) => [s.step, String(s.changes), s.seconds.toFixed(1)]),
        ['**total**', `**${result.changes}**`, `**${result.restoreSeconds.toFixed(1)}**`],
      ],
    },
    factsTable('Restore', [
      ['backup id', result.backupId],
      [
        'copied to the host',
        `${formatBytes(result.copiedBytes)} in ${result.copySeconds.toFixed(1)} s (sha256 checked against the signed manifest)`,
      ],
      ['host keys after the restore', result.hostKeyFingerprints.join(', ') || '- (dry run)'],
    ]),
  ];
}
