// R2 checks a request body against the SHA-256 its signature carries (x-amz-content-sha256) and
// against its Content-MD5, and refuses the request when either differs, so nothing damaged in
// transit is stored. This transform does that on the way to s3rver: it hashes the body and holds
// the last chunk back until the hashes are known, so on a mismatch s3rver never receives a
// complete body and stores nothing. It can also flip one byte first, the fault a bad link or NIC
// would cause, or after the check, a fault inside the store that no signature catches.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { S3ErrorReply } from './r2-rules.js';

/** A SigV4 payload hash that names the body (not UNSIGNED-PAYLOAD or a STREAMING-* scheme);
 *  `value` is the x-amz-content-sha256 header as Node parsed it. */
export function signedPayloadHash(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && /^[0-9a-f]{64}$/.test(value) ? value : undefined;
}

/** A Content-MD5 header: base64 of 16 bytes, or undefined when absent; 'invalid' otherwise. */
export function contentMd5(value: string | string[] | undefined): string | 'invalid' | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]{22}==$/.test(value)) return 'invalid';
  return Buffer.from(value, 'base64').toString('hex');
}

export const invalidDigest = (): S3ErrorReply =>
  new S3ErrorReply(400, 'InvalidDigest', 'The Content-MD5 you specified is not valid.');

/** The reply to a body that did not match its signed SHA-256 or its Content-MD5. */
export const payloadMismatch = (check: PayloadCheck): S3ErrorReply =>
  check.mismatch === 'md5'
    ? new S3ErrorReply(
        400,
        'BadDigest',
        'The Content-MD5 you specified did not match what we received.',
      )
    : new S3ErrorReply(
        400,
        'XAmzContentSHA256Mismatch',
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
      );

/** What the body must hash to: its signed SHA-256 and its Content-MD5 (hex), either or both. */
export interface ExpectedDigests {
  sha256: string | undefined;
  md5: string | undefined;
}

export class PayloadCheck extends Transform {
  private readonly sha256: Hash | undefined;
  private readonly md5: Hash | undefined;
  private held: Buffer | undefined;
  /** Body bytes read so far. */
  seen = 0;
  /** Set when the body did not match its signed hash or its Content-MD5. */
  mismatch: 'sha256' | 'md5' | undefined;

  /** expected: the digests to check (none: the body passes on unchecked). */
  constructor(
    private readonly expected: ExpectedDigests,
    private readonly corruptAt?: number,
    /** A byte flipped after the hash saw it: what is stored differs, the check passes. */
    private readonly corruptStoredAt?: number,
  ) {
    super();
    if (expected.sha256) this.sha256 = createHash('sha256');
    if (expected.md5) this.md5 = createHash('md5');
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let data = this.flip(chunk, this.corruptAt);
    this.sha256?.update(data);
    this.md5?.update(data);
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
    if (this.sha256 && this.sha256.digest('hex') !== this.expected.sha256) this.mismatch = 'sha256';
    else if (this.md5 && this.md5.digest('hex') !== this.expected.md5) this.mismatch = 'md5';
    if (this.mismatch) {
      done(new Error(`payload ${this.mismatch} mismatch`));
      return;
    }
    done(null, this.held);
  }
}
