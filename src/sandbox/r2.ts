// The R2 emulator: s3rver 3.7.1 in-process (the storage) behind a loopback proxy of our own that
// enforces what R2 enforces and s3rver does not (testing.md §2), verifies SigV4 credentials,
// counts Class A / Class B operations, answers ListParts / ListMultipartUploads / Abort (s3rver
// has none of them), and injects faults by rule. Upload bodies are checked against their signed
// SHA-256 on the way (r2-payload.ts). Bodies are streamed through; a CompleteMultipartUpload body
// (a small XML) and a signed PutObject body up to 256 MiB (so that a refused one leaves the old
// object untouched, as on R2; a larger refused one has already truncated it in s3rver) are read
// whole.
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pipeline as pipelineCallback, type Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import S3rver from 's3rver';
import {
  DELETE_OPERATIONS,
  LOCKED_OPERATIONS,
  R2_LIST_PAGE,
  S3ErrorReply,
  accessDenied,
  checkCompletedParts,
  checkRequestHeaders,
  classifyRequest,
  escapeXml,
  lockingRule,
  objectLocked,
  parseCompleteBody,
  parseDeleteBody,
  preconditionFailed,
  r2MultipartEtag,
  type Classified,
  type LockRule,
  type S3Request,
} from './r2-rules.js';
import { S3rverStore } from './r2-store.js';
import { PayloadCheck, payloadMismatch, signedPayloadHash } from './r2-payload.js';
import { verifySigV4 } from './sigv4.js';

export interface FaultRule {
  /** S3 operation name as counted (PutObject, UploadPart, GetObject, ListObjectsV2, ...). */
  operation?: string;
  method?: string;
  keyPattern?: RegExp;
  /** Fire from the n-th matching request on (1-based); default 1. */
  nth?: number;
  /** How many times to fire; default 1 (Infinity for always). */
  times?: number;
  /** status: an S3 XML error (500 InternalError, 503 SlowDown); reset: the connection is cut
   *  after part of the request body (or, for requests without a body, of the response body);
   *  stall: the request is held stallMs before it is served; corrupt: one byte of the request
   *  body is flipped on the way in, as a bad link would (R2 then refuses a signed body);
   *  lose-reply: the request is served in full, then the connection is cut before the reply. */
  action: 'status' | 'reset' | 'stall' | 'corrupt' | 'lose-reply';
  status?: number;
  /** For status: the S3 error code (default SlowDown for 503, else InternalError). */
  code?: string;
  stallMs?: number;
  /** For reset: bytes let through before the cut; default half the body, at most 64 KiB. */
  resetAfterBytes?: number;
  /** For corrupt: the offset of the flipped byte; default the middle of the body. */
  corruptAtByte?: number;
}

export interface R2Counts {
  classA: number;
  classB: number;
  byOperation: Record<string, number>;
}

export interface R2RequestRecord {
  operation: string;
  method: string;
  bucket?: string;
  key?: string;
  partNumber?: number;
  /** The Range header of a GetObject (resumed downloads). */
  range?: string;
  status: number;
  fault?: FaultRule['action'];
  /** The Expect header, when the client asked for `100-continue` before sending the body. */
  expect?: string;
  /** Upload body bytes read through the payload check (signed or faulted uploads). */
  bodyBytes?: number;
  /** The access key id of a correctly signed request. */
  accessKeyId?: string;
}

