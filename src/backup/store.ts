// The backups in the bucket: list them (a backup exists when its manifest does), read and move
// the latest pointer, write small objects, delete backups and leftovers.
import { createHash } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Logger } from '../lib/logger.js';
import { R2Store, type RefusedDelete } from '../lib/r2-store.js';
import type { RetryOptions } from '../lib/retry.js';
import { latestKey, parseBackupId, parseLatest, type LatestPointer } from './manifest.js';

export type { RefusedDelete };

export interface StoredBackup {
  id: string;
  time: Date;
  /** The manifest exists: the backup completed. */
  complete: boolean;
  keys: string[];
}

/** What deleteBackup did: the keys gone, and the ones R2 refused (the backup's manifest first). */
export interface BackupDeletion {
  deleted: string[];
  refused: RefusedDelete[];
}

/** Where the backups are: what the backup, the retention and the drill are given. */
export interface BackupBucket {
  client: S3Client;
  bucket: string;
  prefix: string;
  /** Replaces parts of the R2 retry policy (tests). */
  retry?: RetryOptions;
}

/** The backups under one prefix of the bucket, on the one R2 store. */
export class BackupStore {
  constructor(
    readonly r2: R2Store,
    readonly prefix: string,
  ) {}

  static open(where: BackupBucket, logger: Logger): BackupStore {
    const { client, bucket, prefix, retry } = where;
    return new BackupStore(
      new R2Store({ client, bucket, logger, ...(retry ? { retry } : {}) }),
      prefix,
    );
  }

  /** Every key under the prefix (paged, 1,000 a page). */
  listKeys(under = `${this.prefix}/`): Promise<string[]> {
    return this.r2.listKeys(under);
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

  getText(key: string): Promise<string | undefined> {
    return this.r2.getText(key);
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
    await this.r2.put(key, body, { contentType, ifAbsent });
    return createHash('sha256').update(body, 'utf8').digest('hex');
  }

  /** The sha256 and size of an object, read through (and written to `file` when given). */
  sha256Of(key: string, file?: string): Promise<{ sha256: string; bytes: number }> {
    return this.r2.sha256Of(key, file);
  }

  tryDelete(key: string): Promise<RefusedDelete | undefined> {
    return this.r2.tryDelete(key);
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
    const stale = (await this.r2.listUploads(`${this.prefix}/`)).filter(
      (u) => u.initiated < olderThan,
    );
    let aborted = 0;
    for (const u of stale) if (await this.r2.abortUpload(u)) aborted++;
    return aborted;
  }
}
