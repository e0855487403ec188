// R2 checks a request body against the SHA-256 its signature carries (x-amz-content-sha256) and
// refuses the request when they differ, so nothing damaged in transit is stored. This transform
// does that on the way to s3rver: it hashes the body and holds the last chunk back until the hash
// is known, so on a mismatch s3rver never receives a complete body and stores nothing. It can also
// flip one byte first, the fault a bad link or NIC would cause, or after the check, a fault inside
// the store that no signature catches.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { S3ErrorReply } from './r2-rules.js';

/** A SigV4 payload hash that names the body (not UNSIGNED-PAYLOAD or a STREAMING-* scheme);
 *  `value` is the x-amz-content-sha256 header as Node parsed it. */
export function signedPayloadHash(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && /^[0-9a-f]{64}$/.test(value) ? value : undefined;
}

export const payloadMismatch = (): S3ErrorReply =>
  new S3ErrorReply(
    400,
    'XAmzContentSHA256Mismatch',
    "The provided 'x-amz-content-sha256' header does not match what was computed.",
  );

export class PayloadCheck extends Transform {
  private readonly hash: Hash | undefined;
  private held: Buffer | undefined;
  /** Body bytes read so far. */
  seen = 0;
  /** Set when the body did not match its signed hash. */
  mismatch = false;

  /** expected: the signed hash, or undefined to pass the body on unchecked. */
  constructor(
    private readonly expected: string | undefined,
    private readonly corruptAt?: number,
    /** A byte flipped after the hash saw it: what is stored differs, the check passes. */
    private readonly corruptStoredAt?: number,
  ) {
    super();
    if (expected) this.hash = createHash('sha256');
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let data = this.flip(chunk, this.corruptAt);
    this.hash?.update(data);
    data = this.flip(data, this.corruptStoredAt);
    this.seen += data.length;
    const previous = this.held;
    this.held = data;
    done(null, previous);
  }

  /** The chunk with the byte at body offset `at` flipped, when it holds that byte. */
  private flip(chunk: Buffer, at: number | undefined): Buffer {
    if (at === undefined || at < this.seen || at >= this.seen + chunk.length) return chunk;
    const data = Buffer.from(chunk);
    data[at - this.seen] = (data[at - this.seen] ?? 0) ^ 0xff;
    return data;
  }

  override _flush(done: TransformCallback): void {
    if (this.hash && this.hash.digest('hex') !== this.expected) {
      this.mismatch = true;
      done(new Error('payload hash mismatch'));
      return;
    }
    done(null, this.held);
  }
}
