// The restore drill: proves a backup can be restored before the day it is needed. It downloads a
// backup (the latest by default), checks every object against the manifest's sha256, runs the
// backup's own RESTORE.sh with a drill identity, each item into a fresh root of its own, and
// compares each restored item with what the host's tar wrote: tar of the restored tree, with the
// same flags, must come to the manifest's tarBytes (tar's size depends on every member's name,
// type and size, so a missing, extra or truncated file shows). The work directory, which holds
// restored secrets (SSH host keys, the Tailscale identity), is removed at the end whatever happens.
import type { S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InputError, OpsError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { RetryOptions } from '../lib/retry.js';
import { shellGlob, shellQuote } from '../lib/shell.js';
import { backupKeys, parseManifest, type Manifest, type ManifestItem } from './manifest.js';
import { memberOf, TAR_CREATE } from './remote-commands.js';
import { BackupStore } from './store.js';

export interface DrillOptions {
  client: S3Client;
  bucket: string;
  prefix: string;
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
  logger: Logger;
  retry?: RetryOptions;
  now?: () => Date;
}

export interface DrillItem {
  id: string;
  storedBytes: number;
  /** What the host's tar wrote, from the manifest (null when tar did not report it). */
  tarBytes: number | null;
  /** tar of the restored tree, same flags. */
  restoredTarBytes: number;
  /** Files, directories and links restored. */
  members: number;
  /** restoredTarBytes equals tarBytes; null when there was nothing to compare with. */
  match: boolean | null;
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

const seconds = (since: number) => (Date.now() - since) / 1000;

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
  try {
    await chmod(work, 0o700);
    const archives = path.join(work, 'archives');
    const root = path.join(work, 'root');
    await mkdir(archives);
    await mkdir(root);

    let started = Date.now();
    let downloadedBytes = 0;
    const script = path.join(work, 'RESTORE.sh');
    const objects = [
      {
        what: 'RESTORE.sh',
        key: manifest.restoreScript.key,
        sha256: manifest.restoreScript.sha256,
        file: script,
      },
      ...items.map((i) => ({
        what: i.id,
        key: i.key,
        sha256: i.sha256,
        file: path.join(archives, path.posix.basename(i.key)),
      })),
    ];
    for (const o of objects) {
      const got = await store.sha256Of(o.key, o.file);
      if (got.sha256 !== o.sha256) {
        throw new OpsError(
          `${o.what} (${o.key}) does not match the manifest: sha256 ${got.sha256}, recorded ${o.sha256}`,
        );
      }
      downloadedBytes += got.bytes;
      logger.info(`${o.what}: ${got.bytes} bytes, sha256 matches the manifest`);
    }
    const downloadSeconds = seconds(started);

    started = Date.now();
    const identityFile = path.join(work, 'identity.txt');
    await writeFile(identityFile, `${opts.identities.map((i) => i.identity).join('\n')}\n`, {
      mode: 0o600,
    });
    // One root per item: items overlap (the project lies inside the home directory, which
    // excludes it), and each restored tree must hold exactly its own item to be compared.
    for (const item of items) {
      await mkdir(path.join(root, item.id));
      await runRestoreScript(
        script,
        [
          '--identity',
          identityFile,
          '--root',
          path.join(root, item.id),
          '--from',
          archives,
          '--skip-after-restore',
          '--only',
          item.id,
        ],
        logger,
      );
    }
    await rm(identityFile, { force: true });
    const restoreSeconds = seconds(started);

    started = Date.now();
    const results: DrillItem[] = [];
    for (const item of items) {
      const restored = await tarRestoredItem(path.join(root, item.id, item.restoreTo), item);
      const match = item.tarBytes === null ? null : restored.bytes === item.tarBytes;
      results.push({
        id: item.id,
        storedBytes: item.storedBytes,
        tarBytes: item.tarBytes,
        restoredTarBytes: restored.bytes,
        members: restored.members,
        match,
      });
      logger.info(
        `${item.id}: ${restored.members} member(s) restored, tar ${restored.bytes} bytes` +
          (item.tarBytes === null
            ? ' (the host did not report its tar size)'
            : `, host ${item.tarBytes}`),
      );
    }
    const mismatched = results.filter((r) => r.match === false);
    if (mismatched.length > 0) {
      throw new OpsError(
        `restored items differ from what the host archived: ${mismatched
          .map(
            (r) => `${r.id} (tar ${r.restoredTarBytes} bytes restored, ${r.tarBytes} on the host)`,
          )
          .join(', ')}`,
      );
    }
    return {
      backupId: manifest.backupId,
      finishedAt: manifest.finishedAt,
      ageHours: ageMs / 3.6e6,
      stale: opts.maxAgeMs !== undefined && ageMs > opts.maxAgeMs,
      items: results,
      downloadedBytes,
      downloadSeconds,
      restoreSeconds,
      checkSeconds: seconds(started),
    };
  } finally {
    // Restored secrets never outlive the drill.
    await rm(work, { recursive: true, force: true });
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

/** The environment for child processes: no INPUT_* (the action's inputs hold secrets). */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { LC_ALL: 'C' };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('INPUT_')) env[k] = v;
  env.LC_ALL = 'C';
  return env;
}

async function runRestoreScript(script: string, args: string[], logger: Logger): Promise<void> {
  const child = spawn('bash', [script, ...args], {
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    for (const line of text.split('\n')) if (line.trim()) logger.info(`RESTORE.sh: ${line}`);
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(
    (resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, s) => resolve([c, s]));
    },
  );
  if (code !== 0) {
    const tail = stderr.trim().split('\n').slice(-5).join(' | ');
    throw new OpsError(
      `RESTORE.sh failed (${signal ? `signal ${signal}` : `exit code ${code}`}): ${tail || 'no message'}`,
    );
  }
}

/** tar of an item's restored members, as the host ran it: byte count and member count. */
async function tarRestoredItem(
  dir: string,
  item: ManifestItem,
): Promise<{ bytes: number; members: number }> {
  const members = item.paths.filter((p) => !item.missingPaths.includes(p)).map(memberOf);
  const script = `cd -- ${shellQuote(dir)} && ${TAR_CREATE} --verbose -- ${members.map(shellGlob).join(' ')}`;
  const child = spawn('bash', ['-c', script], {
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let bytes = 0;
  child.stdout.on('data', (chunk: Buffer) => (bytes += chunk.length));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const lines = stderr.split('\n').filter((l) => l !== '');
  const problems = lines.filter((l) => l.startsWith('tar: '));
  if (code !== 0) {
    throw new OpsError(
      `${item.id}: tar of the restored tree failed (exit code ${code}): ${problems.slice(-3).join(' | ')}`,
    );
  }
  return { bytes, members: lines.length - problems.length };
}
