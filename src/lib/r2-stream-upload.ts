// Uploads a stream of unknown length to R2 with bounded memory: equal parts (R2 rejects unequal
// ones) buffered one at a time, a few in flight, each retried on its own; a small stream becomes
// one PutObject. Every request body is signed with its SHA-256 (SigV4 x-amz-content-sha256, which
// the SDK computes for Buffer bodies), so R2 refuses a part damaged in transit and it is sent
// again; no second hash (Content-MD5) is needed. Any failure aborts the multipart upload, so
// nothing half-written is left behind.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { OpsError } from './errors.js';
import { BufferPool } from './limits.js';
import { R2_MAX_PARTS, R2_MIN_PART } from './r2.js';
import {
  describeS3Failure,
  type CompletedPart,
  type MultipartUpload,
  type R2Store,
} from './r2-store.js';

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

export async function uploadStream(opts: StreamUploadOptions): Promise<StreamUploadResult> {
  const { store, key } = opts;
  const partSize = opts.partSize ?? R2_MIN_PART;
  if (partSize < R2_MIN_PART)
    throw new OpsError(`part size ${partSize} is below R2's 5 MiB minimum`);
  const pool = opts.pool ?? new BufferPool();
  const contentType = opts.contentType ?? 'application/octet-stream';
  const concurrency = Math.max(1, opts.concurrency ?? 2);
  const sha = createHash('sha256');
  let size = 0;
  let upload: MultipartUpload | undefined;
  const done: CompletedPart[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;

  const sendPart = async (to: MultipartUpload, partNumber: number, data: Buffer) => {
    done.push({ PartNumber: partNumber, ETag: await store.uploadPart(to, partNumber, data) });
  };

  // Sends buffer[0, length) as a part; the buffer goes back to the pool once the part is stored.
  const dispatch = async (partNumber: number, buffer: Buffer, length: number) => {
    if (partNumber > R2_MAX_PARTS) {
      throw new OpsError(
        `${key} exceeds ${R2_MAX_PARTS} parts of ${partSize} bytes (R2's limit); a larger part size is needed`,
      );
    }
    const to = (upload ??= await store.createUpload(key, contentType));
    while (inFlight.size >= concurrency) await Promise.race(inFlight);
    if (failure) throw failure;
    const p = sendPart(to, partNumber, buffer.subarray(0, length))
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => {
        inFlight.delete(p);
        pool.put(buffer);
      });
    inFlight.add(p);
  };

  try {
    let buffer = pool.get(partSize);
    let filled = 0;
    let partNumber = 0;
    for await (const chunk of opts.body as AsyncIterable<Buffer | Uint8Array>) {
      let data = Buffer.isBuffer(chunk)
        ? chunk
        : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      sha.update(data);
      size += data.length;
      while (data.length > 0) {
        const n = Math.min(partSize - filled, data.length);
        data.copy(buffer, filled, 0, n);
        filled += n;
        data = data.subarray(n);
        if (filled === partSize) {
          await dispatch(++partNumber, buffer, partSize);
          buffer = pool.get(partSize);
          filled = 0;
        }
      }
      if (failure) throw failure;
    }
    await Promise.all(inFlight);
    if (failure) throw failure;
    const sha256 = sha.digest('hex');

    if (upload === undefined) {
      // Small stream: one PutObject, made visible only after beforeComplete agreed.
      const data = buffer.subarray(0, filled);
      await opts.beforeComplete?.();
      await store.put(key, data, { contentType });
      pool.put(buffer);
      return { key, size, sha256, parts: 1 };
    }

    if (filled > 0) await dispatch(++partNumber, buffer, filled);
    else pool.put(buffer);
    await Promise.all(inFlight);
    if (failure) throw failure;
    await opts.beforeComplete?.();
    const parts = [...done].sort((a, b) => a.PartNumber - b.PartNumber);
    await store.completeUpload(upload, parts);
    upload = undefined;
    const head = await store.head(key);
    if (head?.size !== size) {
      throw new OpsError(
        `${key}: R2 reports ${head?.size ?? 'no object of'} bytes after upload, sent ${size}`,
      );
    }
    return { key, size, sha256, parts: parts.length };
  } catch (err) {
    await Promise.allSettled(inFlight);
    if (upload !== undefined) await store.abortUpload(upload);
    throw describeS3Failure(`upload of ${key}`, err);
  }
}
