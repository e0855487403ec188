// The vault side: one listing of the prefix (ListObjectsV2 pages of 1,000, never a HEAD per
// file), the models-manifest.json written last by every push, and pending multipart uploads.
import {
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { z } from 'zod';
import { OpsError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { R2_LIST_PAGE } from '../lib/r2.js';
import { isRetryableS3Error, describeS3Failure } from '../lib/r2-stream-upload.js';
import { retry } from '../lib/retry.js';

export const MANIFEST_NAME = 'models-manifest.json';

export interface VaultObject {
  /** Relative to the prefix. */
  path: string;
  size: number;
}

export interface Vault {
  client: S3Client;
  bucket: string;
  /** '' or 'models/' (always ends with '/' when set). */
  prefix: string;
}

export const vaultKey = (v: Vault, rel: string): string => `${v.prefix}${rel}`;

export const normalizePrefix = (prefix: string): string => {
  const p = prefix.replace(/^\/+|\/+$/g, '');
  return p ? `${p}/` : '';
};

const s3Retry = { attempts: 5, baseDelayMs: 300, retryable: isRetryableS3Error };

export async function withS3Retry<T>(
  what: string,
  fn: () => Promise<T>,
  logger?: Logger,
): Promise<T> {
  try {
    return await retry(fn, {
      ...s3Retry,
      onRetry: ({ err, attempt, delayMs }) =>
        logger?.warn(
          `R2 ${what}: attempt ${attempt} failed (${errorMessage(err)}); retrying in ${delayMs} ms`,
        ),
    });
  } catch (err) {
    throw describeS3Failure(what, err);
  }
}

/** Every object under the prefix; the manifest itself is returned apart. */
export async function listVault(
  v: Vault,
): Promise<{ objects: VaultObject[]; hasManifest: boolean }> {
  const objects: VaultObject[] = [];
  let hasManifest = false;
  let token: string | undefined;
  do {
    const page = await withS3Retry(`ListObjectsV2 ${v.bucket}/${v.prefix}`, () =>
      v.client.send(
        new ListObjectsV2Command({
          Bucket: v.bucket,
          Prefix: v.prefix,
          MaxKeys: R2_LIST_PAGE,
          ContinuationToken: token,
        }),
      ),
    );
    for (const o of page.Contents ?? []) {
      const rel = (o.Key ?? '').slice(v.prefix.length);
      if (rel === MANIFEST_NAME) hasManifest = true;
      else if (rel) objects.push({ path: rel, size: o.Size ?? 0 });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { objects, hasManifest };
}

const manifestSchema = z.object({
  version: z.literal(1),
  updated: z.string(),
  files: z.array(
    z.object({ path: z.string(), size: z.number(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  ),
});

export type VaultManifest = z.infer<typeof manifestSchema>;

export async function readManifest(
  v: Vault,
): Promise<Map<string, { size: number; sha256: string }>> {
  const key = vaultKey(v, MANIFEST_NAME);
  const text = await withS3Retry(`GetObject ${key}`, async () => {
    const out = await v.client.send(new GetObjectCommand({ Bucket: v.bucket, Key: key }));
    return out.Body?.transformToString('utf8') ?? '';
  });
  let parsed;
  try {
    parsed = manifestSchema.parse(JSON.parse(text));
  } catch (err) {
    throw new OpsError(
      `${key} in bucket ${v.bucket} is not a valid models manifest: ${(err as Error).message}`,
    );
  }
  return new Map(parsed.files.map((f) => [f.path, { size: f.size, sha256: f.sha256 }]));
}

export async function writeManifest(
  v: Vault,
  files: Map<string, { size: number; sha256: string }>,
): Promise<string> {
  const key = vaultKey(v, MANIFEST_NAME);
  const body: VaultManifest = {
    version: 1,
    updated: new Date().toISOString(),
    files: [...files].sort(([a], [b]) => (a < b ? -1 : 1)).map(([path, f]) => ({ path, ...f })),
  };
  const text = `${JSON.stringify(body, null, 2)}\n`;
  await withS3Retry(`PutObject ${key}`, () =>
    v.client.send(
      new PutObjectCommand({
        Bucket: v.bucket,
        Key: key,
        Body: text,
        ContentType: 'application/json',
        ContentLength: Buffer.byteLength(text),
      }),
    ),
  );
  return key;
}

export interface PendingUpload {
  key: string;
  uploadId: string;
  initiated: Date;
}

export async function listPendingUploads(v: Vault): Promise<PendingUpload[]> {
  const out: PendingUpload[] = [];
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  for (;;) {
    const page = await withS3Retry(`ListMultipartUploads ${v.bucket}/${v.prefix}`, () =>
      v.client.send(
        new ListMultipartUploadsCommand({
          Bucket: v.bucket,
          Prefix: v.prefix,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      ),
    );
    for (const u of page.Uploads ?? []) {
      if (u.Key && u.UploadId)
        out.push({ key: u.Key, uploadId: u.UploadId, initiated: u.Initiated ?? new Date(0) });
    }
    if (!page.IsTruncated) return out;
    keyMarker = page.NextKeyMarker;
    uploadIdMarker = page.NextUploadIdMarker;
  }
}
