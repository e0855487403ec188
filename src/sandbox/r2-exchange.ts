// One request through the R2 emulator, in R2's order: it is counted and logged, a fault rule may
// take it, its SigV4 signature and headers are checked, bucket locks and the operation's own
// rules apply, and what passes goes on to s3rver (r2-proxy.ts). The operations s3rver lacks
// (ListParts, ListMultipartUploads, AbortMultipartUpload) are answered here.
import type http from 'node:http';
import { pipeline as pipelineCallback, type Readable } from 'node:stream';
import { noSuchUpload, listParts, listUploads, type UploadTarget } from './r2-lists.js';
import type { R2RequestRecord, RequestLog } from './r2-log.js';
import {
  corruptOffset,
  faultError,
  resetAfterBody,
  resetRequestAfter,
  resetResponseAfter,
  stall,
  type FaultBook,
  type FaultRule,
} from './r2-faults.js';
import {
  contentMd5,
  invalidDigest,
  PayloadCheck,
  payloadMismatch,
  signedPayloadHash,
  type ExpectedDigests,
} from './r2-payload.js';
import { forward, readSmallBody, type ReplyOptions, type Upstream } from './r2-proxy.js';
import {
  DELETE_OPERATIONS,
  LOCKED_OPERATIONS,
  S3ErrorReply,
  accessDenied,
  checkCompletedParts,
  checkRequestHeaders,
  classifyRequest,
  lockingRule,
  objectLocked,
  parseCompleteBody,
  parseDeleteBody,
  preconditionFailed,
  r2MultipartEtag,
  type LockRule,
  type S3Request,
} from './r2-rules.js';
import type { S3rverStore } from './s3rver-store.js';
import { verifySigV4, type SigV4Credentials } from './sigv4.js';

const COMPLETE_BODY_LIMIT = 4 * 2 ** 20;
/** A signed PutObject body up to this size is read whole before it is stored, so that a refused
 *  one leaves the old object untouched, as on R2 (a larger one has truncated it in s3rver). */
const PUT_BUFFER_LIMIT = 256 * 2 ** 20;

/** Bucket lock rules (every bucket), judged by the stored object's age. */
export class BucketLocks {
  private rules: LockRule[];

  constructor(
    rules: readonly LockRule[],
    private readonly store: S3rverStore,
  ) {
    this.rules = [...rules];
  }

  add(rule: LockRule): void {
    this.rules.push(rule);
  }

  clear(): void {
    this.rules = [];
  }

  /** Whether a rule holds the object now (a missing object is never held). */
  async held(bucket: string, key: string): Promise<boolean> {
    const modified =
      this.rules.length > 0 ? await this.store.objectModified(bucket, key) : undefined;
    return (
      modified !== undefined && lockingRule(this.rules, key, modified, new Date()) !== undefined
    );
  }
}

/** What every request of one emulator shares. */
export interface R2Shared {
  store: S3rverStore;
  upstream: Upstream;
  log: RequestLog;
  faults: FaultBook;
  locks: BucketLocks;
  /** The full key pair, and the one that is refused deletes. */
  keys: { owner: SigV4Credentials; noDelete: SigV4Credentials };
}

/** Serves one request; an unexpected error becomes a 500 (or a cut connection once the reply
 *  has started). */
export function serveR2Request(
  shared: R2Shared,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): void {
  // Async so that a throw while parsing the request (a bad %-escape) is answered like any other.
  const serve = async (): Promise<void> => new R2Exchange(shared, req, res).run();
  serve().catch((err: unknown) => {
    if (!res.headersSent) {
      const e = new S3ErrorReply(500, 'InternalError', `Emulator error: ${String(err)}`);
      res.writeHead(500, { 'content-type': 'application/xml' }).end(e.xml());
    } else {
      res.destroy();
    }
  });
}

/** A path-style S3 request target: /<bucket>/<key>?<query>. */
function parseTarget(req: http.IncomingMessage): S3Request {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const segments = (q < 0 ? url : url.slice(0, q)).split('/').slice(1);
  const keyRaw = segments.slice(1).join('/');
  return {
    method: req.method ?? 'GET',
    bucket: segments[0] ? decodeURIComponent(segments[0]) : undefined,
    key: keyRaw ? decodeURIComponent(keyRaw) : undefined,
    query: new URLSearchParams(q < 0 ? '' : url.slice(q + 1)),
    headers: req.headers,
  };
}

/** After a step: refused (the error to send), answered here, or on to s3rver. */
type Step = S3ErrorReply | 'done' | 'forward';

class R2Exchange {
  private readonly url: string;
  private readonly s3: S3Request;
  private readonly op: string;
  private readonly bucket: string;
  private readonly key: string;
  private readonly uploadId: string;
  private readonly length: number;
  private readonly record: R2RequestRecord;
  private readonly fault: FaultRule | undefined;
  private readonly replyOptions: ReplyOptions;
  /** The body's payload check, once there is one: a reply before the body was used must drain
   *  through it (a piped request stops while the check's buffer is full). */
  private check: PayloadCheck | undefined;
  /** Where the body is read from: the request, or its payload check. */
  private source: Readable;
  /** The body, when a rule had to read it whole. */
  private body: Buffer | undefined;

