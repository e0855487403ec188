// The one way to R2. Every request of the backup, the model vault and the drill goes through
// R2Store.request, which applies once what used to be spelled out per module: the retry policy
// (which failures are worth another attempt, how many, how long to wait), the wording of a failure
// ("R2 <request> <key> failed: <why> (HTTP n)"), and a retry logged as a warning. The request
// timeout is the client's (createR2Client, from r2-timeout); the SDK itself makes one attempt.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { OpsError, errorMessage } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import { R2_LIST_PAGE } from './r2.js';
import {
  isRetryableStatus,
  isTransientNetworkError,
  networkCause,
  retry,
  type RetryOptions,
} from './retry.js';

/** The retry policy of every R2 request: 5 attempts, backoff from 500 ms, jittered. */
export const R2_RETRY: Readonly<Pick<RetryOptions, 'attempts' | 'baseDelayMs' | 'maxDelayMs'>> = {
  attempts: 5,
  baseDelayMs: 500,
  maxDelayMs: 30_000,
};

const TRANSIENT_S3_ERRORS = new Set([
  'SlowDown',
  'InternalError',
  'ServiceUnavailable',
  'RequestTimeout',
  // A body damaged on the way (Content-MD5 or SigV4 payload hash mismatch): send it again.
  'XAmzContentSHA256Mismatch',
  'BadDigest',
]);

/** What an SDK error carries: its S3 code as `name` (or `Code`), the HTTP status, a cause. */
interface S3ErrorFields {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  cause?: unknown;
}
const fieldsOf = (err: unknown): S3ErrorFields =>
  err !== null && typeof err === 'object' ? (err as S3ErrorFields) : {};
const statusOf = (err: unknown): number | undefined => fieldsOf(err).$metadata?.httpStatusCode;
const nameOf = (err: unknown): string => fieldsOf(err).name ?? fieldsOf(err).Code ?? '';

/** Whether an S3/R2 request failure may succeed when sent again. */
export function isRetryableS3Error(err: unknown): boolean {
  if (TRANSIENT_S3_ERRORS.has(nameOf(err))) return true;
  const status = statusOf(err);
  if (typeof status === 'number') return isRetryableStatus(status);
  return isTransientNetworkError(err);
}

/** "R2 PutObject a/b failed: <message> (HTTP 500)": which request, on what, and why. */
export function describeS3Failure(what: string, err: unknown): OpsError {
  if (err instanceof OpsError) return err;
  const status = statusOf(err);
  const message = errorMessage(err).replace(/\.+$/, '');
  // "connect ECONNREFUSED 127.0.0.1:9000" names the peer; the cause in words says what went wrong.
  const cause = networkCause(err);
  const why = cause && !message.includes(cause) ? ` (${cause})` : '';
  return new OpsError(`R2 ${what} failed: ${message}${why}${status ? ` (HTTP ${status})` : ''}`, {
    cause: err,
  });
}

/** The error R2 (and S3) give for a key that does not exist. */
const isNotFound = (err: unknown): boolean =>
  nameOf(err) === 'NoSuchKey' || nameOf(err) === 'NotFound' || statusOf(err) === 404;

