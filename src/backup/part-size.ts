// Part sizes of the multipart uploads: each item's from its size in the last backup (so it stays
// well under R2's 10,000 parts), and the warning while an item still has room to spare.
import { z } from 'zod';
import { errorMessage } from '../lib/errors.js';
import { formatBytes } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';
import { R2_MAX_PARTS, R2_MIN_PART } from '../lib/r2.js';
import { manifestItemSchema, type LatestPointer } from './manifest.js';
import type { BackupStore } from './store.js';

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
export async function partSizes(
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
