// Fault injection for the R2 emulator: the rules tests add, which request each one fires on, and
// the faults themselves (an S3 error, a stall, a cut connection). Corrupted bodies are flipped by
// the payload check (r2-payload.ts); lost replies are cut by the proxy (r2-proxy.ts).
import type http from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { S3ErrorReply, type Classified, type S3Request } from './r2-rules.js';

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
   *  lose-reply: the request is served in full, then the connection is cut before the reply.
   *  Faults inside R2 itself, after its checks (what only the client's proof can catch):
   *  corrupt-stored: an UploadPart or PutObject body passes the check against its signed hash,
   *  then one byte of what is stored is flipped (the ETag answered is the MD5 of the bytes
   *  stored); stale-part: a CompleteMultipartUpload assembles a stale copy of part `part`
   *  (same size, one byte different), its ETag computed from the parts assembled;
   *  wrong-size: a HeadObject answers Content-Length `size` (default one byte less). */
  action:
    | 'status'
    | 'reset'
    | 'stall'
    | 'corrupt'
    | 'lose-reply'
    | 'corrupt-stored'
    | 'stale-part'
    | 'wrong-size';
  status?: number;
  /** For status: the S3 error code (default SlowDown for 503, else InternalError). */
  code?: string;
  stallMs?: number;
  /** For reset: bytes let through before the cut; default half the body, at most 64 KiB. */
  resetAfterBytes?: number;
  /** For corrupt and corrupt-stored: the offset of the flipped byte; default the middle of the body. */
  corruptAtByte?: number;
  /** For stale-part: the part number whose stale copy is assembled; default 1. */
  part?: number;
  /** For wrong-size: the Content-Length a HeadObject answers. */
  size?: number;
}

interface ActiveFault {
  rule: FaultRule;
  seen: number;
  fired: number;
}

/** The fault rules in force, each with how often it has matched and fired. */
export class FaultBook {
  private active: ActiveFault[] = [];

  add(rule: FaultRule): void {
    this.active.push({ rule, seen: 0, fired: 0 });
  }

  clear(): void {
    this.active = [];
  }

  /** Each rule counts every request it matches (also those another rule faulted); the first
   *  rule due fires. */
  match(c: Classified, req: S3Request): FaultRule | undefined {
    let firing: FaultRule | undefined;
    for (const f of this.active) {
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
  }
}

/** The S3 error a `status` fault answers with. */
export function faultError(rule: FaultRule): S3ErrorReply {
  const status = rule.status ?? 500;
  if (rule.code) return new S3ErrorReply(status, rule.code, `Injected ${rule.code}`);
  if (status === 503) return new S3ErrorReply(503, 'SlowDown', 'Please reduce your request rate.');
  return new S3ErrorReply(
    status,
    'InternalError',
    'We encountered an internal error. Please try again.',
  );
}

/** Holds a request like a hung server; a client that gives up (or is killed) ends the hold. */
export async function stall(req: http.IncomingMessage, ms: number): Promise<void> {
  const gone = new AbortController();
  const onClose = (): void => gone.abort();
  req.socket.once('close', onClose);
  await delay(ms, undefined, { signal: gone.signal }).catch(() => undefined);
  req.socket.off('close', onClose);
}

/** Bytes of a request body let through before a `reset` fault cuts the connection. */
export const resetRequestAfter = (rule: FaultRule, length: number): number =>
  rule.resetAfterBytes ?? Math.min(64 * 1024, Math.floor(length / 2));

/** Bytes of a response body sent before a `reset` fault on a body-less request cuts it. */
export const resetResponseAfter = (rule: FaultRule): number => rule.resetAfterBytes ?? 64 * 1024;

/** The offset of the byte a `corrupt` fault flips. */
export const corruptOffset = (rule: FaultRule, length: number): number =>
  rule.corruptAtByte ?? Math.floor(length / 2);

/** Reads the request body and cuts the connection after `after` bytes (or at its end). */
export function resetAfterBody(req: http.IncomingMessage, after: number): void {
  let seen = 0;
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen >= after) req.socket.destroy();
  });
  req.on('end', () => req.socket.destroy());
}
