// The restore drill: proves a backup can be restored before the day it is needed. The bucket is
// not trusted (SECURITY.md): for a backup (the latest by default) the drill first checks the
// manifest's signature against config/backup-signers, then the manifest against its strict
// schema and against the repository's config/backup.yml (every required item there, none
// empty, not from the future), and that the stored RESTORE.sh (sha256 in the signed manifest) is
// what this tool generates from that manifest. Then, per item: download (sha256 checked),
// restore with that RESTORE.sh (which verifies the signature itself) into a fresh root, and
// compare the restored tree with the archive file by file (`tar --compare`: every member
// present, same type, size, mode and contents), then delete both. Items go through these three
// steps as a pipeline two items deep (see DrillWork.items). The work directory, which holds
// restored secrets (SSH host keys, the Tailscale identity), is removed whatever happens.
import type { S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { errorMessage, InputError, OpsError } from '../lib/errors.js';
import { formatDuration } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';
import type { RetryOptions } from '../lib/retry.js';
import type { AllowedSigner } from '../lib/sshsig.js';
import type { BackupConfig } from './config.js';
import { backupKeys, type Manifest, type ManifestItem } from './manifest.js';
import { COMPRESSORS } from './remote-commands.js';
import { AFTER_RESTORE_LINE, restoreScript } from './restore-script.js';
import { checkIdentities, readSignedManifest, type SignedManifest } from './signed-backup.js';
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
  /** The keys a backup must be signed with (config/backup-signers). */
  signers: AllowedSigner[];
  /** The allowed signers file as text, handed to RESTORE.sh --signers. */
  signersText: string;
  /** This repository's config/backup.yml: its required items must be in the backup. */
  config: BackupConfig;
  /** Restore only these items (default all). */
  only?: string[];
  /** A backup older than this is reported stale (the nightly runs stopped). */
  maxAgeMs?: number;
  /**
   * After a drill that passed, the verified backup is left here for a rebuild drill (RESTORE.sh,
   * manifest.json and its .sig, every archive, the signers file; never the identity). A drill
   * that fails leaves nothing here.
   */
  keepDir?: string;
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
  /** Seconds each kind of step was busy, summed over the items (steps of two items overlap). */
  downloadSeconds: number;
  restoreSeconds: number;
  checkSeconds: number;
}

