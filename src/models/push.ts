// Uploads one model file to the vault: sha256 over every byte as it is read, R2-correct multipart
// (equal parts but the last, at most 10,000) with parts in flight in parallel and pooled buffers,
// and resume of an interrupted upload from the parts R2 already holds (checked by MD5, not
// trusted by number). Parts are sent with UNSIGNED-PAYLOAD so the SDK does not hash every byte
// a second time for the signature.
import { createHash } from 'node:crypto';
import { OpsError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { BufferPool, Semaphore } from '../lib/limits.js';
import type { MultipartUpload, StoredPart } from '../lib/r2-store.js';
import { R2_MAX_PART, R2_MAX_PARTS } from '../lib/r2.js';
import type { Vault } from './bucket.js';
import type { SequentialReader } from './host.js';

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

const md5Hex = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const stripQuotes = (etag: string | undefined): string => (etag ?? '').replace(/"/g, '');

export async function pushFile(o: PushFileOptions): Promise<PushFileResult> {
  const input = new HashingReader(o.reader, o.key);
  if (o.size <= o.partSize) return putWhole(o, input);

  const partCount = Math.ceil(o.size / o.partSize);
  if (partCount > R2_MAX_PARTS)
    throw new OpsError(
      `${o.key}: ${partCount} parts of ${o.partSize} bytes exceed R2's ${R2_MAX_PARTS}`,
    );
  const { upload, stored, resumed } = await openUpload(o, partCount);
  const { etags, partsReused, bytesSent } = await sendParts(o, input, {
    upload,
    stored,
    partCount,
  });
  const sha256 = input.digest();
  if (o.knownSha256 && o.knownSha256 !== sha256) {
    await o.vault.store.abortUpload(upload);
    throw new OpsError(
      `${o.key}: the file changed while it was uploaded (sha256 ${sha256}, hashed before as ${o.knownSha256}); nothing was stored, run again`,
    );
  }
  const parts = etags.map((ETag, i) => ({ PartNumber: i + 1, ETag: `"${ETag}"` }));
  await o.vault.store.completeUpload(upload, parts);
  // A resumed upload was created by an earlier run, which may not have known the sha256.
  if (!o.knownSha256 || resumed) await setSha256Metadata(o, sha256);
  return { sha256, parts: partCount, partsReused, bytesSent };
}

/** Reads exact lengths of the file and hashes every byte as it goes by, in file order. */
class HashingReader {
  private readonly sha = createHash('sha256');

  constructor(
    private readonly reader: SequentialReader,
    private readonly key: string,
  ) {}

  async readExactly(buf: Buffer, length: number): Promise<void> {
    const n = await this.reader.read(buf, length);
    if (n !== length)
      throw new OpsError(
        `${this.key}: the file shrank while it was read (got ${n} of ${length} bytes); run again`,
      );
    this.sha.update(buf.subarray(0, length));
  }

  /** The sha256 of everything read; once every byte went through. */
  digest(): string {
    return this.sha.digest('hex');
  }
}

/** A file of one part: one PUT, its sha256 already in the metadata. */
async function putWhole(o: PushFileOptions, input: HashingReader): Promise<PushFileResult> {
  const buf = o.pool.get(o.partSize);
  try {
    await input.readExactly(buf, o.size);
    const body = buf.subarray(0, o.size);
    const sha256 = input.digest();
    const release = await o.slots.acquire();
    try {
      await o.vault.store.put(o.key, body, {
        contentType: CONTENT_TYPE,
        metadata: { [SHA256_META]: sha256 },
        unsignedPayload: true,
      });
    } finally {
      release();
    }
    o.onBytes(o.size);
    return { sha256, parts: 1, partsReused: 0, bytesSent: o.size };
  } finally {
    o.pool.put(buf);
  }
}

/** The multipart upload to send parts to, and the parts R2 already holds for it. */
interface OpenUpload {
  upload: MultipartUpload;
  stored: Map<number, StoredPart>;
  /** Created by an earlier run (whose parts are reused when their MD5 matches). */
  resumed: boolean;
}

/**
 * The interrupted upload when its parts have this run's part size (the last one may be
 * shorter); otherwise it is aborted and a new upload is created.
 */
async function openUpload(o: PushFileOptions, partCount: number): Promise<OpenUpload> {
  const { store } = o.vault;
  if (o.resumeUploadId) {
    const interrupted: MultipartUpload = { key: o.key, uploadId: o.resumeUploadId };
    const stored = await store.listParts(interrupted);
    if (![...stored].some(([n, p]) => n < partCount && p.size !== o.partSize)) {
      if (stored.size > 0) {
        o.logger.info(
          `${o.key}: resuming an interrupted upload, ${stored.size} of ${partCount} parts already in R2`,
        );
      }
      return { upload: interrupted, stored, resumed: true };
    }
    o.logger.info(`${o.key}: the interrupted upload used another part size; starting over`);
    await store.abortUpload(interrupted);
  }
  const upload = await store.createUpload(
    o.key,
    CONTENT_TYPE,
    o.knownSha256 ? { [SHA256_META]: o.knownSha256 } : undefined,
  );
  return { upload, stored: new Map(), resumed: false };
}

/**
 * Reads the parts in order, each holding a request slot and a pooled buffer until it is sent;
 * a part R2 already holds with the same MD5 is not sent again. On the first failure no further
 * part starts, the ones in flight finish, and the failure is thrown.
 */
async function sendParts(
  o: PushFileOptions,
  input: HashingReader,
  target: Omit<OpenUpload, 'resumed'> & { partCount: number },
): Promise<{ etags: string[]; partsReused: number; bytesSent: number }> {
  const { upload, stored, partCount } = target;
  const etags: string[] = new Array<string>(partCount);
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let partsReused = 0;
  let bytesSent = 0;
  for (let n = 1; n <= partCount && failure === undefined; n++) {
    const length = n < partCount ? o.partSize : o.size - o.partSize * (partCount - 1);
    const release = await o.slots.acquire();
    const buf = o.pool.get(o.partSize);
    const done = (): void => {
      o.pool.put(buf);
      release();
    };
    try {
      await input.readExactly(buf, length);
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
    const p = o.vault.store
      .uploadPart(upload, partNumber, body, true)
      .then((etag) => {
        etags[partNumber - 1] = stripQuotes(etag);
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
  return { etags, partsReused, bytesSent };
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
  await o.vault.store.replaceMetadata(o.key, CONTENT_TYPE, { [SHA256_META]: sha256 });
}
