// The HTTP side of the Verda emulator: a loopback server per host (the management API, and the
// inference host standing in for https://containers.datacrunch.io). Every request is logged with
// its emulated time, its reply is dated in emulated time (so clients measuring on the API clock
// see it), and it meets the fault table before the host's router sees it.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { text } from 'node:stream/consumers';
import type { OAuthTokens } from './verda-auth.js';
import type { EmulatedClock } from './verda-clock.js';
import { afterHandlingReply, injectedReply, type FaultTable } from './verda-faults.js';
import { ApiError, invalid, notFound } from './verda-wire.js';
import { boundPort } from './bound-port.js';

export type Host = 'api' | 'inference';

export interface Reply {
  status: number;
  /** Undefined for a reply without a body (202, 204). */
  body?: unknown;
  /** How the body is written; JSON unless said otherwise (binary: a Buffer, as it is). */
  kind?: 'json' | 'text' | 'html' | 'binary';
  headers?: Record<string, string>;
}

/** What a host's router gets of a request. */
export interface HostRequest {
  method: string;
  /** After /v1 (api) or the full path (inference), without the query. */
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
  rawBody: string;
  contentType: string | undefined;
}

export interface LoggedRequest {
  host: Host;
  method: string;
  /** Path after /v1 (api) or the full path (inference), without the query. */
  path: string;
  query: string;
  status: number;
  /** Emulated time the request was handled (epoch ms). */
  at: number;
}

const writeMethods = new Set(['POST', 'PATCH', 'PUT', 'DELETE']);

export class RequestLog {
  private entries: LoggedRequest[] = [];

  add(entry: LoggedRequest): void {
    this.entries.push(entry);
  }

  all(): LoggedRequest[] {
    return [...this.entries];
  }

  /** Write requests to the management API (POST/PATCH/PUT/DELETE), the token endpoint excluded. */
  writes(): LoggedRequest[] {
    return this.entries.filter(
      (r) => r.host === 'api' && writeMethods.has(r.method) && r.path !== '/oauth2/token',
    );
  }

  clear(): void {
    this.entries = [];
  }
}

export interface HostHandlerOptions {
  host: Host;
  clock: EmulatedClock;
  /** Emulated ms added before each request is handled (0: none). */
  tickPerRequestMs: number;
  faults: FaultTable;
  log: RequestLog;
  /** Token faults spoil the caller's access token before the request is handled. */
  tokens: OAuthTokens;
  route: (request: HostRequest) => Reply;
}

/** The request listener of one host. */
export function hostHandler(opts: HostHandlerOptions) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (opts.tickPerRequestMs) opts.clock.advance(opts.tickPerRequestMs);
    const at = opts.clock.now();
    const url = new URL(req.url ?? '/', 'http://emulator');
    const method = req.method ?? 'GET';
    const rawBody = await text(req);
    let path = url.pathname;
    const logAs = (status: number) =>
      opts.log.add({
        host: opts.host,
        method,
        path,
        query: url.search,
        status,
        at,
      });
    const reply = (r: Reply) => {
      logAs(r.status);
      writeReply(res, r, at);
    };
    try {
      path = routePath(opts.host, url.pathname);
      const fault = opts.faults.match(opts.host, method, faultPath(opts.host, path));
      if (fault?.kind === 'reset') {
        logAs(0);
        req.socket.destroy();
        return;
      }
      if (fault?.kind === 'http') return reply(injectedReply(fault));
      if (fault?.kind === 'revoke-token' || fault?.kind === 'expire-token')
        opts.tokens.spoil(fault.kind, req.headers.authorization, at);
      const result = opts.route({
        method,
        path,
        query: url.searchParams,
        authorization: req.headers.authorization,
        rawBody,
        contentType: req.headers['content-type'],
      });
      // A reply lost after the work was done matters on the API (a create that still creates);
      // the inference host answers as it would.
      const lost = fault?.kind === 'http-after-handling' && opts.host === 'api';
      reply(lost ? afterHandlingReply(fault.status) : result);
    } catch (err) {
      reply(errorReply(err));
    }
  };
}

/** The management API lives under /v1; the inference host routes the whole path. */
function routePath(host: Host, pathname: string): string {
  if (host === 'inference') return pathname;
  if (!pathname.startsWith('/v1/')) throw notFound(`no route ${pathname}`);
  return pathname.slice('/v1'.length);
}

/** Inference faults match the path the container sees: after /<deployment>. */
function faultPath(host: Host, path: string): string {
  return host === 'api' ? path : `/${path.split('/').slice(2).join('/')}`;
}

function errorReply(err: unknown): Reply {
  if (err instanceof ApiError)
    return {
      status: err.status,
      body: { code: err.code, message: err.message },
    };
  const message = err instanceof Error ? err.message : String(err);
  return { status: 500, body: { code: 'server_error', message } };
}

const contentTypes = {
  json: 'application/json',
  text: 'text/plain; charset=utf-8',
  html: 'text/html; charset=utf-8',
} as const;

function writeReply(res: ServerResponse, reply: Reply, at: number): void {
  res.setHeader('Date', new Date(at).toUTCString());
  for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value);
  if (reply.body === undefined) {
    res.writeHead(reply.status).end();
    return;
  }
  const kind = reply.kind ?? 'json';
  if (kind === 'binary') {
    res.writeHead(reply.status).end(reply.body as Buffer);
    return;
  }
  const body = kind === 'json' ? JSON.stringify(reply.body) : String(reply.body);
  res.writeHead(reply.status, { 'Content-Type': contentTypes[kind] }).end(body);
}

/** JSON bodies, and form-encoded ones (GO's fallback for the token request on staging). */
export function parseBody(rawBody: string, contentType: string | undefined): unknown {
  if (rawBody.trim() === '') return undefined;
  if ((contentType ?? '').includes('application/x-www-form-urlencoded')) {
    return Object.fromEntries(new URLSearchParams(rawBody));
  }
  try {
    const parsed: unknown = JSON.parse(rawBody);
    return parsed;
  } catch {
    throw invalid('the request body is not valid JSON');
  }
}

/** A server on 127.0.0.1 at a free port; requests are handled once a listener is attached. */
export function listenOnLoopback(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(boundPort(server)));
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