export async function runRestoreDrill(opts: DrillOptions): Promise<DrillResult> {
  const { logger } = opts;
  const now = opts.now ?? (() => new Date());
  const store = BackupStore.open(opts, logger);
  const where = `s3://${opts.bucket}/${opts.prefix}`;

  const signed = await readSignedManifest(
    store,
    {
      ...(opts.backupId ? { backupId: opts.backupId } : {}),
      signers: opts.signers,
      input: 'backup-id',
      purpose: 'drill',
    },
    where,
  );
  const { manifest } = signed;
  checkProves(manifest, opts.config, now());
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
    const drill = new DrillWork(work, store, opts);
    const files = await drill.prepare(manifest);
    const started = Date.now();
    const results = await drill.items(files, signed, items);
    logger.info(
      `${items.length} item(s) downloaded, restored and compared in ${formatDuration(Date.now() - started)} (the steps of two items overlap)`,
    );
    if (opts.keepDir) await drill.keep(files, signed, opts.keepDir);
    failed = false;
    return {
      backupId: manifest.backupId,
      finishedAt: manifest.finishedAt,
      ageHours: ageMs / 3.6e6,
      stale: opts.maxAgeMs !== undefined && ageMs > opts.maxAgeMs,
      items: results,
      downloadedBytes: drill.downloadedBytes,
      downloadSeconds: drill.timing.download,
      restoreSeconds: drill.timing.restore,
      checkSeconds: drill.timing.check,
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

/** How far a backup's clock may run ahead of the drill's. */
const CLOCK_SKEW_MS = 5 * 60_000;

/**
 * A drill must fail when it would prove nothing: a backup with no items, without a required
 * item of this repository's config, or from the future.
 */
function checkProves(manifest: Manifest, config: BackupConfig, now: Date): void {
  const id = manifest.backupId;
  if (manifest.items.length === 0)
    throw new OpsError(`backup ${id} has no items: a drill of it would prove nothing`);
  const present = new Set(manifest.items.map((i) => i.id));
  const missing = config.items.filter((i) => i.required && !present.has(i.id)).map((i) => i.id);
  if (missing.length > 0) {
    throw new OpsError(`backup ${id} lacks required item(s) of the config: ${missing.join(', ')}`);
  }
  const ahead = Date.parse(manifest.finishedAt) - now.getTime();
  if (ahead > CLOCK_SKEW_MS) {
    throw new OpsError(
      `backup ${id} finished at ${manifest.finishedAt}, ${(ahead / 60_000).toFixed(0)} min in the future: its clock or its manifest is wrong`,
    );
  }
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

type Timing = Record<'download' | 'restore' | 'check', number>;

/**
 * The drill's steps in its work directory: what they share (the store, the log, the limits of
 * each child process) and what they add up (bytes downloaded, seconds per kind of step).
 */
class DrillWork {
  readonly timing: Timing = { download: 0, restore: 0, check: 0 };
  downloadedBytes = 0;
  private readonly step: Step;

  constructor(
    private readonly dir: string,
    private readonly store: BackupStore,
    private readonly opts: DrillOptions,
  ) {
    this.step = { timeoutMs: opts.stepTimeoutMs ?? 30 * 60_000, signal: opts.signal };
  }

  /** RESTORE.sh, once it is the script this tool generates, and the identity and signers files. */
  async prepare(manifest: Manifest): Promise<ScriptFiles> {
    const stored = path.join(this.dir, 'RESTORE.sh.stored');
    await this.download(manifest.restoreScript, 'RESTORE.sh', stored);
    checkRestoreScript(await readFile(stored, 'utf8'), manifest, this.opts);
    const script = path.join(this.dir, 'RESTORE.sh');
    await rename(stored, script);
    await chmod(script, 0o700);
    const identityFile = path.join(this.dir, 'identity.txt');
    await writeFile(identityFile, `${this.opts.identities.map((i) => i.identity).join('\n')}\n`, {
      mode: 0o600,
    });
    const signersFile = path.join(this.dir, 'backup-signers');
    await writeFile(signersFile, this.opts.signersText, { mode: 0o600 });
    return { script, identityFile, signersFile };
  }

  /**
   * Every item: downloaded, restored with RESTORE.sh, compared with its archive, removed. Each
   * item has a directory of its own (its archive with the signed manifest, as RESTORE.sh --from
   * wants them, and a fresh root: items overlap, the project lies inside the home directory), so
   * the steps of neighbouring items (in pipelineOrder) can run at once: item i+1 is downloaded
   * and restored while item i is restored or compared. The comparison's second decryption and
   * the downloads then mostly overlap the RESTORE.sh runs instead of adding to them (measured:
   * comparing by hashing the restored files costs more CPU than decrypting again, see
   * bench/_drill-profile.ts). Downloads run one at a time, and at most two items are on disk at
   * once: an archive is downloaded once the item two places before it is removed. Comparisons
   * run in order. The first failure stops the rest: running children are killed (their whole
   * process group) before that failure is reported.
   */
  async items(
    files: ScriptFiles,
    signed: SignedManifest,
    items: ManifestItem[],
  ): Promise<DrillItem[]> {
    const stop = new AbortController();
    const cancel = () => stop.abort();
    this.opts.signal?.addEventListener('abort', cancel, { once: true });
    if (this.opts.signal?.aborted) stop.abort();
    const step: Step = { ...this.step, signal: stop.signal };
    // A step starts once the steps it waits for are done, or fails at once when the drill stops.
    const after = (deps: (Promise<unknown> | undefined)[]): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        const stopped = () => reject(new OpsError('the restore drill was cancelled'));
        if (stop.signal.aborted) return stopped();
        stop.signal.addEventListener('abort', stopped, { once: true });
        Promise.all(deps).then(
          () => {
            stop.signal.removeEventListener('abort', stopped);
            if (stop.signal.aborted) stopped();
            else resolve();
          },
          (err: unknown) => {
            stop.signal.removeEventListener('abort', stopped);
            reject(err);
          },
        );
      });
    // The first failure is the one reported: the steps it stops fail as cancelled after it.
    let failure: { error: unknown } | undefined;
    const failing = <T>(p: Promise<T>): Promise<T> => {
      p.catch((error: unknown) => {
        failure ??= { error };
        stop.abort();
      });
      return p;
    };
    const downloaded: Promise<ItemFiles>[] = [];
    const restored: Promise<ItemFiles>[] = [];
    const compared: Promise<DrillItem>[] = [];
    const order = pipelineOrder(items);
    order.forEach((item, i) => {
      downloaded[i] = failing(
        after([downloaded[i - 1], compared[i - 2]]).then(() => this.fetchItem(signed, item, i)),
      );
      restored[i] = failing(
        after([downloaded[i]]).then(async () => {
          const at = await downloaded[i]!;
          const where = { ...files, archives: at.archives, root: at.root };
          await this.timed('restore', () => restoreItem(where, item, this.opts.logger, step));
          return at;
        }),
      );
      compared[i] = failing(
        after([restored[i], compared[i - 1]]).then(async () =>
          this.compareItem(files, item, await restored[i]!, step),
        ),
      );
    });
    try {
      const done = await Promise.all(compared);
      // The summary lists the items in the manifest's order.
      return items.map((item) => done[order.indexOf(item)]!);
    } catch (err) {
      // The children are killed by now: wait for them before the work directory goes. A
      // download cannot be cut: it only writes an encrypted archive, into a directory that is
      // about to be removed (its late writes fail, or go to a removed file).
      for (const p of downloaded) p.catch(() => undefined);
      await Promise.allSettled([...restored, ...compared]);
      throw failure ? failure.error : err;
    } finally {
      this.opts.signal?.removeEventListener('abort', cancel);
    }
  }

  /** An item's directory: its archive beside the signed manifest, and a fresh root. */
  private async fetchItem(
    signed: SignedManifest,
    item: ManifestItem,
    i: number,
  ): Promise<ItemFiles> {
    const dir = path.join(this.dir, `item-${i}`);
    const archives = path.join(dir, 'archives');
    const root = path.join(dir, 'root');
    await mkdir(dir);
    await mkdir(archives);
    await mkdir(root);
    // RESTORE.sh checks the signature itself, from the same directory as the archives.
    const keys = backupKeys(this.opts.prefix, signed.manifest.backupId);
    await writeFile(path.join(archives, path.posix.basename(keys.manifest)), signed.text);
    await writeFile(path.join(archives, path.posix.basename(keys.signature)), signed.signature);
    const archive = path.join(archives, path.posix.basename(item.key));
    await this.download(item, item.id, archive);
    return { dir, archives, archive, root };
  }

  /** Compares the restored tree with the archive, then removes both (or keeps the archive). */
  private async compareItem(
    files: ScriptFiles,
    item: ManifestItem,
    at: ItemFiles,
    step: Step,
  ): Promise<DrillItem> {
    const restored = {
      identityFile: files.identityFile,
      archive: at.archive,
      dir: path.join(at.root, item.restoreTo),
    };
    const compared = await this.timed('check', () => compareItem(restored, item, step));
    this.opts.logger.info(
      `${item.id}: ${compared.members} member(s) restored, equal to the archive` +
        (compared.ownershipIgnored
          ? ` (${compared.ownershipIgnored} owner(s) not compared: not root)`
          : ''),
    );
    if (this.opts.keepDir) {
      await mkdir(this.kept(), { recursive: true });
      await rename(at.archive, path.join(this.kept(), path.basename(at.archive)));
    }
    await removeTree(at.dir);
    return { id: item.id, storedBytes: item.storedBytes, ...compared };
  }

  /** The archives kept for a rebuild drill, inside the work directory until the drill passed. */
  private kept(): string {
    return path.join(this.dir, 'kept');
  }

  /** Moves what a rebuild needs, all of it verified, into keepDir (made, mode 0700). */
  async keep(files: ScriptFiles, signed: SignedManifest, keepDir: string): Promise<void> {
    const kept = this.kept();
    await mkdir(kept, { recursive: true });
    const keys = backupKeys(this.opts.prefix, signed.manifest.backupId);
    await writeFile(path.join(kept, path.posix.basename(keys.manifest)), signed.text);
    await writeFile(path.join(kept, path.posix.basename(keys.signature)), signed.signature);
    await cp(files.script, path.join(kept, 'RESTORE.sh'));
    await cp(files.signersFile, path.join(kept, 'backup-signers'));
    await mkdir(keepDir, { recursive: true, mode: 0o700 });
    await cp(kept, keepDir, { recursive: true });
    this.opts.logger.info(`the verified backup is kept in ${keepDir} for a rebuild`);
  }

  /** Downloads an object into `file` and checks its sha256 against the manifest. */
  private async download(
    object: { key: string; sha256: string },
    what: string,
    file: string,
  ): Promise<void> {
    const bytes = await this.timed('download', async () => {
      const got = await this.store.sha256Of(object.key, file);
      if (got.sha256 !== object.sha256) {
        throw new OpsError(
          `${what} (${object.key}) does not match the manifest: sha256 ${got.sha256}, recorded ${object.sha256}`,
        );
      }
      this.opts.logger.info(`${what}: ${got.bytes} bytes, sha256 matches the manifest`);
      return got.bytes;
    });
    this.downloadedBytes += bytes;
  }

  private async timed<T>(what: keyof Timing, fn: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      return await fn();
    } finally {
      this.timing[what] += (Date.now() - started) / 1000;
    }
  }
}

