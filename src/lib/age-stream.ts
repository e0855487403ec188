// age encryption of a Node stream. X25519 recipients (age1...) are encrypted natively (OpenSSL's
// X25519, HKDF and ChaCha20-Poly1305 through node:crypto, ~10× the pure-JS speed); other
// recipient types (post-quantum hybrid, tags) go through the age-encryption package (typage),
// which is loaded only for them (about 6 MiB of RSS a nightly run with X25519 keys does not pay).
// Either way the output is a standard age v1 file: `age -d -i key` decrypts it (tests check).
import {
  createCipheriv,
  createHmac,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
} from 'node:crypto';
import { pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { InputError } from './errors.js';

const EXPECTED = 'age public keys (age1...), one per line';
const CHUNK = 64 * 1024;

const loadAge = () => import('age-encryption');

/**
 * Validates recipients: X25519 keys by their bech32 checksum and length, any other kind by
 * age-encryption's own parser. A pasted secret key is never echoed.
 */
export async function parseRecipients(input: string, values: string[]): Promise<string[]> {
  if (values.length === 0) throw new InputError(input, '', EXPECTED);
  for (const value of values) {
    if (/^AGE-SECRET-KEY-/i.test(value)) {
      throw new InputError(
        input,
        '<redacted>',
        `${EXPECTED}: this is a secret identity, give its public key (age-keygen -y)`,
      );
    }
    // bech32 is one case; age refuses upper and mixed case, so a key that age would not take
    // never reaches a backup.
    if (/^age1/i.test(value) && value !== value.toLowerCase()) {
      throw new InputError(
        input,
        value,
        `${EXPECTED}: age1 recipients are all lower case (age refuses upper and mixed case)`,
      );
    }
    const key = x25519RecipientKey(value);
    if (key) {
      if (isLowOrderX25519(key)) {
        throw new InputError(
          input,
          value,
          `${EXPECTED}: this is a low-order X25519 point, which any reader could decrypt (age refuses it); give the key age-keygen -y prints`,
        );
      }
      continue;
    }
    try {
      new (await loadAge()).Encrypter().addRecipient(value);
    } catch (err) {
      throw new InputError(input, value, `${EXPECTED} (${(err as Error).message})`);
    }
  }
  return [...new Set(values)];
}

/**
 * age identities (secret keys) from an input: one per line, `#` comment and blank lines skipped,
 * so a whole key file can be pasted. Returns each with its public recipient. Never echoes a key.
 */
export async function parseIdentities(
  input: string,
  text: string,
): Promise<{ identity: string; recipient: string }[]> {
  const expected = 'age secret keys (AGE-SECRET-KEY-1...), one per line, as age-keygen writes them';
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length === 0) throw new InputError(input, '', expected);
  const { identityToRecipient } = await loadAge();
  const out: { identity: string; recipient: string }[] = [];
  for (const [i, identity] of lines.entries()) {
    if (/^age1/i.test(identity))
      throw new InputError(input, identity, `${expected}: this is a public key (a recipient)`);
    try {
      if (!/^AGE-SECRET-KEY-/.test(identity)) throw new Error('not an age secret key');
      out.push({ identity, recipient: await identityToRecipient(identity) });
    } catch {
      throw new InputError(input, `<line ${i + 1} redacted>`, expected);
    }
  }
  return out;
}

const BECH32 = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';

function bech32Polymod(values: number[]): number {
  const gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= gen[i] ?? 0;
  }
  return chk >>> 0;
}

/**
 * The 32-byte X25519 public key of an `age1...` recipient, or undefined for other types. Lower
 * case only, as age takes it (parseRecipients refuses upper and mixed case with its own error).
 */
export function x25519RecipientKey(recipient: string): Buffer | undefined {
  if (!/^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$/.test(recipient)) return undefined;
  const data = [...recipient.slice(4)].map((c) => BECH32.indexOf(c));
  const hrp = [...'age'].map((c) => c.charCodeAt(0));
  const expanded = [...hrp.map((c) => c >> 5), 0, ...hrp.map((c) => c & 31)];
  if (bech32Polymod([...expanded, ...data]) !== 1) return undefined;
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  for (const v of data.slice(0, -6)) {
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  return out.length === 32 ? Buffer.from(out) : undefined;
}

const x25519PublicKey = (raw: Buffer) =>
  createPublicKey({
    key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') },
    format: 'jwk',
  });

/**
 * A small-order point (the all-zero key, 1, the two points of order 8, p-1, and their
 * non-canonical encodings): X25519 with it is all zeros whatever the scalar. OpenSSL refuses to
 * derive from it; a build that does not gives zeros. Either way it is refused.
 */
export function isLowOrderX25519(raw: Buffer): boolean {
  const publicKey = x25519PublicKey(raw);
  const { privateKey } = generateKeyPairSync('x25519');
  try {
    return diffieHellman({ privateKey, publicKey }).every((b) => b === 0);
  } catch {
    return true;
  }
}

const b64 = (data: Buffer) => data.toString('base64').replace(/=+$/, '');
const hkdf = (ikm: Buffer, salt: Buffer, info: string) =>
  Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));

