// Reads s3rver 3.7.1's on-disk layout for what s3rver itself does not answer: ListParts,
// ListMultipartUploads, AbortMultipartUpload, and the stored part sizes the Complete rules need;
// and writes R2's multipart ETag where s3rver keeps an object's ETag.
// Layout: <dir>/<bucket>/<key dirs>/<name>._S3rver_object, and
// <dir>/<bucket>/._S3rver_uploads/<uploadId>/{key,metadata,<n>,<n>.md5}.
import { createHash } from 'node:crypto';
import { readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { StoredPart } from './r2-rules.js';

export interface StoredUpload {
  uploadId: string;
  key: string;
  initiated: Date;
}

export class S3rverStore {
  constructor(readonly dir: string) {}

  objectPath(bucket: string, key: string): string {
    const parts = key.split('/');
    const name = parts.pop() ?? '';
    return path.join(this.dir, bucket, ...parts, `${name}._S3rver_object`);
  }

  uploadDir(bucket: string, uploadId: string): string {
    if (!/^[0-9a-f]+$/.test(uploadId))
      return path.join(this.dir, bucket, '._S3rver_uploads', '-invalid-');
    return path.join(this.dir, bucket, '._S3rver_uploads', uploadId);
  }

  async objectExists(bucket: string, key: string): Promise<boolean> {
    return exists(this.objectPath(bucket, key));
  }

  /** When an object was stored (s3rver serves its file's mtime as Last-Modified), or undefined. */
  async objectModified(bucket: string, key: string): Promise<Date | undefined> {
    try {
      return (await stat(this.objectPath(bucket, key))).mtime;
    } catch {
      return undefined;
    }
  }

  /** Test hook: pretend an object was stored at `when` (bucket lock rules go by age). */
  async setObjectModified(bucket: string, key: string, when: Date): Promise<void> {
    await utimes(this.objectPath(bucket, key), when, when);
  }

  /** Replace the ETag s3rver serves for an object (it keeps it in <object>.md5). */
  async setObjectEtag(bucket: string, key: string, etag: string): Promise<void> {
    await writeFile(`${this.objectPath(bucket, key)}.md5`, etag);
  }

  async upload(bucket: string, uploadId: string): Promise<StoredUpload | undefined> {
    const keyFile = path.join(this.uploadDir(bucket, uploadId), 'key');
    try {
      const [key, info] = await Promise.all([readFile(keyFile, 'utf8'), stat(keyFile)]);
      return { uploadId, key, initiated: info.mtime };
    } catch {
      return undefined;
    }
  }

  /** Complete parts only: a part counts once its .md5 is written (s3rver writes it last). */
  async parts(
    bucket: string,
    uploadId: string,
  ): Promise<Map<number, StoredPart & { lastModified: Date }>> {
    const dir = this.uploadDir(bucket, uploadId);
    const out = new Map<number, StoredPart & { lastModified: Date }>();
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return out;
    }
    await Promise.all(
      names
        .filter((n) => /^\d+\.md5$/.test(n))
        .map(async (n) => {
          const partNumber = Number(n.slice(0, -4));
          try {
            const [md5, info] = await Promise.all([
              readFile(path.join(dir, n), 'utf8'),
              stat(path.join(dir, String(partNumber))),
            ]);
            out.set(partNumber, {
              partNumber,
              size: info.size,
              etag: md5.trim(),
              lastModified: info.mtime,
            });
          } catch {
            // a part being replaced right now: not listed
          }
        }),
    );
    return out;
  }

  /**
   * Fault hook: the stored part becomes a stale copy of itself (same size, its middle byte
   * flipped), as a store that kept an older copy would assemble it. Returns its MD5 in hex.
   */
  async staleCopyOfPart(bucket: string, uploadId: string, partNumber: number): Promise<string> {
    const file = path.join(this.uploadDir(bucket, uploadId), String(partNumber));
    const data = await readFile(file);
    const at = Math.floor(data.length / 2);
    data[at] = (data[at] ?? 0) ^ 0xff;
    await writeFile(file, data);
    return createHash('md5').update(data).digest('hex');
  }

  /** Forget the previous copy of a part before it is sent again, so a cut-off resend is not listed. */
  async forgetPart(bucket: string, uploadId: string, partNumber: number): Promise<void> {
    await rm(path.join(this.uploadDir(bucket, uploadId), `${partNumber}.md5`), { force: true });
  }

  async uploads(bucket: string): Promise<StoredUpload[]> {
    let ids: string[];
    try {
      ids = await readdir(path.join(this.dir, bucket, '._S3rver_uploads'));
    } catch {
      return [];
    }
    const found = await Promise.all(ids.map((id) => this.upload(bucket, id)));
    return found
      .filter((u): u is StoredUpload => u !== undefined)
      .sort((a, b) =>
        a.key < b.key ? -1 : a.key > b.key ? 1 : a.initiated.getTime() - b.initiated.getTime(),
      );
  }

  async abort(bucket: string, uploadId: string): Promise<boolean> {
    if (!(await this.upload(bucket, uploadId))) return false;
    await rm(this.uploadDir(bucket, uploadId), { recursive: true, force: true });
    return true;
  }

  /** Test hook: pretend an upload was initiated at `when` (stale-upload cleanup). */
  async setUploadInitiated(bucket: string, uploadId: string, when: Date): Promise<void> {
    await utimes(path.join(this.uploadDir(bucket, uploadId), 'key'), when, when);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}
