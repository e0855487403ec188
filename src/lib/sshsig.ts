// OpenSSH signatures (PROTOCOL.sshsig), Ed25519 only: what `ssh-keygen -Y sign` writes and
// `ssh-keygen -Y verify` checks, so a person can check a backup by hand on any Ubuntu host.
// Verification needs node:crypto only (the drill bundles no SSH library); signing takes a signer
// that the caller makes from its private key (backup-verda: ssh2's key parser).
import { createHash, createPublicKey, verify } from 'node:crypto';
import { ConfigError, OpsError } from './errors.js';

const MAGIC = Buffer.from('SSHSIG');
const HASH = 'sha512';
const KEY_TYPE = 'ssh-ed25519';
const ARMOR_BEGIN = '-----BEGIN SSH SIGNATURE-----';
const ARMOR_END = '-----END SSH SIGNATURE-----';

/** Whoever may sign: the public key blob (ssh-ed25519, as in a .pub file) and a signing function. */
export interface SshSigner {
  publicKey: Buffer;
  sign(data: Buffer): Buffer;
}

/** A key of an allowed signers file (ssh-keygen's ALLOWED SIGNERS format). */
export interface AllowedSigner {
  principals: string[];
  namespaces: string[] | undefined;
  publicKey: Buffer;
  /** `ssh-ed25519 AAAA…`, for messages. */
  text: string;
}

const sshString = (data: Buffer | string) => {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
};

/** The bytes the key signs: the preamble, namespace, hash name and the message's hash. */
function signedData(message: Buffer, namespace: string): Buffer {
  const digest = createHash(HASH).update(message).digest();
  return Buffer.concat([
    MAGIC,
    sshString(namespace),
    sshString(''),
    sshString(HASH),
    sshString(digest),
  ]);
}

/** Signs `message` in `namespace`; returns the armored signature, as ssh-keygen -Y sign writes it. */
export function signSshsig(message: Buffer, namespace: string, signer: SshSigner): string {
  const signature = signer.sign(signedData(message, namespace));
  const version = Buffer.alloc(4);
  version.writeUInt32BE(1);
  const blob = Buffer.concat([
    MAGIC,
    version,
    sshString(signer.publicKey),
    sshString(namespace),
    sshString(''),
    sshString(HASH),
    sshString(Buffer.concat([sshString(KEY_TYPE), sshString(signature)])),
  ]);
  const lines = blob.toString('base64').match(/.{1,70}/g) ?? [];
  return `${ARMOR_BEGIN}\n${lines.join('\n')}\n${ARMOR_END}\n`;
}

/** Reads SSH wire strings from a buffer; any overrun is a malformed signature. */
class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  bytes(n: number): Buffer {
    if (this.at + n > this.buf.length) throw new Error('truncated');
    const out = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  uint32(): number {
    return this.bytes(4).readUInt32BE(0);
  }
  string(): Buffer {
    return this.bytes(this.uint32());
  }
  done(): boolean {
    return this.at === this.buf.length;
  }
}

interface ParsedSignature {
  publicKey: Buffer;
  namespace: string;
  hash: string;
  signature: Buffer;
}

function parseArmored(text: string): ParsedSignature {
  const trimmed = text.trim();
  if (!trimmed.startsWith(ARMOR_BEGIN) || !trimmed.endsWith(ARMOR_END)) throw new Error('armor');
  const body = trimmed.slice(ARMOR_BEGIN.length, -ARMOR_END.length).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw new Error('base64');
  const r = new Reader(Buffer.from(body, 'base64'));
  if (!r.bytes(6).equals(MAGIC) || r.uint32() !== 1) throw new Error('preamble');
  const publicKey = r.string();
  const namespace = r.string().toString();
  r.string(); // reserved
  const hash = r.string().toString();
  const sig = new Reader(r.string());
  if (!r.done()) throw new Error('trailing data');
  const type = sig.string().toString();
  const signature = sig.string();
  if (type !== KEY_TYPE || signature.length !== 64 || !sig.done()) throw new Error('signature');
  return { publicKey, namespace, hash, signature };
}

