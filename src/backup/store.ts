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

  /** Deletes a backup: its manifest first (so it stops counting as a backup), then the rest. */
  async deleteBackup(backup: StoredBackup): Promise<void> {
    const manifest = backup.keys.filter((k) => k.endsWith('/manifest.json'));
    for (const key of [...manifest, ...backup.keys.filter((k) => !manifest.includes(k))])
      await this.delete(key);
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
