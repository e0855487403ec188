// Uploads one model file to the vault: sha256 over every byte as it is read, R2-correct multipart
// (equal parts but the last, at most 10,000) with parts in flight in parallel and pooled buffers,
// and resume of an interrupted upload from the parts R2 already holds (checked by MD5, not
// trusted by number). Parts are sent with UNSIGNED-PAYLOAD so the SDK does not hash every byte
// a second time for the signature.
import { createHash } from 'node:crypto';
import {
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { OpsError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { R2_MAX_PART, R2_MAX_PARTS } from '../lib/r2.js';
import { completeUpload } from '../lib/r2-complete.js';
import { abortUpload } from '../lib/r2-stream-upload.js';
import { withS3Retry, type Vault } from './bucket.js';
import type { SequentialReader } from './host.js';
import type { BufferPool, Semaphore } from './limits.js';

export const SHA256_META = 'sha256';
const CONTENT_TYPE = 'application/octet-stream';

export interface PushFileOptions {
  vault: Vault;
  key: string;
  size: number;
  partSize: number;
  reader: SequentialReader;
  /** In-flight request slots shared by every file of the run. */
  slots: Semaphore;
  pool: BufferPool;
  /** An upload of this key left by an interrupted run (younger than a day). */
  resumeUploadId?: string;
  /** Known before the upload (compare: sha256 hashed it): goes straight into the metadata. */
  knownSha256?: string;
  onBytes: (n: number) => void;
  logger: Logger;
}

export interface PushFileResult {
  sha256: string;
  parts: number;
  /** Parts found in R2 from an interrupted run and not sent again. */
  partsReused: number;
  bytesSent: number;
}

type Handler = (args: { request: unknown }) => Promise<unknown>;
interface BuildStack {
  add(mw: (next: Handler) => Handler, opts: { step: 'build'; name: string }): void;
}

/** Marks a command's payload as unsigned: R2 takes it over TLS; we hash the file ourselves. */
function unsignedPayload<C extends PutObjectCommand | UploadPartCommand>(cmd: C): C {
  (cmd.middlewareStack as unknown as BuildStack).add(
    (next) => async (args) => {
      const req = args.request as { headers?: Record<string, string> };
      if (req.headers) req.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      return next(args);
    },
    { step: 'build', name: 'comfyumeUnsignedPayload' },
  );
  return cmd;
}

/** An R2 request retried on transient failures, each retry logged as a warning. */
const retried = <T>(o: PushFileOptions, what: string, fn: () => Promise<T>): Promise<T> =>
  withS3Retry(what, fn, o.logger);

const md5Hex = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const stripQuotes = (etag: string | undefined): string => (etag ?? '').replace(/"/g, '');

export async function pushFile(o: PushFileOptions): Promise<PushFileResult> {
  const { vault, key, size, partSize } = o;
  const { client, bucket } = vault;
  const sha = createHash('sha256');

  const readExactly = async (buf: Buffer, length: number): Promise<void> => {
    const n = await o.reader.read(buf, length);
    if (n !== length)
      throw new OpsError(
        `${key}: the file shrank while it was read (got ${n} of ${length} bytes); run again`,
      );
    sha.update(buf.subarray(0, length));
  };

  if (size <= partSize) {
    const buf = o.pool.get(partSize);
    try {
      await readExactly(buf, size);
      const body = buf.subarray(0, size);
      const sha256 = sha.digest('hex');
      const release = await o.slots.acquire();
      try {
        await retried(o, `PutObject ${key}`, () =>
          client.send(
            unsignedPayload(
              new PutObjectCommand({
                Bucket: bucket,
                Key: key,
                Body: body,
                ContentLength: size,
                ContentType: CONTENT_TYPE,
                Metadata: { [SHA256_META]: sha256 },
              }),
            ),
          ),
        );
      } finally {
        release();
      }
      o.onBytes(size);
      return { sha256, parts: 1, partsReused: 0, bytesSent: size };
    } finally {
      o.pool.put(buf);
    }
  }

  const partCount = Math.ceil(size / partSize);
  if (partCount > R2_MAX_PARTS)
    throw new OpsError(
      `${key}: ${partCount} parts of ${partSize} bytes exceed R2's ${R2_MAX_PARTS}`,
    );

  let uploadId = o.resumeUploadId;
  let resumed = uploadId !== undefined;
  const stored = uploadId
    ? await listStoredParts(client, bucket, key, uploadId)
    : new Map<number, { size: number; etag: string }>();
  if (uploadId && [...stored].some(([n, p]) => n < partCount && p.size !== partSize)) {
    o.logger.info(`${key}: the interrupted upload used another part size; starting over`);
    await abortUpload(client, bucket, key, uploadId, o.logger);
    uploadId = undefined;
    resumed = false;
    stored.clear();
  }
  if (!uploadId) {
    const created = await retried(o, `CreateMultipartUpload ${key}`, () =>
      client.send(
        new CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          ContentType: CONTENT_TYPE,
          ...(o.knownSha256 ? { Metadata: { [SHA256_META]: o.knownSha256 } } : {}),
        }),
      ),
    );
    uploadId = created.UploadId;
    if (!uploadId) throw new OpsError(`R2 gave no UploadId for ${key}`);
  } else if (stored.size > 0) {
    o.logger.info(
      `${key}: resuming an interrupted upload, ${stored.size} of ${partCount} parts already in R2`,
    );
  }

  const etags: string[] = new Array<string>(partCount);
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let partsReused = 0;
  let bytesSent = 0;
  for (let n = 1; n <= partCount && failure === undefined; n++) {
    const length = n < partCount ? partSize : size - partSize * (partCount - 1);
    const release = await o.slots.acquire();
    const buf = o.pool.get(partSize);
    const done = (): void => {
      o.pool.put(buf);
      release();
    };
    try {
      await readExactly(buf, length);
    } catch (err) {
      done();
      failure = err;
      break;
    }
    const body = buf.subarray(0, length);
    const have = stored.get(n);
    if (have && have.size === length && have.etag === md5Hex(body)) {
      etags[n - 1] = have.etag;
      partsReused++;
      o.onBytes(length);
      done();
      continue;
    }
    const partNumber = n;
    const p = retried(o, `UploadPart ${key} part ${partNumber}`, () =>
      client.send(
        unsignedPayload(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: body,
            ContentLength: length,
          }),
        ),
      ),
    )
      .then((out) => {
        etags[partNumber - 1] = stripQuotes(out.ETag);
        bytesSent += length;
        o.onBytes(length);
      })
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => {
        done();
        inFlight.delete(p);
      });
    inFlight.add(p);
  }
  await Promise.all(inFlight);
  if (failure !== undefined) {
    // The parts stay in R2: the next run resumes from them (stale uploads are aborted after a day).
    throw failure;
  }
  const sha256 = sha.digest('hex');
  if (o.knownSha256 && o.knownSha256 !== sha256) {
    await abortUpload(client, bucket, key, uploadId, o.logger);
    throw new OpsError(
      `${key}: the file changed while it was uploaded (sha256 ${sha256}, hashed before as ${o.knownSha256}); nothing was stored, run again`,
    );
  }
  const parts = etags.map((ETag, i) => ({ PartNumber: i + 1, ETag: `"${ETag}"` }));
  await retried(o, `CompleteMultipartUpload ${key}`, () =>
    completeUpload(client, { bucket, key, uploadId, parts }, o.logger),
  );
  // A resumed upload was created by an earlier run, which may not have known the sha256.
  if (!o.knownSha256 || resumed) await setSha256Metadata(o, sha256);
  return { sha256, parts: partCount, partsReused, bytesSent };
}