// RESTORE.sh names the endpoint it downloads from, and carries the after-restore steps of the
// config at backup time; the drill passes --from and --skip-after-restore, so only those lines
// may differ from the script generated here (each is a line of its own).
const ENDPOINT_LINE = /^R2_ENDPOINT=\$\{R2_ENDPOINT:-.*\}$/m;

/**
 * Checks that the stored RESTORE.sh (its sha256 is in the signed manifest) is the script this
 * tool generates from the manifest, with the after-restore steps of this repository's config.
 */
function checkRestoreScript(stored: string, manifest: Manifest, opts: DrillOptions): void {
  const afterRestore = new Map(opts.config.items.map((i) => [i.id, i['after-restore']]));
  const generated = restoreScript({
    backupId: manifest.backupId,
    toolVersion: manifest.tool.version,
    bucket: opts.bucket,
    manifestKey: backupKeys(opts.prefix, manifest.backupId).manifest,
    endpoint: opts.endpoint,
    hostFingerprint: manifest.host.fingerprint,
    facts: manifest.facts,
    shape: manifest.rebuild.host,
    checks: manifest.rebuild.checks,
    items: manifest.items.map((i) => ({ ...i, afterRestore: afterRestore.get(i.id) ?? [] })),
  });
  const same = (script: string) =>
    script.replace(ENDPOINT_LINE, 'R2_ENDPOINT').replace(AFTER_RESTORE_LINE, 'AFTER_RESTORE');
  const a = same(stored).split('\n');
  const b = same(generated).split('\n');
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
}

