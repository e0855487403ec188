// Uploads a stream of unknown length to R2 with bounded memory: equal parts (R2 rejects unequal
// ones) buffered one at a time, a few in flight, each retried on its own; a small stream becomes
// one PutObject. Every request body goes with its Content-MD5, so R2 refuses a part damaged in
// transit and it is sent again. What R2 then holds is proved without reading it back (the store
// checks each answer): every part's ETag is the MD5 of the bytes sent, the Complete's ETag is the
// multipart ETag of those parts (assembled exactly from them, in order), a PutObject's is the
// body's MD5, and one HeadObject gives the size and ETag sent. Any failure aborts the multipart
// upload, so nothing half-written is left behind.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { OpsError } from './errors.js';
import { BufferPool, Semaphore } from './limits.js';
import { sendParts, type PartSource } from './r2-multipart.js';
import { R2_MIN_PART } from './r2.js';
import { describeS3Failure, type MultipartUpload, type R2Store } from './r2-store.js';
import { streamedBytes } from './young-gc.js';

export interface StreamUploadOptions {
  store: R2Store;
  key: string;
  body: Readable;
  /** Bytes per part (all equal but the last); default and minimum 5 MiB (48.8 GiB per object). */
  partSize?: number;
  /** Parts uploading at once (default 2); memory is partSize × (concurrency + 1), buffers reused. */
  concurrency?: number;
  /** Buffers to reuse; default a pool of this upload's own. */
  pool?: BufferPool;
  contentType?: string;
  /** Awaited after the body ended and before the object is made visible; a throw aborts. */
  beforeComplete?: () => Promise<unknown>;
}

export interface StreamUploadResult {
  key: string;
  size: number;
  sha256: string;
  parts: number;
}

/** A stream cut into parts of one size, hashed and counted as it goes by. */
class StreamParts implements PartSource {
  size = 0;
  private readonly sha = createHash('sha256');
  private readonly chunks: AsyncIterator<Buffer | Uint8Array>;
  private pending: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(body: Readable) {
    this.chunks = (body as AsyncIterable<Buffer | Uint8Array>)[Symbol.asyncIterator]();
  }

  async next(buf: Buffer): Promise<number> {
    let filled = 0;
    while (filled < buf.length) {
      if (this.pending.length === 0) {
        if (this.ended) break;
        const chunk = await this.chunks.next();
        if (chunk.done) {
          this.ended = true;
          break;
        }
        const data = Buffer.isBuffer(chunk.value)
          ? chunk.value
          : Buffer.from(chunk.value.buffer, chunk.value.byteOffset, chunk.value.byteLength);
        this.sha.update(data);
        this.size += data.length;
        this.pending = data;
        // Its chunks (and the SSH and age chunks before them) are dead once copied: freed early.
        streamedBytes(data.length);
      }
      const n = Math.min(buf.length - filled, this.pending.length);
      this.pending.copy(buf, filled, 0, n);
      filled += n;
      this.pending = this.pending.subarray(n);
    }
    return filled;
  }

  digest(): string {
    return this.sha.digest('hex');
  }
}

export async function uploadStream(opts: StreamUploadOptions): Promise<StreamUploadResult> {
  const { store, key } = opts;
  const partSize = opts.partSize ?? R2_MIN_PART;
  if (partSize < R2_MIN_PART)
    throw new OpsError(`part size ${partSize} is below R2's 5 MiB minimum`);
  const pool = opts.pool ?? new BufferPool();
  const contentType = opts.contentType ?? 'application/octet-stream';
  const source = new StreamParts(opts.body);
  let upload: MultipartUpload | undefined;
  try {
    // The first part decides: a stream shorter than one part is one PutObject.
    const buf = pool.get(partSize);
    let length: number;
    try {
      length = await source.next(buf);
    } catch (err) {
      pool.put(buf);
      throw err;
    }
    if (length < partSize) {
      let etag: string;
      try {
        // Made visible only after beforeComplete agreed.
        await opts.beforeComplete?.();
        ({ etag } = await store.put(key, buf.subarray(0, length), { contentType }));
      } finally {
        pool.put(buf);
      }
      await store.confirmStored(key, { size: source.size, etag });
      return { key, size: source.size, sha256: source.digest(), parts: 1 };
    }
    upload = await store.createUpload(key, contentType).catch((err: unknown) => {
      pool.put(buf);
      throw err;
    });
    // One part filling while the others are in flight: the stream keeps flowing.
    const sent = await sendParts({
      store,
      upload,
      partSize,
      source,
      pool,
      slots: new Semaphore(Math.max(1, opts.concurrency ?? 2)),
      readAhead: true,
      first: { buf, length },
    });
    await opts.beforeComplete?.();
    const etag = await store.completeUpload(upload, sent.parts);
    upload = undefined;
    await store.confirmStored(key, { size: source.size, etag });
    return { key, size: source.size, sha256: source.digest(), parts: sent.parts.length };
  } catch (err) {
    if (upload !== undefined) await store.abortUpload(upload);
    throw describeS3Failure(`upload of ${key}`, err);
  }
}