export interface R2KeyPair {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface R2Emulator {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /**
   * A second key pair that may read, list and write but is refused DeleteObject, DeleteObjects
   * and AbortMultipartUpload (403 AccessDenied). It stands for "a token without delete rights" in
   * tests: real R2 tokens cannot be scoped like that (Object Read & Write includes deletes);
   * there, bucket lock rules (addLockRule) are what keep a leaked token from deleting.
   */
  noDeleteKey: R2KeyPair;
  /** s3rver's storage directory (tests may flip bytes in stored objects). */
  dir: string;
  createBucket(name: string): Promise<void>;
  /** Every request received (rejected and faulted ones included), by class and by operation. */
  counts(): R2Counts;
  requests(): R2RequestRecord[];
  resetCounts(): void;
  addFault(rule: FaultRule): void;
  clearFaults(): void;
  /** Bucket lock rules (every bucket): a delete or overwrite of a held object is refused. */
  addLockRule(rule: LockRule): void;
  clearLockRules(): void;
  /** Backdates an object (lock rules go by its age). */
  setObjectModified(bucket: string, key: string, when: Date): Promise<void>;
  /** Where s3rver keeps an object's bytes. */
  objectPath(bucket: string, key: string): string;
  /** Backdates a multipart upload (for stale-upload cleanup). */
  setUploadInitiated(bucket: string, uploadId: string, when: Date): Promise<void>;
  stop(): Promise<void>;
}

export interface R2EmulatorOptions {
  buckets?: string[];
  dir?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Bucket lock rules from the start (more with addLockRule). */
  lockRules?: LockRule[];
}

const COMPLETE_BODY_LIMIT = 4 * 2 ** 20;
const PUT_BUFFER_LIMIT = 256 * 2 ** 20;

/** s3rver encrypts list continuation tokens with DES, which OpenSSL 3 only has in its legacy provider. */
function assertLegacyOpenssl(): void {
  try {
    createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
  } catch {
    throw new Error(
      'The R2 emulator needs Node started with --openssl-legacy-provider (s3rver uses DES for list ' +
        'continuation tokens; without it every truncated list page is a 500). Run through ' +
        '`npm test` / `npm run bench`, or set NODE_OPTIONS=--openssl-legacy-provider.',
    );
  }
}

interface ActiveFault {
  rule: FaultRule;
  seen: number;
  fired: number;
}

export async function startR2Emulator(opts: R2EmulatorOptions = {}): Promise<R2Emulator> {
  assertLegacyOpenssl();
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'r2-emulator-')));
  const accessKeyId = opts.accessKeyId ?? `emu${randomBytes(8).toString('hex')}`;
  const secretAccessKey = opts.secretAccessKey ?? randomBytes(20).toString('hex');
  const noDeleteKey: R2KeyPair = {
    accessKeyId: `emunodelete${randomBytes(6).toString('hex')}`,
    secretAccessKey: randomBytes(20).toString('hex'),
  };
  let lockRules: LockRule[] = [...(opts.lockRules ?? [])];
  const store = new S3rverStore(dir);

  const s3rver = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    vhostBuckets: false,
    configureBuckets: (opts.buckets ?? []).map((name) => ({ name })),
  });
  const upstreamAddress = (await s3rver.run()) as AddressInfo;
  const upstreamAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  let counts: R2Counts = { classA: 0, classB: 0, byOperation: {} };
  let log: R2RequestRecord[] = [];
  let faults: ActiveFault[] = [];

  const count = (c: Classified): void => {
    if (c.opClass === 'A') counts.classA++;
    if (c.opClass === 'B') counts.classB++;
    counts.byOperation[c.operation] = (counts.byOperation[c.operation] ?? 0) + 1;
  };

  // Each rule counts every request it matches (also those another rule faulted); the first
  // rule due fires.
  const matchFault = (c: Classified, req: S3Request): FaultRule | undefined => {
    let firing: FaultRule | undefined;
    for (const f of faults) {
      const r = f.rule;
      if (r.operation && r.operation !== c.operation) continue;
      if (r.method && r.method.toUpperCase() !== req.method) continue;
      if (r.keyPattern && !r.keyPattern.test(req.key ?? '')) continue;
      f.seen++;
      if (!firing && f.seen >= (r.nth ?? 1) && f.fired < (r.times ?? 1)) {
        f.fired++;
        firing = r;
      }
    }
    return firing;
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const segments = (q < 0 ? url : url.slice(0, q)).split('/').slice(1);
    const bucket = segments[0] ? decodeURIComponent(segments[0]) : undefined;
    const keyRaw = segments.slice(1).join('/');
    const s3req: S3Request = {
      method: req.method ?? 'GET',
      bucket,
      key: keyRaw ? decodeURIComponent(keyRaw) : undefined,
      query: new URLSearchParams(q < 0 ? '' : url.slice(q + 1)),
      headers: req.headers,
    };
    const c = classifyRequest(s3req);
    count(c);
    const record: R2RequestRecord = { operation: c.operation, method: s3req.method, status: 0 };
    if (bucket) record.bucket = bucket;
    if (s3req.key) record.key = s3req.key;
    if (c.operation === 'UploadPart') record.partNumber = Number(s3req.query.get('partNumber'));
    if (c.operation === 'GetObject' && typeof req.headers.range === 'string')
      record.range = req.headers.range;
    if (typeof req.headers.expect === 'string') record.expect = req.headers.expect;
    log.push(record);
    res.on('finish', () => (record.status = res.statusCode));

    // The body's payload check, once there is one: a reply before the body was used must drain
    // through it (a piped request stops while the check's buffer is full).
    let check: PayloadCheck | undefined;
    const reply = (e: S3ErrorReply): void => {
      record.status = e.status;
      const body = e.xml(url.split('?')[0]);
      res.writeHead(e.status, {
        'content-type': 'application/xml',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
      (check ?? req).resume(); // drain whatever body the client still sends
    };

    const fault = matchFault(c, s3req);
    const forwarding: ForwardOptions = { loseReply: fault?.action === 'lose-reply' };
    if (fault) {
      record.fault = fault.action;
      if (fault.action === 'status') {
        const status = fault.status ?? 500;
        if (fault.code)
          return reply(new S3ErrorReply(status, fault.code, `Injected ${fault.code}`));
        return reply(
          status === 503
            ? new S3ErrorReply(503, 'SlowDown', 'Please reduce your request rate.')
            : new S3ErrorReply(
                status,
                'InternalError',
                'We encountered an internal error. Please try again.',
              ),
        );
      }
      if (fault.action === 'stall') {
        // Held like a hung server; a client that gives up (or is killed) ends the hold.
        const gone = new AbortController();
        const onClose = (): void => gone.abort();
        req.socket.once('close', onClose);
        await delay(fault.stallMs ?? 5000, undefined, { signal: gone.signal }).catch(
          () => undefined,
        );
        req.socket.off('close', onClose);
        if (req.socket.destroyed) return;
      }
      if (fault.action === 'reset') {
        const length = Number(req.headers['content-length'] ?? 0);
        if (length > 0)
          return resetAfterBody(
            req,
            fault.resetAfterBytes ?? Math.min(64 * 1024, Math.floor(length / 2)),
          );
        forwarding.resetResponseAfter = fault.resetAfterBytes ?? 64 * 1024;
      }
    }

    const auth = verifySigV4({ method: s3req.method, url, headers: req.headers }, [
      { accessKeyId, secretAccessKey },
      noDeleteKey,
    ]);
    if (!auth.ok) return reply(new S3ErrorReply(403, auth.code, auth.message));
    record.accessKeyId = auth.accessKeyId;
    if (auth.accessKeyId === noDeleteKey.accessKeyId && DELETE_OPERATIONS.has(c.operation))
      return reply(accessDenied());
    const headerProblem = checkRequestHeaders(s3req, c.operation);
    if (headerProblem) return reply(headerProblem);

    const b = bucket ?? '';
    const key = s3req.key ?? '';
    const locked = async (k: string): Promise<boolean> => {
      const modified = lockRules.length > 0 ? await store.objectModified(b, k) : undefined;
      return (
        modified !== undefined && lockingRule(lockRules, k, modified, new Date()) !== undefined
      );
    };
    if (
      LOCKED_OPERATIONS.has(c.operation) &&
      c.operation !== 'DeleteObjects' &&
      (await locked(key))
    )
      return reply(objectLocked());
    const uploadId = s3req.query.get('uploadId') ?? '';
    let body: Buffer | undefined;
    let source: Readable = req;
    const length = Number(req.headers['content-length'] ?? 0);
    const expected = signedPayloadHash(req.headers['x-amz-content-sha256'] as string | undefined);
    const corruptAt =
      fault?.action === 'corrupt' ? (fault.corruptAtByte ?? Math.floor(length / 2)) : undefined;
    if ((c.operation === 'PutObject' || c.operation === 'UploadPart') && length > 0) {
      if (expected !== undefined || corruptAt !== undefined) {
        const checking = new PayloadCheck(expected, corruptAt);
        check = source = checking;
        checking.on('finish', () => (record.bodyBytes = checking.seen));
        pipelineCallback(req, checking, () => undefined);
      }
    }
    switch (c.operation) {
      case 'PutObject':
        if (req.headers['if-none-match'] === '*' && (await store.objectExists(b, key)))
          return reply(preconditionFailed());
        if (check && expected !== undefined && length <= PUT_BUFFER_LIMIT) {
          try {
            body = await readSmallBody(check, PUT_BUFFER_LIMIT);
          } catch (err) {
            if (check.mismatch) return reply(payloadMismatch());
            throw err;
          }
        }
        break;
      case 'UploadPart':
        if (!(await store.upload(b, uploadId))) return reply(noSuchUpload());
        await store.forgetPart(b, uploadId, Number(s3req.query.get('partNumber')));
        break;
      case 'CompleteMultipartUpload': {
        if (!(await store.upload(b, uploadId))) return reply(noSuchUpload());
        body = await readSmallBody(req, COMPLETE_BODY_LIMIT);
        const parts = parseCompleteBody(body.toString('utf8'));
        if (parts instanceof S3ErrorReply) return reply(parts);
        const problem = checkCompletedParts(parts, await store.parts(b, uploadId));
        if (problem) return reply(problem);
        if (req.headers['if-none-match'] === '*' && (await store.objectExists(b, key)))
          return reply(preconditionFailed());
        // R2's multipart ETag (MD5 of the parts' binary MD5s, "-<count>"), where s3rver would
        // give the whole object's MD5: stored for HEAD and GET, and put in the reply.
        const etag = r2MultipartEtag(parts.map((p) => p.etag));
        forwarding.stored = async (reply) => {
          await store.setObjectEtag(b, key, etag);
          return reply.replace(/<ETag>[^<]*<\/ETag>/, `<ETag>&quot;${etag}&quot;</ETag>`);
        };
        break;
      }
      case 'DeleteObjects': {
        body = await readSmallBody(req, COMPLETE_BODY_LIMIT);
        // Stricter than R2, which answers per key: one held key refuses the whole batch.
        for (const k of parseDeleteBody(body.toString('utf8')))
          if (await locked(k)) return reply(objectLocked());
        break;
      }
      case 'ListParts':
        return listParts(res, s3req, store, b, key, uploadId, reply);
      case 'ListMultipartUploads':
        return listUploads(res, s3req, store, b);
      case 'AbortMultipartUpload':
        if (!(await store.abort(b, uploadId))) return reply(noSuchUpload());
        res.writeHead(204).end();
        return;
    }
    try {
      await forward(req, source, res, upstreamAddress.port, upstreamAgent, body, forwarding);
    } catch (err) {
      if (check?.mismatch && !res.headersSent) return reply(payloadMismatch());
      throw err;
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) {
        const e = new S3ErrorReply(500, 'InternalError', `Emulator error: ${String(err)}`);
        res.writeHead(500, { 'content-type': 'application/xml' }).end(e.xml());
      } else {
        res.destroy();
      }
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    endpoint,
    accessKeyId,
    secretAccessKey,
    noDeleteKey,
    dir,
    async createBucket(name) {
      await s3rver.store.putBucket(name);
    },
    counts: () => ({ ...counts, byOperation: { ...counts.byOperation } }),
    requests: () => [...log],
    resetCounts() {
      counts = { classA: 0, classB: 0, byOperation: {} };
      log = [];
    },
    addFault(rule) {
      faults.push({ rule, seen: 0, fired: 0 });
    },
    clearFaults() {
      faults = [];
    },
    addLockRule(rule) {
      lockRules.push(rule);
    },
    clearLockRules() {
      lockRules = [];
    },
    setObjectModified: (bucket, key, when) => store.setObjectModified(bucket, key, when),
    objectPath: (bucket, key) => store.objectPath(bucket, key),
    setUploadInitiated: (bucket, uploadId, when) =>
      store.setUploadInitiated(bucket, uploadId, when),
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      upstreamAgent.destroy();
      s3rver.httpServer?.closeAllConnections();
      await s3rver.close();
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

const noSuchUpload = (): S3ErrorReply =>
  new S3ErrorReply(
    404,
    'NoSuchUpload',
    'The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
  );

function resetAfterBody(req: http.IncomingMessage, after: number): void {
  let seen = 0;
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen >= after) req.socket.destroy();
  });
  req.on('end', () => req.socket.destroy());
}

