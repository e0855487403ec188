// Uploads one model file to the vault: sha256 over every byte as it is read, R2-correct multipart
// through the one uploader (src/lib/r2-multipart.ts: equal parts but the last, at most 10,000,
// in flight in parallel, pooled buffers), and resume of an interrupted upload from the parts R2
// already holds (checked by MD5, not trusted by number). Parts are sent with UNSIGNED-PAYLOAD so
// the SDK does not hash every byte a second time for the signature.
import { createHash } from 'node:crypto';
import { OpsError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { BufferPool, Semaphore } from '../lib/limits.js';
import type { MultipartUpload, StoredPart } from '../lib/r2-store.js';
import { sendParts, type PartSource } from '../lib/r2-multipart.js';
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

export async function pushFile(o: PushFileOptions): Promise<PushFileResult> {
  const input = new HashingReader(o.reader, o.key);
  if (o.size <= o.partSize) return putWhole(o, input);

  const partCount = Math.ceil(o.size / o.partSize);
  if (partCount > R2_MAX_PARTS)
    throw new OpsError(
      `${o.key}: ${partCount} parts of ${o.partSize} bytes exceed R2's ${R2_MAX_PARTS}`,
    );
  const { upload, stored, resumed } = await openUpload(o, partCount);
  // A slot is taken before each read: the run's slots bound the buffers of every file at once.
  // The parts stay in R2 after a failure: the next run resumes from them (stale uploads are
  // aborted after a day).
  const sent = await sendParts({
    store: o.vault.store,
    upload,
    partSize: o.partSize,
    source: new FileParts(input, o.size, o.partSize),
    pool: o.pool,
    slots: o.slots,
    readAhead: false,
    stored,
    onPart: (bytes) => o.onBytes(bytes),
  });
  const sha256 = input.digest();
  if (o.knownSha256 && o.knownSha256 !== sha256) {
    await o.vault.store.abortUpload(upload);
    throw new OpsError(
      `${o.key}: the file changed while it was uploaded (sha256 ${sha256}, hashed before as ${o.knownSha256}); nothing was stored, run again`,
    );
  }
  await o.vault.store.completeUpload(upload, sent.parts);
  // A resumed upload was created by an earlier run, which may not have known the sha256.
  if (!o.knownSha256 || resumed) await setSha256Metadata(o, sha256);
  return { sha256, parts: partCount, partsReused: sent.reused, bytesSent: sent.bytesSent };
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

/** A file of known size as parts: exact lengths, read and hashed in order. */
class FileParts implements PartSource {
  private offset = 0;

  constructor(
    private readonly input: HashingReader,
    private readonly size: number,
    private readonly partSize: number,
  ) {}

  async next(buf: Buffer): Promise<number> {
    const length = Math.min(this.partSize, this.size - this.offset);
    if (length <= 0) return 0;
    await this.input.readExactly(buf, length);
    this.offset += length;
    return length;
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
