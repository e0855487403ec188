import { S3Client } from '@aws-sdk/client-s3';
import { InputError } from './errors.js';

export interface R2Options {
  /** Full endpoint URL; or give accountId for https://<account>.r2.cloudflarestorage.com. */
  endpoint?: string;
  accountId?: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** SDK-level attempts; our own retry wraps transfers, so keep this small. */
  maxAttempts?: number;
  requestTimeoutMs?: number;
}

export const R2_MIN_PART = 5 * 2 ** 20;
export const R2_MAX_PART = 5 * 2 ** 30;
export const R2_MAX_PARTS = 10_000;
export const R2_METADATA_LIMIT = 8192;
export const R2_LIST_PAGE = 1000;
/** Dollars per million operations (Class A: PUT, UploadPart, List…; Class B: GET, HEAD). */
export const R2_CLASS_A_PER_MILLION = 4.5;
export const R2_CLASS_B_PER_MILLION = 0.36;

export function r2Endpoint(opts: Pick<R2Options, 'endpoint' | 'accountId'>): string {
  if (opts.endpoint) {
    let url: URL;
    try {
      url = new URL(opts.endpoint);
    } catch {
      throw new InputError(
        'r2-endpoint',
        opts.endpoint,
        'an http(s) URL such as https://<account-id>.r2.cloudflarestorage.com',
      );
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new InputError('r2-endpoint', opts.endpoint, 'an http(s) URL');
    }
    return opts.endpoint.replace(/\/+$/, '');
  }
  if (opts.accountId) {
    if (!/^[0-9a-f]{32}$/.test(opts.accountId)) {
      throw new InputError(
        'r2-account-id',
        opts.accountId,
        'a 32-character hex Cloudflare account id',
      );
    }
    return `https://${opts.accountId}.r2.cloudflarestorage.com`;
  }
  throw new InputError('r2-endpoint', '', 'an R2 endpoint URL, or r2-account-id');
}

/**
 * An S3 client with the settings R2 needs: region auto, path-style, and checksums only when
 * required (R2 rejects aws-chunked bodies; s3rver silently stores them corrupted).
 */
export function createR2Client(opts: R2Options): S3Client {
  return new S3Client({
    endpoint: r2Endpoint(opts),
    region: 'auto',
    forcePathStyle: true,
    credentials: { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // No `Expect: 100-continue` before bodies over 2 MiB: it costs every part a round trip to R2
    // waiting for "100 Continue"; a refused request (bad credentials) just wastes one body.
    expectContinueHeader: false,
    maxAttempts: opts.maxAttempts ?? 3,
    // throwOnRequestTimeout: without it smithy only logs a warning and the request hangs on.
    ...(opts.requestTimeoutMs
      ? { requestHandler: { requestTimeout: opts.requestTimeoutMs, throwOnRequestTimeout: true } }
      : {}),
  });
}

/**
 * The smallest part size of a file's upload when 10,000 parts leave room: concurrency × part size
 * is the memory a push holds in part buffers (4 × 8 MiB), and 8 MiB parts cost one Class A request
 * per 8 MiB ($0.0006 per GiB) while still filling a connection between two requests.
 */
export const R2_AUTO_MIN_PART = 8 * 2 ** 20;

/** R2 part size for a file: max(8 MiB, ceil(size / 10000)) rounded up to a whole MiB. */
export function r2PartSize(size: number): number {
  const mib = 2 ** 20;
  const wanted = Math.max(R2_AUTO_MIN_PART, Math.ceil(size / R2_MAX_PARTS));
  return Math.ceil(wanted / mib) * mib;
}

/** S3/R2 bucket names: 3–63 lowercase letters, digits and hyphens, starting and ending alnum. */
export function validateBucketName(input: string, bucket: string): string {
  if (!/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new InputError(
      input,
      bucket,
      'an R2 bucket name: 3-63 lowercase letters, digits and hyphens',
    );
  }
  return bucket;
}

/** Dollar cost of a number of Class A and Class B operations. */
export function r2RequestCost(classA: number, classB: number): number {
  return (classA * R2_CLASS_A_PER_MILLION + classB * R2_CLASS_B_PER_MILLION) / 1e6;
}
