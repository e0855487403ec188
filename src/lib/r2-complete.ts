// CompleteMultipartUpload that survives a lost reply. When R2 completed the upload but the reply
// never arrived (a cut connection, a request timeout on a big object), the next attempt, from our
// retry or the SDK's, finds no upload: 404 NoSuchUpload. The object is then already there, and
// its ETag tells whether it is this upload: R2 gives a multipart object the MD5 of its parts'
// binary MD5s followed by "-<part count>", which only these parts produce.
import {
  CompleteMultipartUploadCommand,
  HeadObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import type { Logger } from './logger.js';

export interface CompletedPart {
  PartNumber: number;
  ETag: string;
}

export interface CompleteUploadRequest {
  bucket: string;
  key: string;
  uploadId: string;
  /** Every part, in part-number order, with the ETag R2 answered for it. */
  parts: CompletedPart[];
}

const unquote = (etag: string | undefined): string => (etag ?? '').replace(/"/g, '');

/** The ETag R2 (like S3) gives an object completed from parts with these ETags. */
export function multipartEtag(partEtags: string[]): string {
  const md5 = createHash('md5');
  for (const etag of partEtags) md5.update(Buffer.from(unquote(etag), 'hex'));
  return `${md5.digest('hex')}-${partEtags.length}`;
}

function isNoSuchUpload(err: unknown): boolean {
  const e = err as { name?: string; Code?: string };
  return e?.name === 'NoSuchUpload' || e?.Code === 'NoSuchUpload';
}

/**
 * One attempt at completing the upload (wrap it in a retry). A NoSuchUpload is accepted only when
 * the stored object carries this upload's multipart ETag; otherwise that error is thrown as it came.
 */
export async function completeUpload(
  client: S3Client,
  req: CompleteUploadRequest,
  logger: Logger,
): Promise<void> {
  try {
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: req.bucket,
        Key: req.key,
        UploadId: req.uploadId,
        MultipartUpload: { Parts: req.parts },
      }),
    );
  } catch (err) {
    if (!isNoSuchUpload(err)) throw err;
    // No object: the upload really is gone. Any other HEAD failure is thrown as it is, so a
    // retryable one (5xx, a reset) has the whole attempt made again.
    const head = await client
      .send(new HeadObjectCommand({ Bucket: req.bucket, Key: req.key }))
      .catch((headErr: unknown) => {
        if ((headErr as { name?: string }).name === 'NotFound') return undefined;
        throw headErr;
      });
    if (unquote(head?.ETag) !== multipartEtag(req.parts.map((p) => p.ETag))) throw err;
    logger.warn(
      `R2 ${req.key}: an earlier CompleteMultipartUpload had already stored it (its reply was lost); the object has this upload's multipart ETag`,
    );
  }
}
