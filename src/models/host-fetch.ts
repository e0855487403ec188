// pull-via host: the GPU host fetches each vault object from R2 itself, with curl and a presigned
// GET, instead of every byte going R2 -> runner -> SSH -> host. The runner only signs (SigV4 query
// auth, one URL per attempt, valid an hour) and checks what landed; the partial, the resume, the
// size and sha256 check and the rename stay those of every pull (partial.ts, pull.ts).
// A presigned URL is a bearer credential derived from the R2 secret: it is masked as soon as it
// exists, reaches curl on its stdin (`--config -`), never an argv on the host (`ps` shows argvs to
// every user there), and no message built here ever holds it.
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { OpsError } from '../lib/errors.js';
import type { R2Store } from '../lib/r2-store.js';
import { isRetryableStatus } from '../lib/retry.js';
import { bashText, shellQuote } from '../lib/shell.js';
import type { SshConnection } from '../lib/ssh.js';

/** How long one presigned GET stays valid; each attempt signs a new one. */
export const PRESIGN_EXPIRY_S = 3600;
/** curl's --connect-timeout: R2 answers a TCP/TLS handshake in well under a second. */
export const CURL_CONNECT_TIMEOUT_S = 30;

/** One GET for the host to run: the URL and the settings of the curl that runs it. */
export interface HostGet {
  url: string;
  /** Seconds without a byte before curl gives up (r2-timeout), as a stalled SDK request is cut. */
  stallSeconds: number;
}

/** What the host's curl reported for one attempt that ended well. */
export interface HostGetResult {
  /** The partial's size and sha256 after the attempt (hashed on the host while it was written). */
  size: number;
  sha256: string;
  /** Bytes this attempt added. */
  bytes: number;
}

/** A failure a later attempt may cure (a cut connection, a 5xx): the partial keeps what came. */
export class TransientHostGetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransientHostGetError';
  }
}

/**
 * Signs one GET of `key` (SigV4 in the query, no request sent). `mask` gets the URL and its
 * signature before anything else can see them.
 */
export async function presignGet(
  store: R2Store,
  key: string,
  mask: (secret: string) => void,
): Promise<string> {
  const url = await getSignedUrl(
    store.client,
    new GetObjectCommand({ Bucket: store.bucket, Key: key }),
    { expiresIn: PRESIGN_EXPIRY_S },
  );
  mask(url);
  const signature = new URL(url).searchParams.get('X-Amz-Signature');
  if (signature) mask(signature);
  return url;
}

/** curl's config text for one URL (read from stdin): a quoted `url = "..."` line. */
export function curlConfig(url: string): string {
  if (/[\r\n\0]/.test(url)) throw new OpsError('a presigned URL held a line break');
  return `url = "${url.replace(/[\\"]/g, (c) => `\\${c}`)}"\n`;
}

const MARKER = 'comfyume-curl';

/**
 * The host's side of one attempt: curl appends the body from `$2` on to the partial `$1` (a Range
 * when `$2` > 0) while sha256sum hashes the kept prefix and every new byte, so the partial is never
 * read a second time. pipefail: a failed curl or tee fails the whole command. curl's own retry is
 * off (our policy decides, resuming from what the partial holds); `--fail` turns an HTTP error into
 * exit 22, and the status and byte count go to stderr behind a marker.
 */
const FETCH_SCRIPT = bashText`set -o pipefail
p=$1 off=$2 proto=$3 connect=$4 stall=$5
range=()
if [ "$off" -gt 0 ]; then range=(--continue-at "$off"); fi
fetch() {
  curl --config - --silent --show-error --fail --proto "=$proto" --connect-timeout "$connect" \
    --speed-limit 1 --speed-time "$stall" "$\{range[@]}" \
    --write-out '%{stderr}comfyume-curl %{http_code} %{size_download}\n'
}
if [ "$off" -gt 0 ]; then
  { head -c "$off" -- "$p" && fetch | tee -a -- "$p"; } | sha256sum
else
  fetch | tee -- "$p" | sha256sum
fi`;

