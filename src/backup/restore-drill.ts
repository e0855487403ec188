// The restore drill: proves a backup can be restored before the day it is needed. For a backup
// (the latest by default) it checks the manifest, and checks that the stored RESTORE.sh is exactly
// what this tool generates from that manifest: the script is code from the bucket, and write
// access to the bucket must not become code running next to the drill key. Then, one item at a
// time: download (sha256 checked against the manifest), restore with RESTORE.sh into a fresh root,
// and compare the restored tree with the archive file by file (`tar --compare`: every member
// present, same type, size, mode and contents), then delete both. The work directory, which holds
// restored secrets (SSH host keys, the Tailscale identity), is removed whatever happens.
import type { S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { errorMessage, InputError, OpsError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { RetryOptions } from '../lib/retry.js';
import { backupKeys, parseManifest, type Manifest, type ManifestItem } from './manifest.js';
import { COMPRESSORS } from './remote-commands.js';
import { restoreScript } from './restore-script.js';
import { BackupStore } from './store.js';
import { TOOL_VERSION } from './version.js';

export interface DrillOptions {
  client: S3Client;
  bucket: string;
  prefix: string;
  /** The R2 endpoint, as RESTORE.sh names it for downloads (the drill passes --from). */
  endpoint: string;
  /** Default: the backup latest.json names. */
  backupId?: string;
  /** age identities (AGE-SECRET-KEY-1...) with their recipients; one must be the backup's. */
  identities: { identity: string; recipient: string }[];
  /** Restore only these items (default all). */
  only?: string[];
  /** A backup older than this is reported stale (the nightly runs stopped). */
  maxAgeMs?: number;
  /** Where the work directory is made (default the OS temp dir; RUNNER_TEMP in Actions). */
  tempDir?: string;
  /** Longest one child process (a restore, a comparison) may take. Default 30 min. */
  stepTimeoutMs?: number;
  /** Cancels the drill (the workflow was cancelled): children are killed, files removed. */
  signal?: AbortSignal;
  logger: Logger;
  retry?: RetryOptions;
  now?: () => Date;
}

export interface DrillItem {
  id: string;
  storedBytes: number;
  /** Archive members found restored and equal (files, directories, links). */
  members: number;
  /** Ownership differences, ignored when the drill does not run as root. */
  ownershipIgnored: number;
}

export interface DrillResult {
  backupId: string;
  finishedAt: string;
  ageHours: number;
  stale: boolean;
  items: DrillItem[];
  downloadedBytes: number;
  downloadSeconds: number;
  restoreSeconds: number;
  checkSeconds: number;
}

export async function runRestoreDrill(opts: DrillOptions): Promise<DrillResult> {
  const { logger } = opts;
  const now = opts.now ?? (() => new Date());
  const store = new BackupStore(opts.client, opts.bucket, opts.prefix, logger, opts.retry);
  const where = `s3://${opts.bucket}/${opts.prefix}`;

  const manifest = await readManifest(store, opts.backupId, where);
  const items = selectItems(manifest, opts.only);
  checkIdentities(manifest, opts.identities);
  const ageMs = now().getTime() - Date.parse(manifest.finishedAt);
  logger.info(
    `backup ${manifest.backupId}: ${items.length} item(s), finished ${manifest.finishedAt} (${(ageMs / 3.6e6).toFixed(1)} h ago)`,
  );

  const work = await mkdtemp(path.join(opts.tempDir ?? os.tmpdir(), 'comfyume-drill-'));
  let failed = true;
  try {
    await chmod(work, 0o700);
    const step = { timeoutMs: opts.stepTimeoutMs ?? 30 * 60_000, signal: opts.signal };
    const timing = { download: 0, restore: 0, check: 0 };
    const timed = async <T>(what: keyof typeof timing, fn: () => Promise<T>): Promise<T> => {
      const started = Date.now();
      try {
        return await fn();
      } finally {
        timing[what] += (Date.now() - started) / 1000;
      }
    };

    const stored = path.join(work, 'RESTORE.sh.stored');
    let downloadedBytes = await timed('download', () =>
      download(store, manifest.restoreScript, 'RESTORE.sh', stored, logger),
    );
    const script = path.join(work, 'RESTORE.sh');
    await writeFile(script, checkedRestoreScript(await readFile(stored, 'utf8'), manifest, opts), {
      mode: 0o700,
    });
    const identityFile = path.join(work, 'identity.txt');
    await writeFile(identityFile, `${opts.identities.map((i) => i.identity).join('\n')}\n`, {
      mode: 0o600,
    });

    const results: DrillItem[] = [];
    for (const item of items) {
      // One item at a time, each into a root of its own: items overlap (the project lies inside
      // the home directory, which excludes it), and disk use stays at one item.
      const archives = path.join(work, 'archives');
      const root = path.join(work, 'root');
      await mkdir(archives);
      await mkdir(root);
      const archive = path.join(archives, path.posix.basename(item.key));
      downloadedBytes += await timed('download', () =>
        download(store, item, item.id, archive, logger),
      );
      await timed('restore', () =>
        restoreItem(script, identityFile, archives, root, item, logger, step),
      );
      const compared = await timed('check', () =>
        compareItem(identityFile, archive, path.join(root, item.restoreTo), item, step),
      );
      logger.info(
        `${item.id}: ${compared.members} member(s) restored, equal to the archive` +
          (compared.ownershipIgnored
            ? ` (${compared.ownershipIgnored} owner(s) not compared: not root)`
            : ''),
      );
      results.push({ id: item.id, storedBytes: item.storedBytes, ...compared });
      await removeTree(archives);
      await removeTree(root);
    }
    failed = false;
    return {
      backupId: manifest.backupId,
      finishedAt: manifest.finishedAt,
      ageHours: ageMs / 3.6e6,
      stale: opts.maxAgeMs !== undefined && ageMs > opts.maxAgeMs,
      items: results,
      downloadedBytes,
      downloadSeconds: timing.download,
      restoreSeconds: timing.restore,
      checkSeconds: timing.check,
    };
  } finally {
    // Restored secrets never outlive the drill. A cleanup failure after another failure is
    // logged, so the first error stays the one reported.
    await removeTree(work).catch((err: unknown) => {
      if (!failed) throw err;
      logger.error(errorMessage(err));
    });
  }
}

async function readManifest(
  store: BackupStore,
  backupId: string | undefined,
  where: string,
): Promise<Manifest> {
  let key: string;
  if (backupId) {
    key = backupKeys(store.prefix, backupId).manifest;
  } else {
    const latest = await store.latest();
    if (!latest)
      throw new OpsError(`no backup to drill: ${where}/latest.json is missing or unreadable`);
    key = latest.manifestKey;
  }
  const text = await store.getText(key);
  if (text === undefined) {
    throw backupId
      ? new InputError('backup-id', backupId, `a backup under ${where} (it has no manifest.json)`)
      : new OpsError(`latest.json names ${key}, which does not exist`);
  }
  return parseManifest(text, key);
}

function selectItems(manifest: Manifest, only: string[] | undefined): ManifestItem[] {
  if (!only || only.length === 0) return manifest.items;
  const ids = manifest.items.map((i) => i.id);
  const unknown = only.filter((id) => !ids.includes(id));
  if (unknown.length > 0) {
    throw new InputError(
      'items',
      unknown.join(','),
      `items of backup ${manifest.backupId}: ${ids.join(', ')}`,
    );
  }
  return manifest.items.filter((i) => only.includes(i.id));
}

function checkIdentities(manifest: Manifest, identities: DrillOptions['identities']): void {
  const recipients = manifest.encryption.recipients;
  if (!identities.some((i) => recipients.includes(i.recipient))) {
    throw new InputError(
      'age-identity',
      `<keys of ${identities.map((i) => i.recipient).join(', ')}>`,
      `the secret key of one of backup ${manifest.backupId}'s recipients: ${recipients.join(', ')}`,
    );
  }
}

/** Downloads an object into `file` and checks its sha256 against the manifest. */
async function download(
  store: BackupStore,
  object: { key: string; sha256: string },
  what: string,
  file: string,
  logger: Logger,
): Promise<number> {
  const got = await store.sha256Of(object.key, file);
  if (got.sha256 !== object.sha256) {
    throw new OpsError(
      `${what} (${object.key}) does not match the manifest: sha256 ${got.sha256}, recorded ${object.sha256}`,
    );
  }
  logger.info(`${what}: ${got.bytes} bytes, sha256 matches the manifest`);
  return got.bytes;
}

// RESTORE.sh names the endpoint it downloads from; the drill passes --from, so only that value
// may differ from the generated script (a line of its own, replaced before comparing).
const ENDPOINT_LINE = /^R2_ENDPOINT=\$\{R2_ENDPOINT:-.*\}$/m;

/**
 * The RESTORE.sh to run: this tool's own, generated from the manifest, once the stored one is
 * found to be the same script (apart from the endpoint it names).
 */
function checkedRestoreScript(stored: string, manifest: Manifest, opts: DrillOptions): string {
  const generated = restoreScript({
    backupId: manifest.backupId,
    toolVersion: manifest.tool.version,
    bucket: opts.bucket,
    prefix: opts.prefix,
    endpoint: opts.endpoint,
    hostFingerprint: manifest.host.fingerprint,
    facts: manifest.facts,
    items: manifest.items,
  });
  const line = ENDPOINT_LINE.exec(generated)?.[0] ?? '';
  const a = stored.replace(ENDPOINT_LINE, line).split('\n');
  const b = generated.split('\n');
  const at = a.findIndex((l, i) => l !== b[i]);
  if (at >= 0 || a.length !== b.length) {
    const n = at >= 0 ? at : Math.min(a.length, b.length);
    const version =
      manifest.tool.version === TOOL_VERSION
        ? `the same version (${TOOL_VERSION}) wrote it, so it was changed after the backup`
        : `it was written by ${manifest.tool.version} and this is ${TOOL_VERSION}: drill a backup written by this version`;
    throw new OpsError(
      `RESTORE.sh of backup ${manifest.backupId} is not the script this tool generates from its manifest (line ${n + 1} differs); ${version}. Not run.`,
    );
  }
  return generated;
}

interface Step {
  timeoutMs: number;
  signal: AbortSignal | undefined;
}

async function restoreItem(
  script: string,
  identityFile: string,
  archives: string,
  root: string,
  item: ManifestItem,
  logger: Logger,
  step: Step,
): Promise<void> {
  const out: Buffer[] = [];
  const args = ['--identity', identityFile, '--root', root, '--from', archives];
  const done = await run('bash', [script, ...args, '--skip-after-restore', '--only', item.id], {
    ...step,
    onStdout: (chunk) => out.push(chunk),
  });
  for (const line of Buffer.concat(out).toString('utf8').split('\n'))
    if (line.trim()) logger.info(`RESTORE.sh: ${line}`);
  if (done.code !== 0) {
    throw new OpsError(`RESTORE.sh failed on ${item.id} (${done.how}): ${tail(done.stderr)}`);
  }
}

// What `tar --compare` reports for a member that differs (GNU tar 1.30+ wording, LC_ALL=C).
const DIFFERS = /: (?:[A-Z][a-z]*(?: [a-z]+)* differs?|Not linked to .*|Contents differ)$/;
const OWNERSHIP = /: (?:Uid|Gid) differs$/;

/**
 * Decrypts the archive again and lets GNU tar compare it with the restored tree: a missing
 * member, another type, size, mode, link target or different contents all count. Ownership can
 * only match when the restore ran as root; otherwise it is counted, not failed.
 */
async function compareItem(
  identityFile: string,
  archive: string,
  dir: string,
  item: ManifestItem,
  step: Step,
): Promise<{ members: number; ownershipIgnored: number }> {
  const decompress = COMPRESSORS[item.compression].decompress;
  const pipeline = `age -d -i "$1" -- "$2" | ${decompress} | tar --compare --verbose --numeric-owner --file=- --directory="$3"`;
  let listing = '';
  const done = await run(
    'bash',
    ['-o', 'pipefail', '-c', pipeline, 'compare', identityFile, archive, dir],
    {
      ...step,
      onStdout: (chunk) => (listing += chunk.toString('utf8')),
    },
  );
  const lines = listing.split('\n').filter((l) => l !== '');
  const asRoot = process.getuid?.() === 0;
  const differing = lines.filter((l) => DIFFERS.test(l) && (asRoot || !OWNERSHIP.test(l)));
  const ownershipIgnored = asRoot ? 0 : lines.filter((l) => OWNERSHIP.test(l)).length;
  const troubles = done.stderr.split('\n').filter((l) => l.startsWith('tar: '));
  const problems = [...differing, ...troubles];
  // tar exits 1 when something differs; ownership alone (not root) is not a failure.
  const onlyOwnership = done.code === 1 && problems.length === 0 && ownershipIgnored > 0;
  if (problems.length > 0 || (done.code !== 0 && !onlyOwnership)) {
    const shown = problems.slice(0, 5).join('; ') || tail(done.stderr);
    throw new OpsError(
      `${item.id}: the restored files differ from the archive (${done.how}${problems.length > 5 ? `, ${problems.length} problems` : ''}): ${shown}`,
    );
  }
  return { members: lines.length - lines.filter((l) => DIFFERS.test(l)).length, ownershipIgnored };
}

const tail = (stderr: string) => stderr.trim().split('\n').slice(-5).join(' | ') || 'no message';

interface Finished {
  code: number | null;
  /** "exit code N", "signal S" or "timed out after N s". */
  how: string;
  stderr: string;
}

/**
 * Runs a local command with its stdout to `onStdout` and its stderr kept. The environment is
 * PATH, HOME and TMPDIR only (the action's own holds its secret inputs), with LC_ALL=C since
 * tar's messages are parsed. A timeout or the abort signal kills its whole process group: in a
 * pipeline (age | zstd | tar) killing bash alone would leave the others running.
 */
function run(
  command: string,
  args: string[],
  opts: Partial<Step> & { onStdout?: (chunk: Buffer) => void } = {},
): Promise<Finished> {
  if (opts.signal?.aborted) return Promise.reject(new OpsError('the restore drill was cancelled'));
  const env: NodeJS.ProcessEnv = { LC_ALL: 'C' };
  for (const name of ['PATH', 'HOME', 'TMPDIR'])
    if (process.env[name] !== undefined) env[name] = process.env[name];
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const killGroup = () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  let timedOut = false;
  const timer = opts.timeoutMs
    ? setTimeout(() => {
        timedOut = true;
        killGroup();
      }, opts.timeoutMs)
    : undefined;
  opts.signal?.addEventListener('abort', killGroup, { once: true });
  let stderr = '';
  child.stdout.on('data', opts.onStdout ?? (() => undefined));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  return new Promise((resolve, reject) => {
    const settle = () => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', killGroup);
    };
    child.on('error', (err) => {
      settle();
      reject(err);
    });
    child.on('close', (code, signal) => {
      settle();
      if (opts.signal?.aborted) return reject(new OpsError('the restore drill was cancelled'));
      const how = timedOut
        ? `timed out after ${Math.round((opts.timeoutMs ?? 0) / 1000)} s`
        : signal
          ? `signal ${signal}`
          : `exit code ${code}`;
      resolve({ code, how, stderr });
    });
  });
}

/**
 * rm -rf that also takes trees a non-root restore made unwritable (a directory stored 0555 keeps
 * its entries); fails, naming the directory, if restored files would remain.
 */
async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch {
    await run('chmod', ['-R', 'u+rwX', '--', dir]).catch(() => undefined);
    try {
      await rm(dir, { recursive: true, force: true });
    } catch (err) {
      throw new OpsError(
        `could not remove the drill's restored files in ${dir}: ${errorMessage(err)}`,
      );
    }
  }
}
