// Uploads a stream of unknown length to R2 with bounded memory: equal parts (R2 rejects unequal
// ones) buffered one at a time, a few in flight, each retried on its own; a small stream becomes
// one PutObject. Every request body is signed with its SHA-256 (SigV4 x-amz-content-sha256, which
// the SDK computes for Buffer bodies), so R2 refuses a part damaged in transit and it is sent
// again; no second hash (Content-MD5) is needed. Any failure aborts the multipart upload, so
// nothing half-written is left behind.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { OpsError, errorMessage } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import { completeUpload } from './r2-complete.js';
import { R2_MAX_PARTS, R2_MIN_PART } from './r2.js';
import {
  isRetryableStatus,
  isTransientNetworkError,
  networkCause,
  retry,
  type RetryOptions,
} from './retry.js';

/**
 * Part buffers shared by the uploads of one run. Big blocks that are freed and allocated again
 * cost RSS: after glibc frees one mmap'ed block it raises its mmap threshold, and the next part
 * buffers land in its heap among small buffers, which it can seldom give back. `ahead` buffers
 * are allocated at once, before anything else can have raised that threshold.
 */
export class PartBuffers {
  private readonly free: Buffer[] = [];
  constructor(
    readonly size: number,
    ahead = 0,
  ) {
    for (let i = 0; i < ahead; i++) this.free.push(Buffer.allocUnsafe(size));
  }
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }
  give(buffer: Buffer): void {
    if (buffer.length === this.size) this.free.push(buffer);
  }
}

export interface StreamUploadOptions {
  client: S3Client;
  bucket: string;
  key: string;
  body: Readable;
  /** Bytes per part (all equal but the last); default and minimum 5 MiB (48.8 GiB per object). */
  partSize?: number;
  /** Parts uploading at once (default 2); memory is partSize × (concurrency + 1), buffers reused. */
  concurrency?: number;
  /** Buffers to reuse (their size is the part size); default a pool of this upload's own. */
  buffers?: PartBuffers;
  contentType?: string;
  /** Awaited after the body ended and before the object is made visible; a throw aborts. */
  beforeComplete?: () => Promise<unknown>;
  retry?: RetryOptions;
  logger?: Logger;
}

export interface StreamUploadResult {
  key: string;
  size: number;
  sha256: string;
  parts: number;
}

/** Whether an S3/R2 request failure may succeed when sent again. */
export function isRetryableS3Error(err: unknown): boolean {
  const name = (err as { name?: string })?.name ?? '';
  // A body damaged on the way (400 XAmzContentSHA256Mismatch / BadDigest) is fine to send again.
  if (TRANSIENT_S3_ERRORS.includes(name)) return true;
  const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  if (typeof status === 'number') return isRetryableStatus(status);
  return isTransientNetworkError(err);
}

const TRANSIENT_S3_ERRORS = [
  'SlowDown',
  'InternalError',
  'ServiceUnavailable',
  'RequestTimeout',
  'XAmzContentSHA256Mismatch',
  'BadDigest',
];

/** "R2 PutObject a/b failed: <message> (HTTP 500)": which request, on what, and why. */
export function describeS3Failure(what: string, err: unknown): OpsError {
  if (err instanceof OpsError) return err;
  const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  const message = errorMessage(err).replace(/\.+$/, '');
  // "connect ECONNREFUSED 127.0.0.1:9000" names the peer; the cause in words says what went wrong.
  const cause = networkCause(err);
  const why = cause && !message.includes(cause) ? ` (${cause})` : '';
  return new OpsError(`R2 ${what} failed: ${message}${why}${status ? ` (HTTP ${status})` : ''}`, {
    cause: err,
  });
}