/** The raw 32-byte key of an ssh-ed25519 public key blob, or undefined. */
function ed25519Raw(blob: Buffer): Buffer | undefined {
  try {
    const r = new Reader(blob);
    const type = r.string().toString();
    const raw = r.string();
    return type === KEY_TYPE && raw.length === 32 && r.done() ? raw : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks an armored signature of `message`: well formed, in `namespace`, made by one of the
 * allowed keys for `principal`, and valid. Throws an OpsError naming `what` otherwise.
 */
export function verifySshsig(opts: {
  message: Buffer;
  signature: string;
  namespace: string;
  principal: string;
  allowed: AllowedSigner[];
  what: string;
}): AllowedSigner {
  let sig: ParsedSignature;
  try {
    sig = parseArmored(opts.signature);
  } catch {
    throw new OpsError(`${opts.what}: the signature is not an SSH signature (ssh-keygen -Y sign)`);
  }
  if (sig.namespace !== opts.namespace || (sig.hash !== HASH && sig.hash !== 'sha256')) {
    throw new OpsError(
      `${opts.what}: signed for namespace ${JSON.stringify(sig.namespace)} (${sig.hash}), expected ${opts.namespace}`,
    );
  }
  const signer = opts.allowed.find(
    (a) =>
      a.publicKey.equals(sig.publicKey) &&
      a.principals.some((p) => p === opts.principal || p === '*') &&
      (a.namespaces === undefined || a.namespaces.includes(opts.namespace)),
  );
  const raw = ed25519Raw(sig.publicKey);
  if (!signer || !raw) {
    throw new OpsError(
      `${opts.what}: signed by a key that is not an allowed signer (${sshKeyText(sig.publicKey)})`,
    );
  }
  const digest = createHash(sig.hash).update(opts.message).digest();
  const data = Buffer.concat([
    MAGIC,
    sshString(opts.namespace),
    sshString(''),
    sshString(sig.hash),
    sshString(digest),
  ]);
  const key = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
    format: 'jwk',
  });
  if (!verify(null, data, key, sig.signature))
    throw new OpsError(`${opts.what}: the signature does not match (changed after signing)`);
  return signer;
}

/** `ssh-ed25519 AAAA…` of a key blob, shortened for messages. */
function sshKeyText(blob: Buffer): string {
  const text = `${KEY_TYPE} ${blob.toString('base64')}`;
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * An allowed signers file: `principals [namespaces="a,b"] ssh-ed25519 AAAA… [comment]` per line,
 * `#` comments and blank lines skipped. Other options and key types are refused, not ignored.
 */
export function parseAllowedSigners(text: string, file: string): AllowedSigner[] {
  const problems: string[] = [];
  const out: AllowedSigner[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const m =
      /^(\S+)\s+(?:namespaces="([^"]*)"\s+)?(ssh-[a-z0-9-]+)\s+([A-Za-z0-9+/]+={0,2})(?:\s.*)?$/.exec(
        trimmed,
      );
    const blob = m?.[4] ? Buffer.from(m[4], 'base64') : undefined;
    if (!m || m[3] !== KEY_TYPE || !blob || !ed25519Raw(blob)) {
      problems.push(
        `line ${i + 1}: expected 'principal [namespaces="comfyume-backup"] ssh-ed25519 AAAA… [comment]'`,
      );
      return;
    }
    out.push({
      principals: (m[1] ?? '').split(','),
      namespaces: m[2] === undefined ? undefined : m[2].split(','),
      publicKey: blob,
      text: `${KEY_TYPE} ${m[4]}`,
    });
  });
  if (problems.length > 0) throw new ConfigError(file, problems);
  return out;
}

/** The public key blob of an `ssh-ed25519 AAAA…` line. */
export function publicKeyLine(blob: Buffer, comment = ''): string {
  return `${KEY_TYPE} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}