/**
 * The sha256 is only known once every byte went through, after the multipart upload was created:
 * a copy onto itself writes it into the metadata (server-side, no bytes re-sent). R2's CopyObject
 * stops at 5 GiB, so sync hashes bigger files before their upload (knownSha256) instead.
 */
async function setSha256Metadata(o: PushFileOptions, sha256: string): Promise<void> {
  if (o.size > R2_MAX_PART) {
    o.logger.debug(`${o.key}: resumed upload over 5 GiB, sha256 kept in the manifest only`);
    return;
  }
  const source = `${o.vault.bucket}/${o.key.split('/').map(encodeURIComponent).join('/')}`;
  await retried(o, `CopyObject ${o.key} (sha256 metadata)`, () =>
    o.vault.client.send(
      new CopyObjectCommand({
        Bucket: o.vault.bucket,
        Key: o.key,
        CopySource: source,
        MetadataDirective: 'REPLACE',
        ContentType: CONTENT_TYPE,
        Metadata: { [SHA256_META]: sha256 },
      }),
    ),
  );
}

async function listStoredParts(
  client: S3Client,
  bucket: string,
  key: string,
  uploadId: string,
): Promise<Map<number, { size: number; etag: string }>> {
  const out = new Map<number, { size: number; etag: string }>();
  let marker: string | undefined;
  for (;;) {
    const page = await withS3Retry(`ListParts ${key}`, () =>
      client.send(
        new ListPartsCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumberMarker: marker,
        }),
      ),
    );
    for (const p of page.Parts ?? []) {
      if (p.PartNumber) out.set(p.PartNumber, { size: p.Size ?? 0, etag: stripQuotes(p.ETag) });
    }
    if (!page.IsTruncated || !page.NextPartNumberMarker) return out;
    marker = String(page.NextPartNumberMarker);
  }
}