const unquote = (etag: string | undefined): string => (etag ?? '').replace(/"/g, '');

/** The MD5 in hex: R2's ETag of a part, or of an object written by one PutObject, of these bytes. */
export const md5Hex = (bytes: Buffer): string => createHash('md5').update(bytes).digest('hex');

/**
 * R2 stored other bytes than we sent when its ETag is not the one they give: an error naming the
 * request, the key, the ETag expected and the one found.
 */
function checkEtag(what: string, found: string | undefined, expected: string, of: string): string {
  if (found === undefined || found === '') throw new OpsError(`R2 gave no ETag for ${what}`);
  const etag = unquote(found);
  if (etag !== expected) {
    throw new OpsError(
      `R2 ${what}: ETag ${etag}, expected ${expected} (${of}); R2 holds other bytes than were sent`,
    );
  }
  return etag;
}

/** The ETag R2 (like S3) gives an object completed from parts with these ETags. */
export function multipartEtag(partEtags: string[]): string {
  const md5 = createHash('md5');
  for (const etag of partEtags) md5.update(Buffer.from(unquote(etag), 'hex'));
  return `${md5.digest('hex')}-${partEtags.length}`;
}

export interface StoredObject {
  key: string;
  size: number;
}

export interface ObjectHead {
  size: number;
  /** Without quotes. */
  etag: string;
  metadata: Record<string, string>;
}

/** A delete R2 refused with 403: a bucket lock rule holds the object, or the token may not delete. */
export interface RefusedDelete {
  key: string;
  /** R2's error code: ObjectLockedByBucketPolicy, AccessDenied. */
  code: string;
}

/** A multipart upload: the key it will become and R2's id for it. */
export interface MultipartUpload {
  key: string;
  uploadId: string;
}

export interface PendingUpload extends MultipartUpload {
  initiated: Date;
}

export interface CompletedPart {
  PartNumber: number;
  ETag: string;
}

export interface StoredPart {
  size: number;
  /** Without quotes: the part's MD5 in hex. */
  etag: string;
}

export interface PutResult {
  /** Without quotes: the MD5 of the body, as R2 answered it. */
  etag: string;
}

export interface PutOptions {
  contentType: string;
  /** Refuse to overwrite (R2 answers 412 when the key exists). */
  ifAbsent?: boolean;
  metadata?: Record<string, string>;
}

export interface R2StoreOptions {
  client: S3Client;
  bucket: string;
  logger?: Logger;
  /** Replaces parts of R2_RETRY (tests: fewer attempts, no sleep). */
  retry?: RetryOptions;
}

type Handler = (args: { request: unknown }) => Promise<unknown>;
interface BuildStack {
  add(mw: (next: Handler) => Handler, opts: { step: 'build'; name: string }): void;
}

/**
 * How every body goes to R2: with its Content-MD5 (the command's ContentMD5), and UNSIGNED-PAYLOAD
 * in the signature (this middleware). The one MD5 the store computes of a body makes R2 refuse it
 * when damaged on the way (BadDigest, sent again) and, as the ETag R2 answers, proves what it
 * stored; a SigV4 payload hash would only repeat the first proof with a second pass over every
 * byte (the SDK's SHA-256).
 */
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

export class R2Store {
  readonly client: S3Client;
  readonly bucket: string;
  readonly logger: Logger;
  private readonly retryOpts: RetryOptions;

  constructor(opts: R2StoreOptions) {
    this.client = opts.client;
    this.bucket = opts.bucket;
    this.logger = opts.logger ?? silentLogger;
    this.retryOpts = { ...R2_RETRY, retryable: isRetryableS3Error, ...opts.retry };
  }

  /**
   * One R2 request under the policy: retried while the failure is transient, then thrown as an
   * OpsError naming the request. A missing key (404) is thrown as it came: callers ask for it.
   */
  async request<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await retry(fn, {
        ...this.retryOpts,
        onRetry: ({ err, attempt, delayMs }) =>
          this.logger.warn(
            `R2 ${what}: attempt ${attempt} failed (${errorMessage(err)}); retrying in ${delayMs} ms`,
          ),
      });
    } catch (err) {
      if (isNotFound(err)) throw err;
      throw describeS3Failure(what, err);
    }
  }

  /** Every object under a prefix, ListObjectsV2 pages of 1,000. */
  async list(prefix: string): Promise<StoredObject[]> {
    const objects: StoredObject[] = [];
    let token: string | undefined;
    do {
      const page = await this.request(`ListObjectsV2 ${this.bucket}/${prefix}`, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            MaxKeys: R2_LIST_PAGE,
            ContinuationToken: token,
          }),
        ),
      );
      for (const o of page.Contents ?? [])
        if (o.Key) objects.push({ key: o.Key, size: o.Size ?? 0 });
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return objects;
  }

  async listKeys(prefix: string): Promise<string[]> {
    return (await this.list(prefix)).map((o) => o.key);
  }

  /** The object's size, ETag and metadata; undefined when there is none. */
  async head(key: string): Promise<ObjectHead | undefined> {
    try {
      const out = await this.request(`HeadObject ${key}`, () =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })),
      );
      return {
        size: out.ContentLength ?? 0,
        etag: unquote(out.ETag),
        metadata: out.Metadata ?? {},
      };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** A small object as text; undefined when there is none. */
  async getText(key: string): Promise<string | undefined> {
    try {
      return await this.request(`GetObject ${key}`, async () => {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
        return (await res.Body?.transformToString('utf8')) ?? '';
      });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * One GetObject from `offset` on, not retried: the caller resumes from what it has. Returns the
   * body, the first byte it holds (0 when the server ignored the range) and the metadata.
   */
  async openRead(
    key: string,
    offset = 0,
  ): Promise<{ body: Readable; start: number; metadata: Record<string, string> }> {
    const out = await this.client.send(
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ...(offset > 0 ? { Range: `bytes=${offset}-` } : {}),
      }),
    );
    const range = /^bytes (\d+)-/.exec(out.ContentRange ?? '');
    return {
      body: out.Body as Readable,
      start: range ? Number(range[1]) : 0,
      metadata: out.Metadata ?? {},
    };
  }

  /**
   * Streams an object through sha256 (read-back verification; R2 egress is free), and into
   * `file` when given (a retried download starts the file again).
   */
  async sha256Of(key: string, file?: string): Promise<{ sha256: string; bytes: number }> {
    return this.request(`${file ? 'download' : 'read-back'} of ${key}`, async () => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const out = file ? await open(file, 'w', 0o600) : undefined;
      try {
        const hash = createHash('sha256');
        let bytes = 0;
        for await (const chunk of res.Body as AsyncIterable<Buffer>) {
          hash.update(chunk);
          bytes += chunk.length;
          if (out) await out.write(chunk);
        }
        return { sha256: hash.digest('hex'), bytes };
      } finally {
        await out?.close();
      }
    });
  }

  /**
   * Writes one object from memory; returns its ETag, which R2 must have answered as the MD5 of
   * the bytes sent (else it stored something else, and this throws). The caller hashes the body
   * if it needs a sha256: the model vault already did as it read the file.
   */
  async put(key: string, body: Buffer | string, opts: PutOptions): Promise<PutResult> {
    const data = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    const md5 = md5Hex(data);
    const out = await this.request(`PutObject ${key}`, () => {
      const cmd = new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: data,
        ContentLength: data.length,
        ContentType: opts.contentType,
        ContentMD5: Buffer.from(md5, 'hex').toString('base64'),
        ...(opts.metadata ? { Metadata: opts.metadata } : {}),
        ...(opts.ifAbsent ? { IfNoneMatch: '*' } : {}),
      });
      return this.client.send(unsignedPayload(cmd));
    });
    const etag = checkEtag(
      `PutObject ${key}`,
      out.ETag,
      md5,
      `the MD5 of the ${data.length} bytes sent`,
    );
    return { etag };
  }

  /** Rewrites an object's metadata in place (server-side copy; R2 copies at most 5 GiB). */
  async replaceMetadata(
    key: string,
    contentType: string,
    metadata: Record<string, string>,
  ): Promise<void> {
    const source = `${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
    await this.request(`CopyObject ${key} (metadata)`, () =>
      this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: key,
          CopySource: source,
          MetadataDirective: 'REPLACE',
          ContentType: contentType,
          Metadata: metadata,
        }),
      ),
    );
  }

  async delete(key: string): Promise<void> {
    await this.request(`DeleteObject ${key}`, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })),
    );
  }

  /** Deletes a key; a 403 (a lock rule, a token without delete rights) is returned, not thrown. */
  async tryDelete(key: string): Promise<RefusedDelete | undefined> {
    try {
      await this.delete(key);
      return undefined;
    } catch (err) {
      const cause = fieldsOf(err).cause ?? err;
      if (statusOf(cause) !== 403) throw err;
      return { key, code: nameOf(cause) || 'AccessDenied' };
    }
  }

  async createUpload(
    key: string,
    contentType: string,
    metadata?: Record<string, string>,
  ): Promise<MultipartUpload> {
    const out = await this.request(`CreateMultipartUpload ${key}`, () =>
      this.client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          ContentType: contentType,
          ...(metadata ? { Metadata: metadata } : {}),
        }),
      ),
    );
    if (!out.UploadId) throw new OpsError(`R2 gave no UploadId for ${key}`);
    return { key, uploadId: out.UploadId };
  }

  /**
   * Sends one part; returns its ETag as R2 gave it (quoted). Its Content-MD5 makes R2 refuse a part
   * damaged on the way, and it is sent again; the ETag R2 answers must also be the MD5 of the bytes
   * sent, which proves that these bytes are the part R2 holds. Else the upload fails, naming the
   * part.
   */
  async uploadPart(
    { key, uploadId }: MultipartUpload,
    partNumber: number,
    body: Buffer,
  ): Promise<string> {
    const md5 = md5Hex(body);
    const out = await this.request(`UploadPart ${key} part ${partNumber}`, () => {
      const cmd = new UploadPartCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: partNumber,
        Body: body,
        ContentLength: body.length,
        ContentMD5: Buffer.from(md5, 'hex').toString('base64'),
      });
      return this.client.send(unsignedPayload(cmd));
    });
    checkEtag(
      `UploadPart ${key} part ${partNumber}`,
      out.ETag,
      md5,
      `the MD5 of the ${body.length} bytes sent`,
    );
    return `"${md5}"`;
  }

  /**
   * Completes an upload, surviving a lost reply. When R2 completed it but the reply never arrived
   * (a cut connection, a request timeout on a big object), the next attempt, ours or the SDK's,
   * finds no upload: 404 NoSuchUpload. The object is then already there, and it is accepted only
   * when it carries this upload's multipart ETag (the MD5 of the parts' binary MD5s, then
   * "-<part count>"), which only these parts produce. The ETag R2 answers must be that one too:
   * it proves R2 assembled exactly these parts, in this order, none missing. Returns it.
   */
  async completeUpload(
    { key, uploadId }: MultipartUpload,
    parts: CompletedPart[],
  ): Promise<string> {
    const expected = multipartEtag(parts.map((p) => p.ETag));
    const found = await this.request(`CompleteMultipartUpload ${key}`, async () => {
      try {
        const out = await this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
          }),
        );
        return out.ETag;
      } catch (err) {
        if (nameOf(err) !== 'NoSuchUpload') throw err;
        // No object: the upload really is gone. Any other HEAD failure is thrown as it is, so a
        // retryable one (5xx, a reset) has the whole attempt made again.
        const head = await this.client
          .send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }))
          .catch((headErr: unknown) => {
            if (nameOf(headErr) === 'NotFound') return undefined;
            throw headErr;
          });
        if (unquote(head?.ETag) !== expected) throw err;
        this.logger.warn(
          `R2 ${key}: an earlier CompleteMultipartUpload had already stored it (its reply was lost); the object has this upload's multipart ETag`,
        );
        return head?.ETag;
      }
    });
    return checkEtag(
      `CompleteMultipartUpload ${key}`,
      found,
      expected,
      `the multipart ETag of the ${parts.length} part(s) sent`,
    );
  }

  /**
   * One HeadObject (Class B): the object under `key` must now be the one just written, with its
   * size and ETag; else this throws naming the key, what was expected and what R2 holds.
   */
  async confirmStored(key: string, expected: { size: number; etag: string }): Promise<void> {
    const head = await this.head(key);
    if (head?.size === expected.size && head.etag === expected.etag) return;
    const found = head ? `${head.size} bytes, ETag ${head.etag}` : 'no object';
    throw new OpsError(
      `R2 HeadObject ${key} after upload: ${found}, expected ${expected.size} bytes, ETag ${expected.etag}`,
    );
  }

  /**
   * Best-effort abort (retried): false when it failed, which is reported as a warning, never
   * thrown over the error that made the caller abort. An upload already gone (completed, with an
   * ETag that did not prove it) has nothing left to abort.
   */
  async abortUpload({ key, uploadId }: MultipartUpload): Promise<boolean> {
    try {
      await this.request(`AbortMultipartUpload ${key}`, () =>
        this.client.send(
          new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
        ),
      );
      return true;
    } catch (err) {
      if (nameOf(err) === 'NoSuchUpload') return true;
      this.logger.warn(
        `could not abort the multipart upload of ${key} (${errorMessage(err)}); it will be cleaned up later`,
      );
      return false;
    }
  }

  /** The parts an upload already holds, by part number. */
  async listParts({ key, uploadId }: MultipartUpload): Promise<Map<number, StoredPart>> {
    const out = new Map<number, StoredPart>();
    let marker: string | undefined;
    for (;;) {
      const page = await this.request(`ListParts ${key}`, () =>
        this.client.send(
          new ListPartsCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: uploadId,
            PartNumberMarker: marker,
          }),
        ),
      );
      for (const p of page.Parts ?? [])
        if (p.PartNumber) out.set(p.PartNumber, { size: p.Size ?? 0, etag: unquote(p.ETag) });
      if (!page.IsTruncated || !page.NextPartNumberMarker) return out;
      marker = String(page.NextPartNumberMarker);
    }
  }

  /** Multipart uploads under a prefix that were started and never completed or aborted. */
  async listUploads(prefix: string): Promise<PendingUpload[]> {
    const out: PendingUpload[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.request(`ListMultipartUploads ${this.bucket}/${prefix}`, () =>
        this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: prefix,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        ),
      );
      for (const u of page.Uploads ?? [])
        if (u.Key && u.UploadId)
          out.push({ key: u.Key, uploadId: u.UploadId, initiated: u.Initiated ?? new Date(0) });
      if (!page.IsTruncated) return out;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }
}