export async function uploadStream(opts: StreamUploadOptions): Promise<StreamUploadResult> {
  const { client, bucket, key } = opts;
  const logger = opts.logger ?? silentLogger;
  const buffers = opts.buffers ?? new PartBuffers(opts.partSize ?? R2_MIN_PART);
  const partSize = buffers.size;
  if (partSize < R2_MIN_PART)
    throw new OpsError(`part size ${partSize} is below R2's 5 MiB minimum`);
  const concurrency = Math.max(1, opts.concurrency ?? 2);
  const retryOpts: RetryOptions = {
    attempts: 5,
    baseDelayMs: 500,
    retryable: isRetryableS3Error,
    ...opts.retry,
    onRetry: ({ err, attempt, delayMs }) =>
      logger.warn(
        `R2 ${key}: attempt ${attempt} failed (${errorMessage(err)}); retrying in ${delayMs} ms`,
      ),
  };
  const sha = createHash('sha256');
  let size = 0;
  let uploadId: string | undefined;
  const done: { PartNumber: number; ETag: string }[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;

  const sendPart = async (partNumber: number, data: Buffer) => {
    const out = await retry(
      () =>
        client.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: data,
            ContentLength: data.length,
          }),
        ),
      retryOpts,
    );
    if (!out.ETag) throw new OpsError(`R2 gave no ETag for ${key} part ${partNumber}`);
    done.push({ PartNumber: partNumber, ETag: out.ETag });
  };

  // Sends buffer[0, length) as a part; the buffer goes back to the pool once the part is stored.
  const dispatch = async (partNumber: number, buffer: Buffer, length: number) => {
    if (partNumber > R2_MAX_PARTS) {
      throw new OpsError(
        `${key} exceeds ${R2_MAX_PARTS} parts of ${partSize} bytes (R2's limit); a larger part size is needed`,
      );
    }
    if (uploadId === undefined) {
      const created = await retry(
        () =>
          client.send(
            new CreateMultipartUploadCommand({
              Bucket: bucket,
              Key: key,
              ContentType: opts.contentType,
            }),
          ),
        retryOpts,
      );
      uploadId = created.UploadId;
      if (!uploadId) throw new OpsError(`R2 gave no UploadId for ${key}`);
    }
    while (inFlight.size >= concurrency) await Promise.race(inFlight);
    if (failure) throw failure;
    const p = sendPart(partNumber, buffer.subarray(0, length))
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => {
        inFlight.delete(p);
        buffers.give(buffer);
      });
    inFlight.add(p);
  };

  try {
    let buffer = buffers.take();
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
          buffer = buffers.take();
          filled = 0;
        }
      }
      if (failure) throw failure;
    }
    await Promise.all(inFlight);
    if (failure) throw failure;
    const sha256 = sha.digest('hex');

    if (uploadId === undefined) {
      // Small stream: one PutObject, made visible only after beforeComplete agreed.
      const data = buffer.subarray(0, filled);
      await opts.beforeComplete?.();
      await retry(
        () =>
          client.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: key,
              Body: data,
              ContentLength: data.length,
              ContentType: opts.contentType,
            }),
          ),
        retryOpts,
      );
      buffers.give(buffer);
      return { key, size, sha256, parts: 1 };
    }

    if (filled > 0) await dispatch(++partNumber, buffer, filled);
    else buffers.give(buffer);
    await Promise.all(inFlight);
    if (failure) throw failure;
    await opts.beforeComplete?.();
    const parts = [...done].sort((a, b) => a.PartNumber - b.PartNumber);
    const completing = { bucket, key, uploadId, parts };
    await retry(() => completeUpload(client, completing, logger), retryOpts);
    uploadId = undefined;
    const head = await retry(
      () => client.send(new HeadObjectCommand({ Bucket: bucket, Key: key })),
      retryOpts,
    );
    if (head.ContentLength !== size) {
      throw new OpsError(
        `${key}: R2 reports ${head.ContentLength} bytes after upload, sent ${size}`,
      );
    }
    return { key, size, sha256, parts: parts.length };
  } catch (err) {
    await Promise.allSettled(inFlight);
    if (uploadId !== undefined) await abortUpload(client, bucket, key, uploadId, logger);
    throw describeS3Failure(`upload of ${key}`, err);
  }
}

/** Best-effort abort (retried); a leftover upload is reported, not thrown over the real error. */
export async function abortUpload(
  client: S3Client,
  bucket: string,
  key: string,
  uploadId: string,
  logger: Logger,
) {
  try {
    await retry(
      () =>
        client.send(
          new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
        ),
      {
        attempts: 3,
        baseDelayMs: 300,
        retryable: isRetryableS3Error,
      },
    );
  } catch (err) {
    logger.warn(
      `could not abort the multipart upload of ${key} (${errorMessage(err)}); it will be cleaned up later`,
    );
  }
}
