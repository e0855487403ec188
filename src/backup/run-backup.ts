// The backup as a whole: connect (pinned key), probe, stream every item, record facts, write
// RESTORE.sh, the manifest LAST, then move latest.json and apply retention (unless it runs as its
// own job: run-retention.ts). A failure removes what this run wrote (what R2 refuses to delete is
// reported) and never touches latest or earlier backups.
import type { S3Client } from '@aws-sdk/client-s3';
import { OpsError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { sleep, type RetryOptions } from '../lib/retry.js';
import {
  connectSsh,
  fingerprintSha256,
  type ConnectOptions,
  type SshConnection,
} from '../lib/ssh.js';
import { signSshsig, type SshSigner } from '../lib/sshsig.js';
import type { BackupConfig } from './config.js';
import { factsCommand, parseFacts, type HostFacts } from './facts.js';
import {
  backupIdFor,
  backupKeys,
  latestKey,
  MANIFEST_FORMAT,
  TOOL_NAME,
  type BackupKeys,
  type LatestPointer,
  type Manifest,
  type ManifestItem,
} from './manifest.js';
import { partSizes } from './part-size.js';
import { planItems, type PlannedItem } from './plan.js';
import { parseProbe, probeCommand, type Compressor } from './remote-commands.js';
import { restoreScript, type RestoreScriptInput } from './restore-script.js';
import { planChecks, type VerifyPlan } from '../host/verify-config.js';
import type { RetentionDecision, RetentionPolicy } from './retention.js';
import { pruneBackups, type PruneResult, type RefusedBackup } from './run-retention.js';
import { SIGNATURE_NAMESPACE } from './signature.js';
import { BackupStore } from './store.js';
import { TOOL_VERSION } from './version.js';
import { writeItems } from './write-items.js';

// The part sizes and the plan have modules of their own; the action and the tests take them here.
export { MAX_PART_MIB, partSizeForSize, partsWarning } from './part-size.js';
export { planItems, type PlannedItem } from './plan.js';

export interface BackupOptions {
  ssh: Omit<ConnectOptions, 'logger'>;
  config: BackupConfig;
  /** The checks RESTORE.sh's verify step runs (config/verify.yml); default every check, required. */
  checks?: VerifyPlan['checks'];
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
  /** Also read every stored archive back and compare its sha256 (default false: what R2 holds
   *  is proved in transit, by the ETags it answers and one HEAD; the weekly drill re-reads it). */
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

/** What every phase of one run shares: its options, the store, the clock and the warnings. */
interface Run {
  opts: BackupOptions;
  store: BackupStore;
  now: () => Date;
  warnings: string[];
  warn: (message: string) => void;
}

/** The bucket as the run found it: a free backup id, the latest backup and the part sizes. */
interface BucketState {
  started: Date;
  backupId: string;
  keys: BackupKeys;
  previousLatest: LatestPointer | undefined;
  partSizeFor: (itemId: string) => number;
}

/** What the host check decided and recorded: the part of the result a dry run shares. */
type HostCheck = Pick<
  BackupResult,
  | 'backupId'
  | 'manifestKey'
  | 'skipped'
  | 'plan'
  | 'facts'
  | 'compressor'
  | 'hostFingerprint'
  | 'previousLatest'
>;

type RetentionOutcome = Pick<
  BackupResult,
  'retentionSkipped' | 'retention' | 'deleted' | 'refused'
>;

export async function runBackup(opts: BackupOptions): Promise<BackupResult> {
  const run = startRun(opts);
  // The SSH handshake (a few round trips over the tailnet) runs while R2 answers.
  const connecting = connectSsh({ ...opts.ssh, logger: opts.logger });
  connecting.catch(() => undefined); // handled below; a refused pin must not be "unhandled" first
  let bucket: BucketState;
  try {
    bucket = await readBucket(run);
  } catch (err) {
    await connecting.then((c) => c.close()).catch(() => undefined);
    throw err;
  }
  const conn = await connected(opts, connecting);
  try {
    const host = await checkHost(run, conn, bucket);
    if (opts.dryRun) return await dryRun(run, host);
    const items = await writeBackup(run, conn, bucket, host);
    await moveLatest(run, bucket);
    const pruned = await retentionAfterBackup(run, bucket.backupId);
    if (opts.afterBackup) await opts.afterBackup(conn);
    const bytes = items.reduce((n, i) => n + i.storedBytes, 0);
    return { ...host, dryRun: false, bytes, items, ...pruned, warnings: run.warnings };
  } finally {
    await conn.close();
  }
}

/** The run's clock, store and warnings (each is logged and kept for the summary). */
function startRun(opts: BackupOptions): Run {
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    opts.logger.warn(message);
  };
  const now = opts.now ?? (() => new Date());
  return { opts, store: BackupStore.open(opts, opts.logger), now, warnings, warn };
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

/** While SSH connects: a free backup id, the latest backup, the part sizes from its manifest. */
async function readBucket(run: Run): Promise<BucketState> {
  const { opts, store } = run;
  const { logger } = opts;
  const started = await freeBackupTime(store, opts.prefix, run.now);
  const previousLatest = await logger.group('Read the current backups', async () => {
    const latest = await store.latest();
    logger.info(latest ? `latest backup: ${latest.backupId}` : 'no backup yet under this prefix');
    return latest;
  });
  // A dry run uploads nothing: no need to read the last manifest for part sizes.
  const partSizeFor = await partSizes(
    store,
    opts.dryRun ? undefined : previousLatest,
    opts.partSize,
    logger,
  );
  const backupId = backupIdFor(started);
  const keys = backupKeys(opts.prefix, backupId);
  return { started, backupId, keys, previousLatest, partSizeFor };
}

/** The connection started before R2 was read, once its pinned host key was accepted. */
function connected(
  opts: BackupOptions,
  connecting: Promise<SshConnection>,
): Promise<SshConnection> {
  return opts.logger.group(`Connect to ${opts.ssh.host}:${opts.ssh.port}`, async () => {
    const c = await connecting;
    opts.logger.info(`connected as ${opts.ssh.username}; host key ${c.hostFingerprint} is pinned`);
    return c;
  });
}

/** Probes the host and records its facts, then plans: a required item missing stops here. */
async function checkHost(run: Run, conn: SshConnection, bucket: BucketState): Promise<HostCheck> {
  const { config, logger } = run.opts;
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
    throw new OpsError(`backup ${bucket.backupId} cannot start: ${problems.join('; ')}`);
  }
  const skipped = skippedItems(plan, run.warn);
  const facts = await recordFacts(run, factsOut.stdout);
  return {
    backupId: bucket.backupId,
    manifestKey: bucket.keys.manifest,
    skipped,
    plan,
    facts,
    compressor: probe.compressor,
    hostFingerprint: conn.hostFingerprint,
    previousLatest: bucket.previousLatest,
  };
}

/** Optional items missing on the host, in whole (skipped) or in part: a warning each. */
function skippedItems(plan: PlannedItem[], warn: (m: string) => void): HostCheck['skipped'] {
  const skipped: HostCheck['skipped'] = [];
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
  return skipped;
}

function recordFacts(run: Run, output: string): Promise<HostFacts> {
  const { config, logger } = run.opts;
  return logger.group('Record host facts', async () => {
    const parsed = parseFacts(output, config['disk-facts']);
    for (const m of parsed.missing) run.warn(`host fact unavailable: ${m}`);
    logger.info(
      `hostname ${parsed.facts.hostname}, ${parsed.facts.os}, tailscale ${parsed.facts.tailscaleIp || '-'}`,
    );
    return parsed.facts;
  });
}

/** The dry run: what retention would decide and what each item would take; nothing written. */
async function dryRun(run: Run, host: HostCheck): Promise<BackupResult> {
  const { opts, store } = run;
  const { logger } = opts;
  const retentionSkipped = opts.skipRetention ?? false;
  const { retention } = retentionSkipped
    ? { retention: [] }
    : await logger.group('Retention (dry run: nothing is deleted)', () =>
        pruneBackups(store, {
          policy: opts.retention,
          now: run.now(),
          dryRun: true,
          logger,
          warn: run.warn,
        }),
      );
  for (const p of host.plan)
    logger.info(`would back up ${p.id}: ${p.action === 'backup' ? p.paths.join(' ') : 'skip'}`);
  return {
    ...host,
    dryRun: true,
    bytes: 0,
    items: [],
    retentionSkipped,
    retention,
    deleted: [],
    refused: [],
    warnings: run.warnings,
  };
}

/**
 * Writes the backup: its items, RESTORE.sh, then the signed manifest last. After a failure what
 * it wrote is removed, and the error says what is left and that latest.json is untouched.
 */
async function writeBackup(
  run: Run,
  conn: SshConnection,
  bucket: BucketState,
  host: HostCheck,
): Promise<ManifestItem[]> {
  const { opts, store } = run;
  const { keys } = bucket;
  const written: string[] = [];
  try {
    const items = await writeItems({
      opts,
      store,
      conn,
      compressor: host.compressor,
      plan: host.plan,
      keys,
      written,
      warn: run.warn,
      partSizeFor: bucket.partSizeFor,
    });
    const finishedAt = run.now().toISOString();
    const script = restoreScript({
      backupId: bucket.backupId,
      toolVersion: TOOL_VERSION,
      bucket: opts.bucket,
      manifestKey: keys.manifest,
      endpoint: opts.endpoint,
      hostFingerprint: host.hostFingerprint,
      facts: host.facts,
      ...rebuildOf(opts),
      items,
    });
    written.push(keys.restoreScript);
    const scriptSha = await store.putSmall(keys.restoreScript, script, 'text/x-shellscript');
    const restore = {
      key: keys.restoreScript,
      sha256: scriptSha,
      bytes: Buffer.byteLength(script),
    };
    const manifest = manifestOf(run.opts, bucket, host, {
      finishedAt,
      items,
      restoreScript: restore,
    });
    await writeSignedManifest(run, keys, manifest, written);
    return items;
  } catch (err) {
    throw await writeFailure(run, bucket, written, err);
  }
}

/** The host RESTORE.sh rebuilds into, and the checks of its verify step. */
function rebuildOf(opts: BackupOptions): Pick<RestoreScriptInput, 'shape' | 'checks'> {
  return { shape: opts.config.host, checks: opts.checks ?? planChecks({}).checks };
}

/** The manifest of the backup just written (its items and RESTORE.sh are in the bucket). */
function manifestOf(
  opts: BackupOptions,
  bucket: BucketState,
  host: HostCheck,
  written: Pick<Manifest, 'finishedAt' | 'items' | 'restoreScript'>,
): Manifest {
  return {
    format: MANIFEST_FORMAT,
    backupId: bucket.backupId,
    tool: { name: TOOL_NAME, version: TOOL_VERSION },
    startedAt: bucket.started.toISOString(),
    finishedAt: written.finishedAt,
    host: {
      address: opts.ssh.host,
      port: opts.ssh.port,
      user: opts.ssh.username,
      fingerprint: host.hostFingerprint,
      hostRoot: opts.config['host-root'],
    },
    facts: host.facts,
    encryption: { format: 'age', recipients: opts.recipients },
    items: written.items,
    rebuild: { host: opts.config.host, checks: rebuildOf(opts).checks },
    skipped: host.skipped,
    restoreScript: written.restoreScript,
  };
}

function writeSignedManifest(
  run: Run,
  keys: BackupKeys,
  manifest: Manifest,
  written: string[],
): Promise<void> {
  const { opts, store } = run;
  return opts.logger.group('Sign and write the manifest (last)', async () => {
    // The signature goes first: a manifest never exists without it.
    const text = `${JSON.stringify(manifest, null, 2)}\n`;
    const signature = signSshsig(Buffer.from(text), SIGNATURE_NAMESPACE, opts.signer);
    written.push(keys.signature);
    await store.putSmall(keys.signature, signature, 'text/plain');
    written.push(keys.manifest);
    await store.putSmall(keys.manifest, text, 'application/json', true);
    opts.logger.info(
      `manifest ${keys.manifest}, signed by ${fingerprintSha256(opts.signer.publicKey)}`,
    );
  });
}

/** The error of a failed write, once what it wrote is removed (or reported where R2 refused). */
async function writeFailure(
  run: Run,
  bucket: BucketState,
  written: string[],
  err: unknown,
): Promise<OpsError> {
  const leftovers = await cleanup(run.store, written, run.warn);
  const { previousLatest } = bucket;
  const latest = previousLatest
    ? `latest.json still names ${previousLatest.backupId}`
    : 'no latest.json was written';
  const removed =
    leftovers.length === 0
      ? 'What it uploaded was removed'
      : `${leftovers.length} object(s) it uploaded could not be removed (see the warning; no manifest, so they are no backup)`;
  return new OpsError(
    `backup ${bucket.backupId} failed: ${errorMessage(err)}. ${removed}; ${latest}.`,
    { cause: err },
  );
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

/** latest.json moves to the new backup only once its signed manifest is written. */
async function moveLatest(run: Run, bucket: BucketState): Promise<void> {
  const pointer: LatestPointer = {
    backupId: bucket.backupId,
    manifestKey: bucket.keys.manifest,
    finishedAt: run.now().toISOString(),
  };
  await run.store.putSmall(
    latestKey(run.opts.prefix),
    `${JSON.stringify(pointer, null, 2)}\n`,
    'application/json',
  );
  run.opts.logger.info(`latest.json → ${bucket.backupId}`);
}

/** Retention at the end of a backup, unless it runs as its own job (skipRetention). */
async function retentionAfterBackup(run: Run, backupId: string): Promise<RetentionOutcome> {
  const { logger } = run.opts;
  if (run.opts.skipRetention ?? false) {
    logger.info('retention skipped: it runs as its own job (mode: retention)');
    return { retentionSkipped: true, retention: [], deleted: [], refused: [] };
  }
  // Only these three reach the result (not the count of multipart uploads aborted).
  const { retention, deleted, refused } = await logger.group('Retention', () =>
    pruneAfterBackup(run, backupId),
  );
  return { retentionSkipped: false, retention, deleted, refused };
}

/** Retention's failure after a backup is a warning: the new backup is complete. */
async function pruneAfterBackup(
  run: Run,
  backupId: string,
): Promise<Pick<PruneResult, 'retention' | 'deleted' | 'refused'>> {
  const { opts } = run;
  try {
    return await pruneBackups(run.store, {
      policy: opts.retention,
      keep: { id: backupId, reason: 'just written' },
      ...(opts.staleAfterMs !== undefined ? { staleAfterMs: opts.staleAfterMs } : {}),
      now: run.now(),
      logger: opts.logger,
      warn: run.warn,
    });
  } catch (err) {
    run.warn(
      `retention did not finish (${errorMessage(err)}); the new backup is complete and kept`,
    );
    return { retention: [], deleted: [], refused: [] };
  }
}