function sealChaCha(key: Buffer, nonce: Buffer, plaintext: Buffer): Buffer {
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** A stanza body: base64 without padding, wrapped at 64 columns, last line always shorter. */
function wrapBody(body: Buffer): string {
  const text = b64(body);
  const lines: string[] = [];
  for (let i = 0; i <= text.length; i += 64) lines.push(text.slice(i, i + 64));
  return lines.join('\n');
}

function x25519Stanza(fileKey: Buffer, recipient: Buffer): string {
  const rawPublic = (key: ReturnType<typeof createPublicKey>) =>
    Buffer.from((key.export({ format: 'jwk' }) as { x: string }).x, 'base64url');
  const ephemeral = generateKeyPairSync('x25519');
  const share = rawPublic(ephemeral.publicKey);
  const shared = diffieHellman({
    privateKey: ephemeral.privateKey,
    publicKey: x25519PublicKey(recipient),
  });
  if (shared.every((b) => b === 0)) throw new Error('age recipient is a low-order X25519 point');
  const wrapKey = hkdf(shared, Buffer.concat([share, recipient]), 'age-encryption.org/v1/X25519');
  const body = sealChaCha(wrapKey, Buffer.alloc(12), fileKey);
  return `-> X25519 ${b64(share)}\n${wrapBody(body)}\n`;
}

/** age's STREAM: 64 KiB chunks, nonce = 11-byte counter + last-chunk flag. */
class StreamEncryptor extends Transform {
  private readonly buffer = Buffer.allocUnsafe(CHUNK);
  private filled = 0;
  private counter = 0n;

  constructor(
    private readonly key: Buffer,
    prefix: Buffer,
  ) {
    super();
    this.push(prefix); // header and payload nonce come first
  }

  /** Pushes one sealed chunk as ciphertext then tag (not joined: one 64 KiB copy less each). */
  private seal(plaintext: Buffer, last: boolean): void {
    const nonce = Buffer.alloc(12);
    nonce.writeBigUInt64BE(this.counter & 0xffffffffffffffffn, 3);
    nonce[11] = last ? 1 : 0;
    this.counter++;
    const cipher = createCipheriv('chacha20-poly1305', this.key, nonce, { authTagLength: 16 });
    this.push(cipher.update(plaintext));
    cipher.final();
    this.push(cipher.getAuthTag());
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let data = chunk;
    while (data.length > 0) {
      // A full buffer is sealed as non-final only once more data arrives.
      if (this.filled === CHUNK) {
        this.seal(this.buffer, false);
        this.filled = 0;
      }
      const n = Math.min(CHUNK - this.filled, data.length);
      data.copy(this.buffer, this.filled, 0, n);
      this.filled += n;
      data = data.subarray(n);
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    this.seal(this.buffer.subarray(0, this.filled), true);
    done();
  }
}

/** Native age encryption to X25519 recipients: header, payload nonce, STREAM. */
export function encryptX25519Stream(recipients: Buffer[], source: Readable): Readable {
  const fileKey = randomBytes(16);
  let header = 'age-encryption.org/v1\n';
  for (const r of recipients) header += x25519Stanza(fileKey, r);
  header += '---';
  const mac = createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
    .update(header)
    .digest();
  const nonce = randomBytes(16);
  const prefix = Buffer.concat([Buffer.from(`${header} ${b64(mac)}\n`), nonce]);
  const encryptor = new StreamEncryptor(hkdf(fileKey, nonce, 'payload'), prefix);
  pipeline(source, encryptor, () => {});
  return encryptor;
}

/** Encrypts `source` to every recipient; errors of the source surface on the returned stream. */
export async function encryptStream(recipients: string[], source: Readable): Promise<Readable> {
  const keys = recipients.map(x25519RecipientKey);
  if (keys.every((k): k is Buffer => k !== undefined)) return encryptX25519Stream(keys, source);
  const encrypter = new (await loadAge()).Encrypter();
  for (const r of recipients) encrypter.addRecipient(r);
  const web = Readable.toWeb(source) as unknown as ReadableStream<Uint8Array>;
  const encrypted = await encrypter.encrypt(web);
  return Readable.fromWeb(encrypted as unknown as WebReadableStream<Uint8Array>);
}