  constructor(
    private readonly shared: R2Shared,
    private readonly req: http.IncomingMessage,
    private readonly res: http.ServerResponse,
  ) {
    this.url = req.url ?? '/';
    this.s3 = parseTarget(req);
    const classified = classifyRequest(this.s3);
    this.op = classified.operation;
    this.record = shared.log.add(classified, this.s3, req.headers);
    res.on('finish', () => (this.record.status = res.statusCode));
    this.bucket = this.s3.bucket ?? '';
    this.key = this.s3.key ?? '';
    this.uploadId = this.s3.query.get('uploadId') ?? '';
    this.length = Number(req.headers['content-length'] ?? 0);
    this.fault = shared.faults.match(classified, this.s3);
    this.replyOptions = { loseReply: this.fault?.action === 'lose-reply' };
    if (this.op === 'GetObject')
      this.replyOptions.onReplyBytes = (n) =>
        (this.record.replyBytes = (this.record.replyBytes ?? 0) + n);
    this.source = req;
  }

  async run(): Promise<void> {
    if (this.fault && (await this.injectFault(this.fault)) === 'done') return;
    const refused = this.authorize() ?? (await this.lockRefusal());
    if (refused) return this.reply(refused);
    if (contentMd5(this.req.headers['content-md5']) === 'invalid')
      return this.reply(invalidDigest());
    this.startPayloadCheck();
    const step = await this.applyOperationRules();
    if (step instanceof S3ErrorReply) return this.reply(step);
    if (step === 'done') return;
    try {
      await forward(this.req, this.res, this.shared.upstream, {
        ...this.replyOptions,
        source: this.source,
        body: this.body,
      });
    } catch (err) {
      if (this.check?.mismatch && !this.res.headersSent)
        return this.reply(payloadMismatch(this.check));
      throw err;
    }
  }

  private reply(e: S3ErrorReply): void {
    this.record.status = e.status;
    const body = e.xml(this.url.split('?')[0]);
    this.res.writeHead(e.status, {
      'content-type': 'application/xml',
      'content-length': Buffer.byteLength(body),
    });
    this.res.end(body);
    (this.check ?? this.req).resume(); // drain whatever body the client still sends
  }

  private answerXml(xml: string | S3ErrorReply): Step {
    if (xml instanceof S3ErrorReply) return xml;
    this.res.writeHead(200, { 'content-type': 'application/xml' }).end(xml);
    return 'done';
  }

  /** Faults that act before the rules; corrupt and lose-reply act later, on the way. */
  private async injectFault(fault: FaultRule): Promise<'done' | 'forward'> {
    this.record.fault = fault.action;
    switch (fault.action) {
      case 'status':
        this.reply(faultError(fault));
        return 'done';
      case 'stall':
        await stall(this.req, fault.stallMs ?? 5000);
        return this.req.socket.destroyed ? 'done' : 'forward';
      case 'wrong-size':
        this.replyOptions.headers = (h) => ({
          ...h,
          'content-length': String(fault.size ?? Number(h['content-length'] ?? 0) - 1),
        });
        return 'forward';
      case 'reset':
        if (this.length > 0) {
          resetAfterBody(this.req, resetRequestAfter(fault, this.length));
          return 'done';
        }
        this.replyOptions.resetResponseAfter = resetResponseAfter(fault);
        return 'forward';
    }
    return 'forward';
  }

  /** The signature, the no-delete key's limits, and R2's header rules. */
  private authorize(): S3ErrorReply | undefined {
    const { owner, noDelete } = this.shared.keys;
    const auth = verifySigV4({ method: this.s3.method, url: this.url, headers: this.req.headers }, [
      owner,
      noDelete,
    ]);
    if (!auth.ok) return new S3ErrorReply(403, auth.code, auth.message);
    this.record.accessKeyId = auth.accessKeyId;
    if (auth.accessKeyId === noDelete.accessKeyId && DELETE_OPERATIONS.has(this.op))
      return accessDenied();
    return checkRequestHeaders(this.s3, this.op);
  }

  /** A held object is neither replaced nor deleted (DeleteObjects: per key, from its body). */
  private async lockRefusal(): Promise<S3ErrorReply | undefined> {
    if (!LOCKED_OPERATIONS.has(this.op) || this.op === 'DeleteObjects') return undefined;
    return (await this.shared.locks.held(this.bucket, this.key)) ? objectLocked() : undefined;
  }

