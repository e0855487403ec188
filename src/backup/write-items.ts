// The items of one backup into the bucket: each planned item streamed (remote tar → age → R2
// multipart), proved stored by R2's answers (r2-stream-upload.ts), read back too with
// verify: read-back, and recorded as its manifest item, a few items at a time.
import { OpsError } from '../lib/errors.js';
import { BufferPool, forEachLimit } from '../lib/limits.js';
import type { SshConnection } from '../lib/ssh.js';
import { streamItem } from './archive-stream.js';
import type { BackupItem } from './config.js';
import { manifestItem, type BackupKeys, type ManifestItem } from './manifest.js';
import { partsWarning } from './part-size.js';
import type { PlannedItem } from './plan.js';
import { archiveCommand, COMPRESSORS, type Compressor } from './remote-commands.js';
import type { BackupOptions } from './run-backup.js';
import type { BackupStore } from './store.js';

export interface ItemsRun {
  opts: BackupOptions;
  store: BackupStore;
  conn: SshConnection;
  compressor: Compressor;
  plan: PlannedItem[];
  keys: BackupKeys;
  /** Every key this run started to write, for the cleanup after a failure. */
  written: string[];
  warn: (m: string) => void;
  partSizeFor: (itemId: string) => number;
}

/** The run's items in flight: how many at once, parts in flight per item, their buffers. */
interface ItemStreams extends ItemsRun {
  width: number;
  partConcurrency: number | undefined;
  pool: BufferPool;
}

/** Streams every planned item into the bucket, a few at a time; the first failure stops new ones. */
export async function writeItems(run: ItemsRun): Promise<ManifestItem[]> {
  const { config, logger } = run.opts;
  const todo = config.items.flatMap((item) => {
    const planned = run.plan.find((p) => p.id === item.id);
    return planned && planned.action !== 'skip' ? [{ item, planned }] : [];
  });

  // Items run a few at a time: one item's stalls (remote tar start-up, the last parts, the
  // read-back) overlap another's streaming. Parts in flight per item drop to one then, so the
  // part buffers stay at 2 per item (RSS), taken from one pool for the whole run.
  const width = Math.max(1, Math.min(run.opts.itemConcurrency ?? 2, todo.length));
  const partConcurrency = run.opts.concurrency ?? (width > 1 ? 1 : undefined);
  const streams: ItemStreams = { ...run, width, partConcurrency, pool: new BufferPool() };

  const items: ManifestItem[] = new Array<ManifestItem>(todo.length);
  await forEachLimit(todo, width, async ({ item, planned }, index) => {
    items[index] =
      width === 1
        ? await logger.group(`Back up ${item.id}`, () => writeItem(streams, item, planned))
        : (logger.info(`Back up ${item.id}`), await writeItem(streams, item, planned));
  });
  return items;
}

/** One item: streamed, its parts judged, read back, and recorded as its manifest item. */
async function writeItem(
  streams: ItemStreams,
  item: BackupItem,
  planned: PlannedItem,
): Promise<ManifestItem> {
  const { opts, compressor, warn } = streams;
  const key = streams.keys.item(item.id, COMPRESSORS[compressor].extension);
  streams.written.push(key);
  const result = await streamItem({
    conn: streams.conn,
    itemId: item.id,
    // Only the paths the probe found: tar would fail on a missing one.
    command: archiveCommand(opts.config, { ...item, paths: planned.paths }, compressor),
    recipients: opts.recipients,
    store: streams.store.r2,
    key,
    partSize: reservePartSize(streams, item.id),
    pool: streams.pool,
    ...(streams.partConcurrency !== undefined ? { concurrency: streams.partConcurrency } : {}),
  });
  if (result.warning) warn(result.warning);
  const partWarning = partsWarning(
    item.id,
    result.stored,
    streams.partSizeFor(item.id),
    opts.partSize === undefined,
  );
  if (partWarning) warn(partWarning);
  if (opts.verifyReadBack ?? false) await checkReadBack(streams.store, item.id, key, result.stored);
  opts.logger.info(
    `${item.id}: ${result.tarBytes ?? '?'} tar bytes → ${result.archiveBytes} compressed → ${result.stored.size} stored, sha256 ${result.stored.sha256.slice(0, 12)} in ${(result.ms / 1000).toFixed(1)} s`,
  );
  return manifestItem(item, planned, { key, compression: compressor, ...result });
}

/** An item's part size, its buffers reserved in the run's pool before its stream starts. */
function reservePartSize(streams: ItemStreams, itemId: string): number {
  const size = streams.partSizeFor(itemId);
  // As many as the items streaming at once can hold: one filling and the rest in flight each.
  streams.pool.reserve(size, streams.width * ((streams.partConcurrency ?? 2) + 1));
  return size;
}

/** The object R2 holds must be the bytes uploaded: its sha256 and size, read back. */
async function checkReadBack(
  store: BackupStore,
  itemId: string,
  key: string,
  stored: { sha256: string; size: number },
): Promise<void> {
  const back = await store.sha256Of(key);
  if (back.sha256 !== stored.sha256 || back.bytes !== stored.size) {
    throw new OpsError(
      `item ${itemId}: read-back of ${key} gives sha256 ${back.sha256} (${back.bytes} bytes), uploaded ${stored.sha256} (${stored.size} bytes)`,
    );
  }
}
