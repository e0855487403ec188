// The one multipart uploader: parts read in order from a source into pooled buffers, sent a few
// at a time through the R2 store (each part retried there on its own), and a part R2 already holds
// with the same size and MD5 (an interrupted upload being resumed) not sent again. The backup's
// archive streams and the model vault's files both send their parts through sendParts.
import { createHash } from 'node:crypto';
import { OpsError } from './errors.js';
import type { BufferPool, Semaphore } from './limits.js';
import { R2_MAX_PARTS } from './r2.js';
import type { CompletedPart, MultipartUpload, R2Store, StoredPart } from './r2-store.js';
import { partBytesSent } from './young-gc.js';

/** Where the parts come from, in order. */
export interface PartSource {
  /**
   * Fills `buf` (partSize bytes) with the next part and returns its length: partSize for every
   * part but the last, which may be shorter; 0 when there is nothing left.
   */
  next(buf: Buffer): Promise<number>;
}

export interface PartsOptions {
  store: R2Store;
  upload: MultipartUpload;
  partSize: number;
  source: PartSource;
  pool: BufferPool;
  /** Parts in flight: the upload's own limit, or one shared by the uploads of a run. */
  slots: Semaphore;
  /**
   * true: the next part is read while the others are in flight and waits for a slot afterwards
   * (one buffer more per upload; a stream keeps flowing). false: a slot is taken before the read,
   * so the slots bound the buffers of every upload that shares them.
   */
  readAhead: boolean;
  /** Parts R2 already holds for this upload (resume), by part number. */
  stored?: Map<number, StoredPart>;
  /** After each part is stored or found stored already. */
  onPart?: (bytes: number, reused: boolean) => void;
  /** The first part, already read into a pooled buffer (a stream that had to be looked at). */
  first?: { buf: Buffer; length: number };
}

export interface SentParts {
  /** In part-number order, for CompleteMultipartUpload. */
  parts: CompletedPart[];
  reused: number;
  bytesSent: number;
}

const md5Hex = (b: Buffer): string => createHash('md5').update(b).digest('hex');

/**
 * Sends every part of the source. On the first failure no further part starts, the ones in
 * flight finish, their buffers go back to the pool, and the failure is thrown (the upload is left
 * for the caller to abort or, for a resumable one, to resume).
 */
export async function sendParts(o: PartsOptions): Promise<SentParts> {
  const parts: CompletedPart[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: { err: unknown } | undefined;
  let reused = 0;
  let bytesSent = 0;
  let first = o.first;

  const read = async (): Promise<{ buf: Buffer; length: number }> => {
    if (first) {
      const taken = first;
      first = undefined;
      return taken;
    }
    const buf = o.pool.get(o.partSize);
    try {
      return { buf, length: await o.source.next(buf) };
    } catch (err) {
      o.pool.put(buf);
      throw err;
    }
  };

  try {
    for (let n = 1; failure === undefined; n++) {
      let release = o.readAhead ? undefined : await o.slots.acquire();
      let part: { buf: Buffer; length: number };
      try {
        part = await read();
      } catch (err) {
        release?.();
        throw err;
      }
      const { buf, length } = part;
      if (length === 0) {
        o.pool.put(buf);
        release?.();
        break;
      }
      const done = () => {
        o.pool.put(buf);
        release?.();
      };
      if (n > R2_MAX_PARTS) {
        done();
        throw new OpsError(
          `${o.upload.key} exceeds ${R2_MAX_PARTS} parts of ${o.partSize} bytes (R2's limit); a larger part size is needed`,
        );
      }
      const body = buf.subarray(0, length);
      const have = o.stored?.get(n);
      if (have && have.size === length && have.etag === md5Hex(body)) {
        parts.push({ PartNumber: n, ETag: `"${have.etag}"` });
        reused++;
        o.onPart?.(length, true);
        done();
        continue;
      }
      release ??= await o.slots.acquire();
      // A part that failed while this one waited for its slot: send nothing more.
      if (failure) {
        done();
        break;
      }
      const partNumber = n;
      const p = o.store
        .uploadPart(o.upload, partNumber, body)
        .then((etag) => {
          parts.push({ PartNumber: partNumber, ETag: etag });
          bytesSent += length;
          o.onPart?.(length, false);
          partBytesSent(length);
        })
        .catch((err: unknown) => {
          failure ??= { err };
        })
        .finally(() => {
          done();
          inFlight.delete(p);
        });
      inFlight.add(p);
      if (length < o.partSize) break;
    }
  } finally {
    await Promise.allSettled(inFlight);
  }
  if (failure) throw failure.err;
  return { parts: parts.sort((a, b) => a.PartNumber - b.PartNumber), reused, bytesSent };
}
