// The R2 emulator's forwarding to s3rver: a request that passed the rules goes on without its
// Authorization (already verified), and s3rver's reply comes back, rewritten or cut when a rule
// or a fault asks for it. Also the small-body readers the rules need.
import http from 'node:http';
import type { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';

/** s3rver's port on the loopback and the keep-alive agent that reaches it. */
export interface Upstream {
  port: number;
  agent: http.Agent;
}

/** What happens to s3rver's reply on the way back. */
export interface ReplyOptions {
  /** Cut the response after this many body bytes. */
  resetResponseAfter?: number;
  /** Serve the request, then cut the connection instead of replying. */
  loseReply?: boolean;
  /** After a 200 from s3rver: bookkeeping, and the reply body to send instead of its own. */
  stored?: (reply: string) => Promise<string>;
  /** The reply's headers as sent instead of s3rver's (a fault that misreports). */
  headers?: (h: http.IncomingHttpHeaders) => http.IncomingHttpHeaders;
  /** Told each reply body chunk's size as it goes to the client (what a GET really served). */
  onReplyBytes?: (n: number) => void;
}

export interface ForwardOptions extends ReplyOptions {
  /** Where the body comes from: the request, or its payload check. */
  source: Readable;
  /** The body, when it was read whole already (then `source` is spent). */
  body?: Buffer | undefined;
}

/** Passes a request on to s3rver and its reply back to the client. */
export async function forward(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  upstream: Upstream,
  opts: ForwardOptions,
): Promise<void> {
  const up = await sendUpstream(req, res, upstream, opts);
  if (opts.stored && up.statusCode === 200) {
    const text = await opts.stored(await readAll(up));
    if (opts.loseReply) return void req.socket.destroy();
    const headers = { ...up.headers, 'content-length': String(Buffer.byteLength(text)) };
    delete headers['transfer-encoding'];
    res.writeHead(200, headers).end(text);
    return;
  }
  if (opts.loseReply) {
    await finished(up.resume()).catch(() => undefined);
    return void req.socket.destroy();
  }
  res.writeHead(up.statusCode ?? 502, opts.headers ? opts.headers(up.headers) : up.headers);
  const count = opts.onReplyBytes ?? (() => {});
  if (opts.resetResponseAfter === undefined) {
    up.on('data', (chunk: Buffer) => count(chunk.length));
    await pipeline(up, res).catch(() => res.destroy());
    return;
  }
  relayThenCut(up, res, opts.resetResponseAfter, count);
}

/** A presigned URL's query authentication: verified here already, and s3rver would check it
 *  again against its own keys (a 403), so it is left out of what s3rver gets. */
const PRESIGN_PARAMS =
  /^X-Amz-(Algorithm|Content-Sha256|Credential|Date|Expires|Signature|SignedHeaders|Security-Token)$/i;

function upstreamPath(url: string): string {
  const q = url.indexOf('?');
  if (q < 0 || !/[?&]X-Amz-Signature=/i.test(url)) return url;
  const kept = url
    .slice(q + 1)
    .split('&')
    .filter((pair) => !PRESIGN_PARAMS.test(decodeURIComponent(pair.split('=')[0] ?? '')));
  return kept.length > 0 ? `${url.slice(0, q)}?${kept.join('&')}` : url.slice(0, q);
}

function sendUpstream(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  upstream: Upstream,
  { source, body }: ForwardOptions,
): Promise<http.IncomingMessage> {
  const headers = { ...req.headers };
  delete headers.authorization;
  if (body) headers['content-length'] = String(body.length);
  // The client's 100-continue was answered here; s3rver gets the body straight away.
  delete headers.expect;
  const request = http.request({
    host: '127.0.0.1',
    port: upstream.port,
    method: req.method,
    path: upstreamPath(req.url ?? '/'),
    headers,
    agent: upstream.agent,
  });
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    request.on('response', resolve);
    request.on('error', reject);
  });
  // A client that hangs up early takes the upstream request down with it.
  res.on('close', () => {
    if (!res.writableFinished) request.destroy();
  });
  if (body) request.end(body);
  else pipeline(source, request).catch(() => request.destroy());
  return response;
}

/** Relays the first `limit` bytes of a reply body, then cuts both connections. */
function relayThenCut(
  up: http.IncomingMessage,
  res: http.ServerResponse,
  limit: number,
  count: (n: number) => void,
): void {
  let sent = 0;
  up.on('data', (chunk: Buffer) => {
    const room = limit - sent;
    sent += chunk.length;
    if (room > 0) {
      const part = room >= chunk.length ? chunk : chunk.subarray(0, room);
      count(part.length);
      res.write(part);
    }
    if (sent >= limit) {
      up.destroy();
      res.destroy();
    }
  });
  up.on('end', () => res.destroy());
}

/** A stream's chunk as bytes (streams without an encoding set give Buffers). */
function chunkBytes(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk);
  throw new TypeError(`expected a byte stream, got a chunk of type ${typeof chunk}`);
}

/** Reads a body whole; over `limit` bytes it throws. */
export async function readSmallBody(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const bytes = chunkBytes(chunk);
    size += bytes.length;
    if (size > limit) throw new Error(`request body over ${limit} bytes`);
    chunks.push(bytes);
  }
  return Buffer.concat(chunks);
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunkBytes(chunk));
  return Buffer.concat(chunks).toString('utf8');
}