interface Step {
  timeoutMs: number;
  signal: AbortSignal | undefined;
}

/** RESTORE.sh, checked, and the files it is given. */
interface ScriptFiles {
  script: string;
  identityFile: string;
  signersFile: string;
}

/**
 * The order items go through the pipeline. Its fill (the first download) and its drain (the
 * last comparison) overlap nothing, and take time in proportion to the item's size: the
 * smallest item goes first, then the others from the largest down, so the last is small too.
 */
export function pipelineOrder<T extends { storedBytes: number }>(items: readonly T[]): T[] {
  const sorted = [...items].sort((a, b) => a.storedBytes - b.storedBytes);
  const [first, ...rest] = sorted;
  return first ? [first, ...rest.reverse()] : [];
}

/** One item's files in the work directory. */
interface ItemFiles {
  dir: string;
  /** The archive, manifest.json and its signature (RESTORE.sh --from). */
  archives: string;
  archive: string;
  /** The fresh root RESTORE.sh restores into (--root). */
  root: string;
}

interface RestoreFiles extends ScriptFiles {
  /** The archives, manifest.json and its signature. */
  archives: string;
  root: string;
}

async function restoreItem(
  files: RestoreFiles,
  item: ManifestItem,
  logger: Logger,
  step: Step,
): Promise<void> {
  const out: Buffer[] = [];
  const args = [files.script, '--signers', files.signersFile, '--identity', files.identityFile];
  args.push('--root', files.root, '--from', files.archives);
  // RESTORE.sh's own temp dir inside the drill's work dir: a killed run (timeout, cancel) leaves
  // nothing behind, since the work dir goes whatever happens.
  const tmpDir = path.join(path.dirname(files.root), 'tmp');
  await mkdir(tmpDir, { recursive: true });
  const done = await run('bash', [...args, '--skip-after-restore', '--item', item.id], {
    ...step,
    tmpDir,
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
  restored: { identityFile: string; archive: string; dir: string },
  item: ManifestItem,
  step: Step,
): Promise<{ members: number; ownershipIgnored: number }> {
  const { identityFile, archive, dir } = restored;
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
  const members = lines.length - lines.filter((l) => DIFFERS.test(l)).length;
  if (members === 0)
    throw new OpsError(`${item.id}: the archive restores no file: it proves nothing`);
  return { members, ownershipIgnored };
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
  opts: Partial<Step> & { onStdout?: (chunk: Buffer) => void; tmpDir?: string } = {},
): Promise<Finished> {
  if (opts.signal?.aborted) return Promise.reject(new OpsError('the restore drill was cancelled'));
  const env: NodeJS.ProcessEnv = { LC_ALL: 'C' };
  for (const name of ['PATH', 'HOME', 'TMPDIR'])
    if (process.env[name] !== undefined) env[name] = process.env[name];
  if (opts.tmpDir) env.TMPDIR = opts.tmpDir;
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
