// Downloads one model to `<path>.partial` beside its final place (a local directory, or the GPU
// host over SSH), resuming with an HTTP Range from what an earlier run left, and renaming it into
// place only when the size and sha256 of the bytes where they landed agree. A bad download is
// deleted, never renamed.
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { OpsError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { R2_RETRY, isRetryableS3Error } from '../lib/r2-store.js';
import { networkFailureReason, retry } from '../lib/retry.js';
import { vaultKey, type Vault } from './bucket.js';
import { TransientHostGetError, presignGet } from './host-fetch.js';
import type { PartialFile, SshPartialFile } from './partial.js';
import { SHA256_META } from './push.js';

export interface OpenedBody {
  stream: Readable;
  /** The offset the server actually started at (0 when it ignored the Range). */
  start: number;
  /** A sha256 the source states for the whole file (object metadata). */
  sha256?: string;
}

export type BodySource = (offset: number) => Promise<OpenedBody>;

/**
 * One attempt's way of adding bytes to the partial from `offset` on (the partial holds exactly
 * `offset` bytes). Returns a sha256 the source states for the whole file, when it states one.
 */
export type Fill = (offset: number) => Promise<{ sha256?: string }>;

export interface PullFileOptions {
  /** Where the bytes go until they are verified (LocalModelHost/SshModelHost.partial(path)). */
  partial: PartialFile;
  path: string;
  size?: number;
  expectedSha256?: string;
  /** Through this process (streamFill), or fetched by the GPU host itself (SshPartialFile.fetch). */
  fill: Fill;
  /** Where the bytes come from, for messages (r2://bucket/key, a URL). */
  origin: string;
  logger: Logger;
}

export interface PullFileResult {
  sha256: string;
  size: number;
  /** Bytes already in the partial from an interrupted run. */
  resumedFrom: number;
  verified: boolean;
}

/** Passes a body through, reporting each chunk (errors and backpressure go through unchanged). */
async function* counted(stream: Readable, onBytes: (n: number) => void): AsyncGenerator<Buffer> {
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    onBytes(chunk.length);
    yield chunk;
  }
}

/** The bytes come through this process: a body from `source`, streamed onto the partial. */
export function streamFill(
  partial: PartialFile,
  source: BodySource,
  onBytes: (n: number) => void,
): Fill {
  return async (offset) => {
    const body = await source(offset);
    // A server that ignored the Range sends the whole file: start over from its first byte.
    await partial.write(Readable.from(counted(body.stream, onBytes)), body.start !== offset);
    return body.sha256 ? { sha256: body.sha256 } : {};
  };
}

export async function pullFile(o: PullFileOptions): Promise<PullFileResult> {
  const partial = o.partial;
  let resumedFrom = -1;
  let stated: string | undefined;

  // Each attempt appends from what the partial holds: a reset costs only what was in flight.
  const attempt = async (): Promise<void> => {
    let have = await partial.size();
    if (o.size !== undefined && have > o.size) {
      await partial.discard();
      have = 0;
    }
    if (resumedFrom < 0) resumedFrom = have;
    if (o.size !== undefined && have === o.size) return;
    stated ??= (await o.fill(have)).sha256;
  };

  // R2's policy for the vault and the URL alike: each attempt resumes where the last one stopped.
  await retry(attempt, {
    ...R2_RETRY,
    retryable: (err) =>
      err instanceof TransientHostGetError ||
      (!(err instanceof OpsError) &&
        (isRetryableS3Error(err) ||
          /premature|aborted|terminated|socket|ECONNRESET/i.test(errorMessage(err)))),
    onRetry: ({ err, attempt: n }) =>
      o.logger.warn(`${o.path}: download attempt ${n} failed (${errorMessage(err)}); resuming`),
  });

  // Measured and hashed where the bytes landed: what is checked is what gets renamed.
  const got = await partial.digest();
  const expected = o.expectedSha256 ?? stated;
  const refuse = async (why: string): Promise<never> => {
    await partial.discard();
    throw new OpsError(
      `${o.path} from ${o.origin} refused: ${why}; nothing was put in place (the partial file was deleted)`,
    );
  };
  if (o.size !== undefined && got.size !== o.size)
    await refuse(`${got.size} bytes instead of ${o.size}`);
  if (expected && expected !== got.sha256)
    await refuse(`sha256 ${got.sha256} does not match the expected ${expected}`);
  await partial.commit();
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
    const { body, start, metadata } = await vault.store.openRead(key, offset);
    const sha256 = metadata[SHA256_META];
    return { stream: body, start, ...(sha256 ? { sha256 } : {}) };
  };
}

export interface HostFillOptions {
  /** Registers each presigned URL (and its signature) as a secret before it is used. */
  mask: (secret: string) => void;
  /** curl gives up after this many seconds without a byte (r2-timeout). */
  stallSeconds: number;
  /** Ask the object's metadata for its sha256 (one HEAD) when nothing else states one. */
  wantStatedSha256: boolean;
  onBytes: (n: number) => void;
  /** Each GET the host sends on our signature (for the run's request count). */
  onGet: () => void;
}

/**
 * pull-via host: the GPU host GETs the object from the vault itself, on a URL signed anew for
 * each attempt (an hour's validity never runs out under a retry), from `offset` on.
 */
export function hostVaultFill(
  vault: Vault,
  rel: string,
  partial: SshPartialFile,
  o: HostFillOptions,
): Fill {
  const key = vaultKey(vault, rel);
  let asked = !o.wantStatedSha256;
  return async (offset) => {
    let sha256: string | undefined;
    if (!asked) {
      asked = true;
      sha256 = (await vault.store.head(key))?.metadata[SHA256_META];
    }
    const url = await presignGet(vault.store, key, o.mask);
    o.onGet();
    o.onBytes(await partial.fetch({ url, stallSeconds: o.stallSeconds }, offset, rel));
    return sha256 ? { sha256 } : {};
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
    // No answer at all: say from where and why (undici's "fetch failed" keeps both in its cause);
    // a plain Error keeps it retryable when the cause is transient.
    const res = await fetchImpl(url, { headers, redirect: 'follow' }).catch((err: unknown) => {
      throw new Error(`GET ${url} got no answer: ${networkFailureReason(err)}`, { cause: err });
    });
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
