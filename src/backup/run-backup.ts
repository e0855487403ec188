// The backup as a whole: connect (pinned key), probe, stream every item, record facts, write
// RESTORE.sh, the manifest LAST, then move latest.json and apply retention (unless it runs as its
// own job: run-retention.ts). A failure removes what this run wrote (what R2 refuses to delete is
// reported) and never touches latest or earlier backups.
import type { S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { OpsError, errorMessage } from '../lib/errors.js';
import { formatBytes } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';
import { R2_MAX_PARTS, R2_MIN_PART } from '../lib/r2.js';
import { BufferPool, forEachLimit } from '../lib/limits.js';
import { sleep, type RetryOptions } from '../lib/retry.js';
import {
  connectSsh,
  fingerprintSha256,
  type ConnectOptions,
  type SshConnection,
} from '../lib/ssh.js';
import { signSshsig, type SshSigner } from '../lib/sshsig.js';
import { streamItem } from './archive-stream.js';
import { onHost, type BackupConfig, type BackupItem } from './config.js';
import { factsCommand, parseFacts, type HostFacts } from './facts.js';
import {
  backupIdFor,
  backupKeys,
  latestKey,
  MANIFEST_FORMAT,
  manifestItemSchema,
  TOOL_NAME,
  type LatestPointer,
  type Manifest,
  type ManifestItem,
} from './manifest.js';
import {
  archiveCommand,
  COMPRESSORS,
  parseProbe,
  probeCommand,
  type Compressor,
  type ProbeResult,
} from './remote-commands.js';
import { restoreScript } from './restore-script.js';
import type { RetentionDecision, RetentionPolicy } from './retention.js';
import { pruneBackups, type RefusedBackup } from './run-retention.js';
import { SIGNATURE_NAMESPACE } from './signature.js';
import { BackupStore } from './store.js';
import { TOOL_VERSION } from './version.js';

export interface BackupOptions {
  ssh: Omit<ConnectOptions, 'logger'>;
  config: BackupConfig;
  client: S3Client;
  bucket: string;
  prefix: string;
  /** The R2 endpoint written into RESTORE.sh. */
  endpoint: string;
  recipients: string[];
  /** Signs manifest.json (signature.ts): a restore accepts only what this key signed. */
  signer: SshSigner;
  retention: RetentionPolicy;
  /** Delete nothing after the backup: retention runs as its own job (runRetention) with its own
   *  credential, so this run needs no delete right. */
  skipRetention?: boolean;
  dryRun: boolean;
  /** Read every stored object back and compare its sha256 (default true). */
  verifyReadBack?: boolean;
  /** Bytes per part for every item; default: per item, from its size in the last backup. */
  partSize?: number;
  concurrency?: number;
  /** Items streamed at once (default 2); each holds its own part buffers. */
  itemConcurrency?: number;
  retry?: RetryOptions;
  /** Leftovers (incomplete backups, multipart uploads) older than this are removed; default 24 h. */
  staleAfterMs?: number;
  now?: () => Date;
  logger: Logger;
  /** Runs on the open connection after a successful backup (with-models). */
  afterBackup?: (conn: SshConnection) => Promise<void>;
}

export interface PlannedItem {
  id: string;
  paths: string[];
  missing: string[];
  action: 'backup' | 'skip';
}

export interface BackupResult {
  backupId: string;
  manifestKey: string;
  dryRun: boolean;
  /** Encrypted bytes stored by this run. */
  bytes: number;
  items: ManifestItem[];
  skipped: { id: string; reason: string }[];
  plan: PlannedItem[];
  facts: HostFacts;
  compressor: Compressor;
  hostFingerprint: string;
  previousLatest: LatestPointer | undefined;
  /** Retention was left to its own job (skipRetention): nothing decided, nothing deleted. */
  retentionSkipped: boolean;
  retention: RetentionDecision[];
  deleted: string[];
  /** Expired backups R2 would not delete (a bucket lock rule, a token without delete rights). */
  refused: RefusedBackup[];
  warnings: string[];
}

/** The largest part-size the action takes (memory is about four parts). */
export const MAX_PART_MIB = 256;

/** Whole MiB per part that keep an archive of `bytes` under half of R2's parts if it doubles. */
const roomyPartMib = (bytes: number) => Math.ceil((bytes * 4) / R2_MAX_PARTS / 2 ** 20);

/**
 * A part size for an archive last stored at `bytes`: it stays under half of R2's 10,000 parts
 * even if the item doubles (at least 5 MiB, at most MAX_PART_MIB, in whole MiB).
 */
export function partSizeForSize(bytes: number): number {
  return Math.min(MAX_PART_MIB, Math.max(R2_MIN_PART / 2 ** 20, roomyPartMib(bytes))) * 2 ** 20;
}

/** Part size by item id: the one given, else from the item's stored size in the last backup. */
async function partSizes(
  store: BackupStore,
  previous: LatestPointer | undefined,
  given: number | undefined,
  logger: Logger,
): Promise<(itemId: string) => number> {
  if (given !== undefined) return () => given;
  const stored = new Map<string, number>();
  if (previous) {
    try {
      const text = await store.getText(previous.manifestKey);
      const parsed = previousSizesSchema.safeParse(text === undefined ? {} : JSON.parse(text));
      for (const item of parsed.success ? parsed.data.items : [])
        stored.set(item.id, item.storedBytes);
    } catch (err) {
      logger.debug(`part sizes: last manifest unreadable (${errorMessage(err)}); 5 MiB parts`);
    }
  }
  return (itemId) => partSizeForSize(stored.get(itemId) ?? 0);
}

// Only the sizes are read from the last manifest (for part sizes): anything else may differ.
const previousSizesSchema = z.object({
  items: z.array(manifestItemSchema.pick({ id: true, storedBytes: true }).loose()),
});

/**
 * A warning while an item still fits R2's 10,000 parts with room to spare, never after. `auto`:
 * the part size came from the last backup, and the next run sizes it from this one by itself.
 */
export function partsWarning(
  itemId: string,
  stored: { parts: number; size: number },
  partSize: number,
  auto = false,
): string | undefined {
  if (stored.parts <= R2_MAX_PARTS / 2) return undefined;
  const suggested = roomyPartMib(stored.size);
  if (auto && suggested <= MAX_PART_MIB) {
    return (
      `item ${itemId} took ${stored.parts} of R2's ${R2_MAX_PARTS} parts (${formatBytes(stored.size)}; ` +
      `it more than doubled since the last backup): the next run uses ${suggested}MiB parts`
    );
  }
  if (suggested > MAX_PART_MIB) {
    return (
      `item ${itemId} took ${stored.parts} of R2's ${R2_MAX_PARTS} parts (${formatBytes(stored.size)}): ` +
      `even ${MAX_PART_MIB}MiB parts leave little room; split the item into smaller ones`
    );
  }
  return (
    `item ${itemId} took ${stored.parts} of R2's ${R2_MAX_PARTS} parts (${formatBytes(stored.size)} in ` +
    `${formatBytes(partSize)} parts): set part-size to ${suggested}MiB before it grows past ` +
    `${formatBytes(partSize * R2_MAX_PARTS)}, where the backup would fail`
  );
}

function narrow(item: BackupItem, missing: string[], config: BackupConfig): BackupItem {
  return { ...item, paths: item.paths.filter((p) => !missing.includes(onHost(config, p))) };
}

/** Decides what to take per item from the probe; a missing required path fails here. */
export function planItems(
  config: BackupConfig,
  probe: ProbeResult,
): { plan: PlannedItem[]; problems: string[] } {
  const problems: string[] = [];
  const plan = config.items.map((item): PlannedItem => {
    const missing = probe.missing.get(item.id) ?? [];
    const present = item.paths.filter((p) => !missing.includes(onHost(config, p)));
    if (missing.length > 0 && item.required)
      problems.push(`required item ${item.id} is missing ${missing.join(', ')}`);
    return { id: item.id, paths: present, missing, action: present.length > 0 ? 'backup' : 'skip' };
  });
  const sudoUsed = config.items.some(
    (i) => i.sudo && plan.find((p) => p.id === i.id)?.action === 'backup',
  );
  if (sudoUsed && probe.sudo === 'missing') {
    problems.push(
      `the SSH user may not run 'sudo -n ${config['read-wrapper']}' on the host (root-owned items need it; see the sudoers line in actions/backup-verda/README.md)`,
    );
  }
  return { plan, problems };
}

/** A start time whose backup id has no objects yet (ids have one-second resolution). */
async function freeBackupTime(store: BackupStore, prefix: string, now: () => Date): Promise<Date> {
  let started = now();
  for (
    let tries = 0;
    (await store.listKeys(backupKeys(prefix, backupIdFor(started)).dir)).length > 0;
    tries++
  ) {
    if (tries >= 3)
      throw new OpsError(`backup id ${backupIdFor(started)} is already in use under ${prefix}`);
    await sleep(1000 - (started.getTime() % 1000) + 5);
    started = now();
  }
  return started;
}

export async function runBackup(opts: BackupOptions): Promise<BackupResult> {
  const { config, logger } = opts;
  const now = opts.now ?? (() => new Date());
  const store = BackupStore.open(opts, logger);
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    logger.warn(message);
  };

  // The SSH handshake (a few round trips over the tailnet) runs while R2 answers.
  const connecting = connectSsh({ ...opts.ssh, logger });
  connecting.catch(() => undefined); // handled below; a refused pin must not be "unhandled" first
  let started: Date;
  let previousLatest: Awaited<ReturnType<BackupStore['latest']>>;
  let partSizeFor: (itemId: string) => number;
  try {
    started = await freeBackupTime(store, opts.prefix, now);
    previousLatest = await logger.group('Read the current backups', async () => {
      const latest = await store.latest();
      logger.info(latest ? `latest backup: ${latest.backupId}` : 'no backup yet under this prefix');
      return latest;
    });
    // A dry run uploads nothing: no need to read the last manifest for part sizes.
    partSizeFor = await partSizes(
      store,
      opts.dryRun ? undefined : previousLatest,
      opts.partSize,
      logger,
    );
  } catch (err) {
    await connecting.then((c) => c.close()).catch(() => undefined);
    throw err;
  }
  const backupId = backupIdFor(started);
  const keys = backupKeys(opts.prefix, backupId);

  const conn = await logger.group(`Connect to ${opts.ssh.host}:${opts.ssh.port}`, async () => {
    const c = await connecting;
    logger.info(`connected as ${opts.ssh.username}; host key ${c.hostFingerprint} is pinned`);
    return c;
  });
  try {
    // Both read-only commands share the connection at once (one round trip less), then report.
    const [probeOut, factsOut] = await Promise.all([
      conn.run(probeCommand(config)),
      conn.run(factsCommand(config)),
    ]);
    const probe = await logger.group('Check the host', async () => {
      const p = parseProbe(probeOut.stdout);
      logger.info(`compression on the host: ${p.compressor}`);
      return p;
    });
    const { plan, problems } = planItems(config, probe);
    if (problems.length > 0) {
      throw new OpsError(`backup ${backupId} cannot start: ${problems.join('; ')}`);
    }
    const skipped: { id: string; reason: string }[] = [];
    for (const p of plan) {
      if (p.missing.length === 0) continue;
      if (p.action === 'skip') {
        skipped.push({ id: p.id, reason: `missing on the host: ${p.missing.join(', ')}` });
        warn(`optional item ${p.id} is missing on the host (${p.missing.join(', ')}); skipped`);
      } else {
        warn(
          `optional item ${p.id}: ${p.missing.join(', ')} missing on the host; the rest is backed up`,
        );
      }
    }

    const facts = await logger.group('Record host facts', async () => {
      const parsed = parseFacts(factsOut.stdout, config['disk-facts']);
      for (const m of parsed.missing) warn(`host fact unavailable: ${m}`);
      logger.info(
        `hostname ${parsed.facts.hostname}, ${parsed.facts.os}, tailscale ${parsed.facts.tailscaleIp || '-'}`,
      );
      return parsed.facts;
    });

    const base = {
      backupId,
      manifestKey: keys.manifest,
      skipped,
      plan,
      facts,
      compressor: probe.compressor,
      hostFingerprint: conn.hostFingerprint,
      previousLatest,
    };
    if (opts.dryRun) {
      const retentionSkipped = opts.skipRetention ?? false;
      const { retention } = retentionSkipped
        ? { retention: [] }
        : await logger.group('Retention (dry run: nothing is deleted)', () =>
            pruneBackups(store, {
              policy: opts.retention,
              now: now(),
              dryRun: true,
              logger,
              warn,
            }),
          );
      for (const p of plan)
        logger.info(`would back up ${p.id}: ${p.action === 'backup' ? p.paths.join(' ') : 'skip'}`);
      return {
        ...base,
        dryRun: true,
        bytes: 0,
        items: [],
        retentionSkipped,
        retention,
        deleted: [],
        refused: [],
        warnings,
      };
    }

    const written: string[] = [];
    let items: ManifestItem[] = [];
    try {
      items = await writeItems({
        opts,
        store,
        conn,
        compressor: probe.compressor,
        plan,
        backupId,
        written,
        warn,
        partSizeFor,
      });
      const finishedAt = now().toISOString();
      const script = restoreScript({
        backupId,
        toolVersion: TOOL_VERSION,
        bucket: opts.bucket,
        manifestKey: keys.manifest,
        endpoint: opts.endpoint,
        hostFingerprint: conn.hostFingerprint,
        facts,
        items,
      });
      written.push(keys.restoreScript);
      const scriptSha = await store.putSmall(keys.restoreScript, script, 'text/x-shellscript');
      const manifest: Manifest = {
        format: MANIFEST_FORMAT,
        backupId,
        tool: { name: TOOL_NAME, version: TOOL_VERSION },
        startedAt: started.toISOString(),
        finishedAt,
        host: {
          address: opts.ssh.host,
          port: opts.ssh.port,
          user: opts.ssh.username,
          fingerprint: conn.hostFingerprint,
          hostRoot: config['host-root'],
        },
        facts,
        encryption: { format: 'age', recipients: opts.recipients },
        items,
        skipped,
        restoreScript: {
          key: keys.restoreScript,
          sha256: scriptSha,
          bytes: Buffer.byteLength(script),
        },
      };
      await logger.group('Sign and write the manifest (last)', async () => {
        // The signature goes first: a manifest never exists without it.
        const text = `${JSON.stringify(manifest, null, 2)}\n`;
        const signature = signSshsig(Buffer.from(text), SIGNATURE_NAMESPACE, opts.signer);
        written.push(keys.signature);
        await store.putSmall(keys.signature, signature, 'text/plain');
        written.push(keys.manifest);
        await store.putSmall(keys.manifest, text, 'application/json', true);
        logger.info(
          `manifest ${keys.manifest}, signed by ${fingerprintSha256(opts.signer.publicKey)}`,
        );
      });
    } catch (err) {
      const leftovers = await cleanup(store, written, warn);
      const latest = previousLatest
        ? `latest.json still names ${previousLatest.backupId}`
        : 'no latest.json was written';
      const removed =
        leftovers.length === 0
          ? 'What it uploaded was removed'
          : `${leftovers.length} object(s) it uploaded could not be removed (see the warning; no manifest, so they are no backup)`;
      throw new OpsError(
        `backup ${backupId} failed: ${errorMessage(err)}. ${removed}; ${latest}.`,
        {
          cause: err,
        },
      );
    }

    const pointer: LatestPointer = {
      backupId,
      manifestKey: keys.manifest,
      finishedAt: now().toISOString(),
    };
    await store.putSmall(
      latestKey(opts.prefix),
      `${JSON.stringify(pointer, null, 2)}\n`,
      'application/json',
    );
    logger.info(`latest.json → ${backupId}`);

    const retentionSkipped = opts.skipRetention ?? false;
    const pruned = retentionSkipped
      ? (logger.info('retention skipped: it runs as its own job (mode: retention)'),
        { retention: [], deleted: [], refused: [] })
      : await logger.group('Retention', () =>
          retentionAfterBackup(store, opts, backupId, now(), warn),
        );
    if (opts.afterBackup) await opts.afterBackup(conn);
    const bytes = items.reduce((n, i) => n + i.storedBytes, 0);
    return {
      ...base,
      dryRun: false,
      bytes,
      items,
      retentionSkipped,
      retention: pruned.retention,
      deleted: pruned.deleted,
      refused: pruned.refused,
      warnings,
    };
  } finally {
    await conn.close();
  }
}