/** The remote command of one attempt; only paths and numbers in it, never the URL. */
export function fetchCommand(partial: string, offset: number, get: HostGet): string {
  const proto = new URL(get.url).protocol === 'http:' ? 'http' : 'https';
  const args = [partial, offset, proto, CURL_CONNECT_TIMEOUT_S, Math.max(1, get.stallSeconds)];
  return `bash -c ${shellQuote(FETCH_SCRIPT)} host-fetch ${args.map((a) => shellQuote(String(a))).join(' ')}`;
}

/** The command that answers whether the host has curl (exit 0) or not (exit 1). */
export const CURL_PROBE = 'command -v curl >/dev/null 2>&1';

/** Fails with what to do when the host has no curl on its PATH. */
export async function probeCurl(conn: SshConnection): Promise<void> {
  const { code } = await conn.run(CURL_PROBE, { allowedExitCodes: [0, 1, 127] });
  if (code !== 0)
    throw new OpsError(
      `pull-via: host needs curl on ${conn.host}, and there is none on its PATH: install curl there ` +
        '(apt-get install -y curl) or use pull-via: runner',
    );
}

/** curl exit codes of a transfer cut or refused on the way, worth another attempt (resumed). */
const TRANSIENT_CURL = new Set([5, 6, 7, 16, 18, 28, 35, 52, 55, 56, 92]);

const CURL_WORDS: Record<number, string> = {
  5: 'could not resolve the proxy',
  6: 'could not resolve the host',
  7: 'could not connect',
  16: 'HTTP/2 error',
  18: 'the connection closed before the whole body came',
  23: 'writing the body failed',
  28: 'no byte came within the timeout (r2-timeout)',
  33: 'R2 ignored the byte range (cannot resume)',
  35: 'TLS handshake failed',
  52: 'empty reply',
  55: 'sending the request failed',
  56: 'the connection failed while receiving',
  60: 'the TLS certificate was not trusted',
  92: 'HTTP/2 stream error',
};

/** Anything URL-like in text from the host goes before it can reach a message. */
export function redactUrls(text: string): string {
  return text
    .replace(/[a-z][a-z0-9+.-]*:\/\/[^\s"']+/gi, '<url>')
    .replace(/X-Amz-[A-Za-z-]+=[^\s&"']*/g, 'X-Amz-<redacted>');
}

/**
 * What one attempt's exit code, stdout (sha256sum) and stderr (curl's marker) mean: the result,
 * or an error naming the file and the HTTP status. A failure worth another attempt is a
 * TransientHostGetError; anything else is an OpsError (not retried).
 */
export function readAttempt(
  what: { path: string; host: string; offset: number },
  exit: number,
  stdout: string,
  stderr: string,
): HostGetResult {
  const marker = [...stderr.matchAll(new RegExp(`^${MARKER} (\\d{3}) (\\d+)`, 'gm'))].at(-1);
  const status = Number(marker?.[1] ?? 0);
  const bytes = Number(marker?.[2] ?? 0);
  const said = redactUrls(
    stderr
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith(MARKER))
      .join('; '),
  ).slice(-400);
  const on = `on ${what.host}`;
  if (exit === 0) {
    const sha256 = /^([0-9a-f]{64})\b/.exec(stdout.trim())?.[1];
    if (!sha256 || !marker)
      throw new OpsError(
        `${what.path}: the download ${on} printed no sha256 or no curl report (${JSON.stringify(stdout.trim().slice(0, 200))})`,
      );
    return { size: what.offset + bytes, sha256, bytes };
  }
  if (exit === 22 && status >= 400) {
    const why =
      status === 403
        ? ' (Forbidden: the presigned URL expired or its signature was refused, or the key may not read this object)'
        : status === 404
          ? ' (Not Found: the object is gone from the bucket)'
          : '';
    const message = `${what.path}: R2 answered HTTP ${status} to the host's GET ${on}${why}`;
    if (isRetryableStatus(status)) throw new TransientHostGetError(message);
    throw new OpsError(message);
  }
  const words = CURL_WORDS[exit] ?? (exit === 127 ? 'curl was not found' : undefined);
  const message =
    `${what.path}: the download ${on} failed${words ? `: ${words}` : ''} ` +
    `(exit ${exit}${status ? `, HTTP ${status}` : ''})${said ? `: ${said}` : ''}`;
  if (TRANSIENT_CURL.has(exit)) throw new TransientHostGetError(message);
  throw new OpsError(message);
}
