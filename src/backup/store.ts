// The backups in the bucket: list them (a backup exists when its manifest does), read and move
// the latest pointer, write small objects, delete backups and leftovers.
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { abortUpload, describeS3Failure, isRetryableS3Error } from '../lib/r2-stream-upload.js';
import type { Logger } from '../lib/logger.js';
import { retry, type RetryOptions } from '../lib/retry.js';
import { latestKey, parseBackupId, parseLatest, type LatestPointer } from './manifest.js';

export interface StoredBackup {
  id: string;
  time: Date;
  /** The manifest exists: the backup completed. */
  complete: boolean;
  keys: string[];
}

/** A delete R2 refused with 403: a bucket lock rule holds the object, or the token may not delete. */
export interface RefusedDelete {
  key: string;
  /** R2's error code: ObjectLockedByBucketPolicy, AccessDenied. */
  code: string;
}

/** What deleteBackup did: the keys gone, and the ones R2 refused (the backup's manifest first). */
export interface BackupDeletion {
  deleted: string[];
  refused: RefusedDelete[];
}

/** The refusal in an error from a delete (a 403 after our retry), or undefined. */
function refusalOf(key: string, err: unknown): RefusedDelete | undefined {
  const cause = (err as { cause?: unknown }).cause ?? err;
  const status = (cause as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  if (status !== 403) return undefined;
  return { key, code: (cause as { name?: string }).name ?? 'AccessDenied' };
}

export class BackupStore {
  private readonly retryOpts: RetryOptions;

  constructor(
    readonly client: S3Client,
    readonly bucket: string,
    readonly prefix: string,
    private readonly logger: Logger,
    retryOpts: RetryOptions = {},
  ) {
    this.retryOpts = { attempts: 5, baseDelayMs: 500, retryable: isRetryableS3Error, ...retryOpts };
  }

  private async send<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await retry(fn, this.retryOpts);
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchKey') throw err;
      throw describeS3Failure(what, err);
    }
  }

  /** Every key under the prefix (paged, 1,000 a page). */
  async listKeys(under = `${this.prefix}/`): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.send(`ListObjectsV2 ${under}`, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: under,
            ContinuationToken: token,
          }),
        ),
      );
      for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys;
  }

  /** Backups by id (ids that are not timestamps are ignored: never ours to delete). */
  async listBackups(): Promise<StoredBackup[]> {
    const byId = new Map<string, StoredBackup>();
    for (const key of await this.listKeys()) {
      const [id, ...rest] = key.slice(this.prefix.length + 1).split('/');
      const time = id ? parseBackupId(id) : undefined;
      if (!id || !time || rest.length === 0) continue;
      const entry = byId.get(id) ?? { id, time, complete: false, keys: [] };
      entry.keys.push(key);
      if (rest.join('/') === 'manifest.json') entry.complete = true;
      byId.set(id, entry);
    }
    return [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  async getText(key: string): Promise<string | undefined> {
    try {
      const res = await this.send(`GetObject ${key}`, () =>
        this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key })),
      );
      return await res.Body?.transformToString('utf8');
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchKey') return undefined;
      throw err;
    }
  }

  async latest(): Promise<LatestPointer | undefined> {
    const text = await this.getText(latestKey(this.prefix));
    return text === undefined ? undefined : parseLatest(text, this.prefix);
  }

  /** Writes a small object; `ifAbsent` refuses to overwrite (R2 answers 412). Returns its sha256. */
  async putSmall(
    key: string,
    body: string,
    contentType: string,
    ifAbsent = false,
  ): Promise<string> {
    const data = Buffer.from(body, 'utf8');
    const md5 = createHash('md5').update(data).digest('base64');
    await this.send(`PutObject ${key}`, () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: data,
          ContentLength: data.length,
          ContentMD5: md5,
          ContentType: contentType,
          ...(ifAbsent ? { IfNoneMatch: '*' } : {}),
        }),
      ),
    );
    return createHash('sha256').update(data).digest('hex');
  }

  /**
   * Streams an object through sha256 (read-back verification; R2 egress is free), and into
   * `file` when given (a retried download starts the file again).
   */
  async sha256Of(key: string, file?: string): Promise<{ sha256: string; bytes: number }> {
    return this.send(`${file ? 'download' : 'read-back'} of ${key}`, async () => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const out = file ? await open(file, 'w', 0o600) : undefined;
      try {
        const hash = createHash('sha256');
        let bytes = 0;
        for await (const chunk of res.Body as Readable) {
          hash.update(chunk as Buffer);
          bytes += (chunk as Buffer).length;
          if (out) await out.write(chunk as Buffer);
        }
        return { sha256: hash.digest('hex'), bytes };
      } finally {
        await out?.close();
      }
    });
  }

  async delete(key: string): Promise<void> {
    await this.send(`DeleteObject ${key}`, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })),
    );
  }

  /** Deletes a key; a 403 (a lock rule, a token without delete rights) is returned, not thrown. */
  async tryDelete(key: string): Promise<RefusedDelete | undefined> {
    try {
      await this.delete(key);
      return undefined;
    } catch (err) {
      const refused = refusalOf(key, err);
      if (refused) return refused;
      throw err;
    }
  }

  /**
   * Deletes a backup, its manifest first: once that is gone it no longer counts as a backup, and
   * its other objects are leftovers that a later run removes. A refused manifest stops there, so
   * no manifest ever names objects that are gone (an interrupted run leaves the same two states).
   * Other refusals are collected and the rest still deleted.
   */
  async deleteBackup(backup: StoredBackup): Promise<BackupDeletion> {
    const manifest = backup.keys.filter((k) => k.endsWith('/manifest.json'));
    const result: BackupDeletion = { deleted: [], refused: [] };
    for (const key of [...manifest, ...backup.keys.filter((k) => !manifest.includes(k))]) {
      const refused = await this.tryDelete(key);
      if (refused) result.refused.push(refused);
      else result.deleted.push(key);
      if (refused && manifest.includes(key)) break;
    }
    return result;
  }

  /** Aborts multipart uploads under the prefix started before `olderThan` (crashed runs). */
  async abortStaleUploads(olderThan: Date): Promise<number> {
    let aborted = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.send('ListMultipartUploads', () =>
        this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: `${this.prefix}/`,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        ),
      );
      for (const u of page.Uploads ?? []) {
        if (u.Key && u.UploadId && u.Initiated && u.Initiated < olderThan) {
          await abortUpload(this.client, this.bucket, u.Key, u.UploadId, this.logger);
          aborted++;
        }
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return aborted;
  }
}