interface ItemsRun {
  opts: BackupOptions;
  store: BackupStore;
  conn: SshConnection;
  compressor: Compressor;
  plan: PlannedItem[];
  backupId: string;
  /** Every key this run started to write, for the cleanup after a failure. */
  written: string[];
  warn: (m: string) => void;
  partSizeFor: (itemId: string) => number;
}

/** Streams every planned item into the bucket, a few at a time; the first failure stops new ones. */
async function writeItems(run: ItemsRun): Promise<ManifestItem[]> {
  const { opts, store, conn, compressor, plan, backupId, written, warn, partSizeFor } = run;
  const { config, logger } = opts;
  const keys = backupKeys(opts.prefix, backupId);
  const todo = config.items.flatMap((item) => {
    const planned = plan.find((p) => p.id === item.id);
    return planned && planned.action !== 'skip' ? [{ item, planned }] : [];
  });

  // Items run a few at a time: one item's stalls (remote tar start-up, the last parts, the
  // read-back) overlap another's streaming. Parts in flight per item drop to one then, so the
  // part buffers stay at 2 per item (RSS), taken from one pool for the whole run.
  const width = Math.max(1, Math.min(opts.itemConcurrency ?? 2, todo.length));
  const partConcurrency = opts.concurrency ?? (width > 1 ? 1 : undefined);
  const pool = new BufferPool();
  const partSizeOf = (itemId: string) => {
    const size = partSizeFor(itemId);
    // As many as the items streaming at once can hold: one filling and the rest in flight each.
    pool.reserve(size, width * ((partConcurrency ?? 2) + 1));
    return size;
  };

  const writeOne = async (item: BackupItem, planned: PlannedItem): Promise<ManifestItem> => {
    const runItem = narrow(item, planned.missing, config);
    const key = keys.item(item.id, COMPRESSORS[compressor].extension);
    written.push(key);
    const result = await streamItem({
      conn,
      itemId: item.id,
      command: archiveCommand(config, runItem, compressor),
      recipients: opts.recipients,
      store: store.r2,
      key,
      partSize: partSizeOf(item.id),
      pool,
      ...(partConcurrency !== undefined ? { concurrency: partConcurrency } : {}),
    });
    if (result.warning) warn(result.warning);
    const partWarning = partsWarning(
      item.id,
      result.stored,
      partSizeFor(item.id),
      opts.partSize === undefined,
    );
    if (partWarning) warn(partWarning);
    if (opts.verifyReadBack ?? true) {
      const back = await store.sha256Of(key);
      if (back.sha256 !== result.stored.sha256 || back.bytes !== result.stored.size) {
        throw new OpsError(
          `item ${item.id}: read-back of ${key} gives sha256 ${back.sha256} (${back.bytes} bytes), uploaded ${result.stored.sha256} (${result.stored.size} bytes)`,
        );
      }
    }
    logger.info(
      `${item.id}: ${result.tarBytes ?? '?'} tar bytes → ${result.archiveBytes} compressed → ${result.stored.size} stored, sha256 ${result.stored.sha256.slice(0, 12)} in ${(result.ms / 1000).toFixed(1)} s`,
    );
    return {
      id: item.id,
      description: item.description,
      paths: runItem.paths,
      missingPaths: planned.missing,
      required: item.required,
      sudo: item.sudo,
      restoreTo: item['restore-to'],
      afterRestore: item['after-restore'],
      key,
      compression: compressor,
      tarBytes: result.tarBytes,
      archiveBytes: result.archiveBytes,
      storedBytes: result.stored.size,
      sha256: result.stored.sha256,
      seconds: Math.round(result.ms) / 1000,
    };
  };

  const items: ManifestItem[] = new Array<ManifestItem>(todo.length);
  await forEachLimit(todo, width, async ({ item, planned }, index) => {
    items[index] =
      width === 1
        ? await logger.group(`Back up ${item.id}`, () => writeOne(item, planned))
        : (logger.info(`Back up ${item.id}`), await writeOne(item, planned));
  });
  return items;
}