  /** An upload body with a signed hash or a Content-MD5 (or a corrupt fault) is checked. */
  private startPayloadCheck(): void {
    const upload = this.op === 'PutObject' || this.op === 'UploadPart';
    if (!upload || !(this.length > 0)) return;
    const expected = this.expectedDigests();
    const at = (action: FaultRule['action']): number | undefined =>
      this.fault?.action === action ? corruptOffset(this.fault, this.length) : undefined;
    const corruptAt = at('corrupt');
    const corruptStoredAt = at('corrupt-stored');
    const none = expected.sha256 === undefined && expected.md5 === undefined;
    if (none && corruptAt === undefined && corruptStoredAt === undefined) return;
    const checking = new PayloadCheck(expected, corruptAt, corruptStoredAt);
    this.check = this.source = checking;
    checking.on('finish', () => (this.record.bodyBytes = checking.seen));
    pipelineCallback(this.req, checking, () => undefined);
  }

  private expectedDigests(): ExpectedDigests {
    const md5 = contentMd5(this.req.headers['content-md5']);
    return {
      sha256: signedPayloadHash(this.req.headers['x-amz-content-sha256']),
      md5: md5 === 'invalid' ? undefined : md5,
    };
  }

  private async applyOperationRules(): Promise<Step> {
    const { store } = this.shared;
    switch (this.op) {
      case 'PutObject':
        return this.putObject();
      case 'UploadPart':
        if (!(await store.upload(this.bucket, this.uploadId))) return noSuchUpload();
        // A cut-off resend must not leave the previous copy listed.
        await store.forgetPart(this.bucket, this.uploadId, Number(this.s3.query.get('partNumber')));
        return 'forward';
      case 'CompleteMultipartUpload':
        return this.completeMultipartUpload();
      case 'DeleteObjects':
        return this.deleteObjects();
      case 'ListParts':
        return this.answerXml(await listParts(store, this.upload(), this.s3.query));
      case 'ListMultipartUploads':
        return this.answerXml(await listUploads(store, this.bucket, this.s3.query));
      case 'AbortMultipartUpload':
        if (!(await store.abort(this.bucket, this.uploadId))) return noSuchUpload();
        this.res.writeHead(204).end();
        return 'done';
    }
    return 'forward';
  }

  private upload(): UploadTarget {
    return { bucket: this.bucket, key: this.key, uploadId: this.uploadId };
  }

  private async ifNoneMatchRefusal(): Promise<S3ErrorReply | undefined> {
    const exists =
      this.req.headers['if-none-match'] === '*' &&
      (await this.shared.store.objectExists(this.bucket, this.key));
    return exists ? preconditionFailed() : undefined;
  }

  private async putObject(): Promise<Step> {
    const refused = await this.ifNoneMatchRefusal();
    if (refused) return refused;
    const check = this.check;
    const { sha256, md5 } = this.expectedDigests();
    const checked = sha256 !== undefined || md5 !== undefined;
    if (check && checked && this.length <= PUT_BUFFER_LIMIT) {
      try {
        this.body = await readSmallBody(check, PUT_BUFFER_LIMIT);
      } catch (err) {
        if (check.mismatch) return payloadMismatch(check);
        throw err;
      }
    }
    return 'forward';
  }

  private async completeMultipartUpload(): Promise<Step> {
    const { store } = this.shared;
    if (!(await store.upload(this.bucket, this.uploadId))) return noSuchUpload();
    this.body = await readSmallBody(this.req, COMPLETE_BODY_LIMIT);
    const parts = parseCompleteBody(this.body.toString('utf8'));
    if (parts instanceof S3ErrorReply) return parts;
    const problem = checkCompletedParts(parts, await store.parts(this.bucket, this.uploadId));
    if (problem) return problem;
    const refused = await this.ifNoneMatchRefusal();
    if (refused) return refused;
    // A stale-part fault: the parts assembled are not the ones listed, and the ETag says so.
    if (this.fault?.action === 'stale-part') {
      const n = this.fault.part ?? 1;
      const md5 = await store.staleCopyOfPart(this.bucket, this.uploadId, n);
      for (const p of parts) if (p.partNumber === n) p.etag = md5;
    }
    // R2's multipart ETag (MD5 of the parts' binary MD5s, "-<count>"), where s3rver would
    // give the whole object's MD5: stored for HEAD and GET, and put in the reply.
    const etag = r2MultipartEtag(parts.map((p) => p.etag));
    this.replyOptions.stored = async (reply) => {
      await store.setObjectEtag(this.bucket, this.key, etag);
      return reply.replace(/<ETag>[^<]*<\/ETag>/, `<ETag>&quot;${etag}&quot;</ETag>`);
    };
    return 'forward';
  }

  private async deleteObjects(): Promise<Step> {
    this.body = await readSmallBody(this.req, COMPLETE_BODY_LIMIT);
    // Stricter than R2, which answers per key: one held key refuses the whole batch.
    for (const k of parseDeleteBody(this.body.toString('utf8')))
      if (await this.shared.locks.held(this.bucket, k)) return objectLocked();
    return 'forward';
  }
}