async function readSmallBody(req: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new Error(`request body over ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

interface ForwardOptions {
  /** Cut the response after this many body bytes. */
  resetResponseAfter?: number;
  /** Serve the request, then cut the connection instead of replying. */
  loseReply?: boolean;
  /** After a 200 from s3rver: bookkeeping, and the reply body to send instead of its own. */
  stored?: (reply: string) => Promise<string>;
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Passes a request on to s3rver without its Authorization (already verified here); the body
 *  comes from `source` (the request, or its payload check), or is `body` when read already. */
async function forward(
  req: http.IncomingMessage,
  source: Readable,
  res: http.ServerResponse,
  port: number,
  agent: http.Agent,
  body: Buffer | undefined,
  { resetResponseAfter, loseReply, stored }: ForwardOptions,
): Promise<void> {
  const headers = { ...req.headers };
  delete headers.authorization;
  if (body) headers['content-length'] = String(body.length);
  delete headers.expect;
  const upstream = http.request({
    host: '127.0.0.1',
    port,
    method: req.method,
    path: req.url,
    headers,
    agent,
  });
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    upstream.on('response', resolve);
    upstream.on('error', reject);
  });
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  if (body) upstream.end(body);
  else pipeline(source, upstream).catch(() => upstream.destroy());
  const up = await response;
  if (stored && up.statusCode === 200) {
    const text = await stored(await readAll(up));
    if (loseReply) return void req.socket.destroy();
    const headers = { ...up.headers, 'content-length': String(Buffer.byteLength(text)) };
    delete headers['transfer-encoding'];
    res.writeHead(200, headers).end(text);
    return;
  }
  if (loseReply) {
    await finished(up.resume()).catch(() => undefined);
    return void req.socket.destroy();
  }
  res.writeHead(up.statusCode ?? 502, up.headers);
  if (resetResponseAfter === undefined) {
    await pipeline(up, res).catch(() => res.destroy());
    return;
  }
  let sent = 0;
  up.on('data', (chunk: Buffer) => {
    const room = resetResponseAfter - sent;
    sent += chunk.length;
    if (room > 0) res.write(room >= chunk.length ? chunk : chunk.subarray(0, room));
    if (sent >= resetResponseAfter) {
      up.destroy();
      res.destroy();
    }
  });
  up.on('end', () => res.destroy());
}

const iso = (d: Date): string => d.toISOString();

async function listParts(
  res: http.ServerResponse,
  req: S3Request,
  store: S3rverStore,
  bucket: string,
  key: string,
  uploadId: string,
  reply: (e: S3ErrorReply) => void,
): Promise<void> {
  const upload = await store.upload(bucket, uploadId);
  if (!upload || upload.key !== key) return reply(noSuchUpload());
  const marker = Number(req.query.get('part-number-marker') ?? 0);
  const max = Math.min(R2_LIST_PAGE, Number(req.query.get('max-parts') ?? R2_LIST_PAGE));
  const all = [...(await store.parts(bucket, uploadId)).values()]
    .filter((p) => p.partNumber > marker)
    .sort((a, b) => a.partNumber - b.partNumber);
  const page = all.slice(0, max);
  const truncated = all.length > page.length;
  const xml =
    '<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
    `<Bucket>${escapeXml(bucket)}</Bucket><Key>${escapeXml(key)}</Key><UploadId>${uploadId}</UploadId>` +
    `<PartNumberMarker>${marker}</PartNumberMarker>` +
    `<NextPartNumberMarker>${page.at(-1)?.partNumber ?? marker}</NextPartNumberMarker>` +
    `<MaxParts>${max}</MaxParts><IsTruncated>${truncated}</IsTruncated>` +
    page
      .map(
        (p) =>
          `<Part><PartNumber>${p.partNumber}</PartNumber><LastModified>${iso(p.lastModified)}</LastModified>` +
          `<ETag>"${p.etag}"</ETag><Size>${p.size}</Size></Part>`,
      )
      .join('') +
    '</ListPartsResult>';
  res.writeHead(200, { 'content-type': 'application/xml' }).end(xml);
}

async function listUploads(
  res: http.ServerResponse,
  req: S3Request,
  store: S3rverStore,
  bucket: string,
): Promise<void> {
  const prefix = req.query.get('prefix') ?? '';
  const keyMarker = req.query.get('key-marker') ?? '';
  const max = Math.min(R2_LIST_PAGE, Number(req.query.get('max-uploads') ?? R2_LIST_PAGE));
  const all = (await store.uploads(bucket)).filter(
    (u) => u.key.startsWith(prefix) && u.key > keyMarker,
  );
  const page = all.slice(0, max);
  const truncated = all.length > page.length;
  const last = page.at(-1);
  const xml =
    '<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
    `<Bucket>${escapeXml(bucket)}</Bucket><KeyMarker>${escapeXml(keyMarker)}</KeyMarker><UploadIdMarker></UploadIdMarker>` +
    `<NextKeyMarker>${escapeXml(truncated && last ? last.key : '')}</NextKeyMarker>` +
    `<NextUploadIdMarker>${truncated && last ? last.uploadId : ''}</NextUploadIdMarker>` +
    `<Prefix>${escapeXml(prefix)}</Prefix><MaxUploads>${max}</MaxUploads><IsTruncated>${truncated}</IsTruncated>` +
    page
      .map(
        (u) =>
          `<Upload><Key>${escapeXml(u.key)}</Key><UploadId>${u.uploadId}</UploadId>` +
          `<Initiated>${iso(u.initiated)}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`,
      )
      .join('') +
    '</ListMultipartUploadsResult>';
  res.writeHead(200, { 'content-type': 'application/xml' }).end(xml);
}