/**
 * Removes what a failed run wrote. What R2 refuses or fails to delete (a token without delete
 * rights gets 403) is listed in one warning and returned: it has no manifest, so it is no
 * backup, and retention removes it once it is stale.
 */
async function cleanup(
  store: BackupStore,
  written: string[],
  warn: (m: string) => void,
): Promise<string[]> {
  const leftovers: { key: string; why: string }[] = [];
  for (const key of [...written].reverse()) {
    try {
      const refused = await store.tryDelete(key);
      if (refused) leftovers.push({ key, why: refused.code });
    } catch (err) {
      leftovers.push({ key, why: errorMessage(err) });
    }
  }
  if (leftovers.length > 0) {
    warn(
      `could not remove ${leftovers.length} object(s) this failed run wrote: ` +
        `${leftovers.map((l) => `${l.key} (${l.why})`).join(', ')}. They have no manifest, so ` +
        'they are no backup; retention (mode: retention) removes them once they are stale (24 h).',
    );
  }
  return leftovers.map((l) => l.key);
}

/** Retention at the end of a backup: its failure is a warning, the new backup is complete. */
async function retentionAfterBackup(
  store: BackupStore,
  opts: BackupOptions,
  backupId: string,
  now: Date,
  warn: (m: string) => void,
): Promise<{ retention: RetentionDecision[]; deleted: string[]; refused: RefusedBackup[] }> {
  try {
    return await pruneBackups(store, {
      policy: opts.retention,
      keep: { id: backupId, reason: 'just written' },
      ...(opts.staleAfterMs !== undefined ? { staleAfterMs: opts.staleAfterMs } : {}),
      now,
      logger: opts.logger,
      warn,
    });
  } catch (err) {
    warn(`retention did not finish (${errorMessage(err)}); the new backup is complete and kept`);
    return { retention: [], deleted: [], refused: [] };
  }
}
