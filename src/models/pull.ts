// Downloads one model to `<path>.partial` beside its final place, resuming with an HTTP Range
// from what an earlier run left, hashing every byte (the kept prefix included), and renaming it
// into place only when size and sha256 agree. A bad download is deleted, never renamed.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { OpsError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { isRetryableS3Error } from '../lib/r2-stream-upload.js';
import { retry } from '../lib/retry.js';
import { vaultKey, type Vault } from './bucket.js';
import { SHA256_META } from './push.js';

export interface OpenedBody {
  stream: Readable;
  /** The offset the server actually started at (0 when it ignored the Range). */
  start: number;
  /** A sha256 the source states for the whole file (object metadata). */
  sha256?: string;
}

export type BodySource = (offset: number) => Promise<OpenedBody>;

export interface PullFileOptions {
  dir: string;
  path: string;
  size?: number;
  expectedSha256?: string;
  source: BodySource;
  /** Where the bytes come from, for messages (r2://bucket/key, a URL). */
  origin: string;
  onBytes: (n: number) => void;
  logger: Logger;
}

export interface PullFileResult {
  sha256: string;
  size: number;
  /** Bytes already on disk from an interrupted run. */
  resumedFrom: number;
  verified: boolean;
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

export async function pullFile(o: PullFileOptions): Promise<PullFileResult> {
  const final = path.join(o.dir, o.path);
  const partial = `${final}.partial`;
  await mkdir(path.dirname(final), { recursive: true });
  let resumedFrom = -1;
  let stated: string | undefined;

  // Each attempt hashes what is on disk, then appends from there: a reset costs only a re-read.
  const attempt = async (): Promise<{ sha256: string; size: number }> => {
    let have = await sizeOf(partial);
    if (o.size !== undefined && have > o.size) {
      await rm(partial, { force: true });
      have = 0;
    }
    const sha = createHash('sha256');
    if (have > 0) {
      for await (const chunk of createReadStream(partial, {
        highWaterMark: 2 ** 20,
      }) as AsyncIterable<Buffer>)
        sha.update(chunk);
    }
    if (resumedFrom < 0) resumedFrom = have;
    if (o.size !== undefined && have === o.size) return { sha256: sha.digest('hex'), size: have };
    const body = await o.source(have);
    stated ??= body.sha256;
    if (body.start !== have) {
      // The server ignored the Range: start over from its first byte.
      return appendBody(body, createHash('sha256'), 0, 'w');
    }
    return appendBody(body, sha, have, 'a');
  };
  /** Streams a body onto the partial file, hashing and counting what goes through. */
  const appendBody = async (
    body: OpenedBody,
    sha: Hash,
    start: number,
    flags: 'a' | 'w',
  ): Promise<{ sha256: string; size: number }> => {
    let total = start;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        sha.update(chunk);
        total += chunk.length;
        o.onBytes(chunk.length);
        cb(null, chunk);
      },
    });
    await pipeline(body.stream, tap, createWriteStream(partial, { flags }));
    return { sha256: sha.digest('hex'), size: total };
  };

  const got = await retry(attempt, {
    attempts: 5,
    baseDelayMs: 300,
    retryable: (err) =>
      !(err instanceof OpsError) &&
      (isRetryableS3Error(err) ||
        /premature|aborted|terminated|socket|ECONNRESET/i.test(errorMessage(err))),
    onRetry: ({ err, attempt: n }) =>
      o.logger.warn(`${o.path}: download attempt ${n} failed (${errorMessage(err)}); resuming`),
  });

  const expected = o.expectedSha256 ?? stated;
  const refuse = async (why: string): Promise<never> => {
    await rm(partial, { force: true });
    throw new OpsError(
      `${o.path} from ${o.origin} refused: ${why}; nothing was put in place (the partial file was deleted)`,
    );
  };
  if (o.size !== undefined && got.size !== o.size)
    await refuse(`${got.size} bytes instead of ${o.size}`);
  if (expected && expected !== got.sha256)
    await refuse(`sha256 ${got.sha256} does not match the expected ${expected}`);
  await rename(partial, final);
  return {
    sha256: got.sha256,
    size: got.size,
    resumedFrom: Math.max(0, resumedFrom),
    verified: expected !== undefined,
  };
}

/** Reads an object from the vault from `offset` on (HTTP Range). */
export function vaultSource(vault: Vault, rel: string): BodySource {
  const key = vaultKey(vault, rel);
  return async (offset) => {
    const out = await vault.client.send(
      new GetObjectCommand({
        Bucket: vault.bucket,
        Key: key,
        ...(offset > 0 ? { Range: `bytes=${offset}-` } : {}),
      }),
    );
    const range = /^bytes (\d+)-/.exec(out.ContentRange ?? '');
    const sha256 = out.Metadata?.[SHA256_META];
    return {
      stream: out.Body as Readable,
      start: range ? Number(range[1]) : 0,
      ...(sha256 ? { sha256 } : {}),
    };
  };
}

/** Reads a file from an http(s) URL (the HuggingFace fallback), with a token when given. */
export function urlSource(
  url: string,
  token?: string,
  fetchImpl: typeof fetch = fetch,
): BodySource {
  return async (offset) => {
    const headers: Record<string, string> = {};
    if (offset > 0) headers.range = `bytes=${offset}-`;
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetchImpl(url, { headers, redirect: 'follow' });
    if (!res.ok || !res.body) {
      throw new OpsError(
        `GET ${url} answered HTTP ${res.status}${res.status === 401 || res.status === 403 ? ' (a gated model needs hf-token)' : ''}`,
      );
    }
    const range =
      res.status === 206 ? /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '') : null;
    return {
      stream: Readable.fromWeb(res.body as WebReadableStream),
      start: range ? Number(range[1]) : 0,
    };
  };
}
