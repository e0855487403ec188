// Retention against the bucket: decide (retention.ts), then delete the expired backups (manifest
// first), the leftovers of crashed runs and stale multipart uploads. It runs at the end of a
// backup, or as its own job with its own credential (runRetention: no SSH, nothing written), so
// the nightly token needs no delete right. A delete R2 refuses (a bucket lock rule holds the
// object, or the token may not delete) is reported and the rest goes on.
import type { S3Client } from '@aws-sdk/client-s3';
import type { Logger } from '../lib/logger.js';
import type { RetryOptions } from '../lib/retry.js';
import type { LatestPointer } from './manifest.js';
import { applyRetention, type RetentionDecision, type RetentionPolicy } from './retention.js';
import { BackupStore, type RefusedDelete, type StoredBackup } from './store.js';

/** A backup (or leftover) R2 would not delete in full. */
export interface RefusedBackup {
  id: string;
  refused: RefusedDelete[];
  /** Its manifest was refused, so nothing of it was deleted: still a whole backup. */
  intact: boolean;
}

export interface PruneResult {
  retention: RetentionDecision[];
  /** Ids whose objects are all gone (expired backups and stale leftovers). */
  deleted: string[];
  refused: RefusedBackup[];
  /** Stale multipart uploads aborted. */
  aborted: number;
}

export interface PruneOptions {
  policy: RetentionPolicy;
  /** Always kept, and why: the backup just written, or the one latest.json names. */
  keep?: { id: string; reason: string };
  /** Leftovers (no manifest) and multipart uploads older than this are removed; default 24 h. */
  staleAfterMs?: number;
  now: Date;
  /** Decide and show, delete nothing. */
  dryRun?: boolean;
  logger: Logger;
  warn: (message: string) => void;
}

export const DEFAULT_STALE_AFTER_MS = 86_400_000;

/** Applies the policy to the bucket. Throws when R2 cannot be listed or answers other than 403. */
export async function pruneBackups(store: BackupStore, opts: PruneOptions): Promise<PruneResult> {
  const { logger } = opts;
  const result: PruneResult = { retention: [], deleted: [], refused: [], aborted: 0 };
  const backups = await store.listBackups();
  result.retention = applyRetention(
    backups.filter((b) => b.complete),
    opts.policy,
    opts.keep?.id,
    opts.keep?.reason,
  );
  const remove = async (backup: StoredBackup) => {
    const { refused } = await store.deleteBackup(backup);
    if (refused.length === 0) result.deleted.push(backup.id);
    else
      result.refused.push({
        id: backup.id,
        refused,
        intact: backup.complete && refused.some((r) => r.key.endsWith('/manifest.json')),
      });
  };
  for (const decision of result.retention) {
    logger.info(
      `${decision.id}: ${decision.keep ? 'keep' : 'delete'} (${decision.reasons.join(', ')})`,
    );
    const backup = backups.find((b) => b.id === decision.id);
    if (!decision.keep && backup && !opts.dryRun) await remove(backup);
  }
  const staleBefore = new Date(opts.now.getTime() - (opts.staleAfterMs ?? DEFAULT_STALE_AFTER_MS));
  for (const leftover of backups.filter(
    (b) => !b.complete && b.id !== opts.keep?.id && b.time < staleBefore,
  )) {
    logger.info(
      `${leftover.id}: incomplete (no manifest) and stale; ${opts.dryRun ? 'would remove' : 'removing'} ${leftover.keys.length} object(s)`,
    );
    if (!opts.dryRun) await remove(leftover);
  }
  if (!opts.dryRun) {
    result.aborted = await store.abortStaleUploads(staleBefore);
    if (result.aborted > 0) logger.info(`aborted ${result.aborted} stale multipart upload(s)`);
  }
  if (result.refused.length > 0) opts.warn(refusedWarning(result.refused));
  return result;
}

/** One warning for every refused delete: which backup, which keys, and what state it is in. */
function refusedWarning(refused: RefusedBackup[]): string {
  const keys = refused.reduce((n, b) => n + b.refused.length, 0);
  const codes = [...new Set(refused.flatMap((b) => b.refused.map((r) => r.code)))].join(', ');
  const each = refused.map((b) => {
    const names = b.refused.map((r) => r.key.split('/').pop() ?? r.key).join(', ');
    return b.intact
      ? `${b.id} (${names}: kept whole)`
      : `${b.id} (${names}: its manifest is gone, a later run removes the rest)`;
  });
  return (
    `retention: R2 refused to delete ${keys} object(s) of ${refused.length} backup(s) (${codes}: ` +
    `a bucket lock rule holds them, or this token may not delete): ${each.join('; ')}. ` +
    'A later retention run deletes them once their lock has expired.'
  );
}

export interface RetentionRunOptions {
  client: S3Client;
  bucket: string;
  prefix: string;
  retention: RetentionPolicy;
  dryRun: boolean;
  retry?: RetryOptions;
  staleAfterMs?: number;
  now?: () => Date;
  logger: Logger;
}

export interface RetentionRunResult extends PruneResult {
  dryRun: boolean;
  latest: LatestPointer | undefined;
  warnings: string[];
}

/**
 * Retention as its own job: no SSH and nothing written, only list, read latest.json and delete.
 * The backup latest.json names is always kept.
 */
export async function runRetention(opts: RetentionRunOptions): Promise<RetentionRunResult> {
  const { logger } = opts;
  const store = BackupStore.open(opts, logger);
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    logger.warn(message);
  };
  const latest = await logger.group('Read the current backups', async () => {
    const pointer = await store.latest();
    logger.info(
      pointer ? `latest backup: ${pointer.backupId}` : 'no latest.json under this prefix',
    );
    return pointer;
  });
  const result = await logger.group(
    opts.dryRun ? 'Retention (dry run: nothing is deleted)' : 'Retention',
    () =>
      pruneBackups(store, {
        policy: opts.retention,
        ...(latest ? { keep: { id: latest.backupId, reason: 'latest.json' } } : {}),
        ...(opts.staleAfterMs !== undefined ? { staleAfterMs: opts.staleAfterMs } : {}),
        now: (opts.now ?? (() => new Date()))(),
        dryRun: opts.dryRun,
        logger,
        warn,
      }),
  );
  return { ...result, dryRun: opts.dryRun, latest, warnings };
}
