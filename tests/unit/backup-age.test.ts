// Native age encryption: decrypted by the age-encryption package and by the age CLI.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from '@jest/globals';
import { Decrypter, generateIdentity, identityToRecipient } from 'age-encryption';
import {
  encryptStream,
  isLowOrderX25519,
  parseRecipients,
  x25519RecipientKey,
} from '../../src/lib/age-stream.js';
import { InputError } from '../../src/lib/errors.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'age-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const sizes = [0, 1, 65535, 65536, 65537, 3 * 65536, 1_000_003];

describe('native age encryption (X25519)', () => {
  it('parses age1 recipients and refuses bad checksums and other types', async () => {
    const r = await identityToRecipient(await generateIdentity());
    expect(x25519RecipientKey(r)).toHaveLength(32);
    expect(x25519RecipientKey(`${r.slice(0, -1)}${r.endsWith('q') ? 'p' : 'q'}`)).toBeUndefined();
    expect(x25519RecipientKey('age1pq1xyz')).toBeUndefined();
  });

  it.each(sizes)(
    'round-trips %i bytes through the age-encryption Decrypter, two recipients',
    async (size) => {
      const [a, b] = [await generateIdentity(), await generateIdentity()];
      const data = randomBytes(size);
      const sealed = await collect(
        await encryptStream(
          [await identityToRecipient(a), await identityToRecipient(b)],
          Readable.from([data]),
        ),
      );
      for (const identity of [a, b]) {
        const d = new Decrypter();
        d.addIdentity(identity);
        expect(Buffer.from(await d.decrypt(sealed)).equals(data)).toBe(true);
      }
    },
  );

  it('is decrypted by the age CLI, and a flipped byte is refused', async () => {
    if (!existsSync('/usr/bin/age')) {
      console.log('age CLI not installed: skipping');
      return;
    }
    const identityFile = path.join(tmp, 'key.txt');
    execFileSync('age-keygen', ['-o', identityFile], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', identityFile], { encoding: 'utf8' }).trim();
    const data = randomBytes(300_000);
    const chunks = [data.subarray(0, 1000), data.subarray(1000, 200_000), data.subarray(200_000)];
    const sealed = await collect(await encryptStream([recipient], Readable.from(chunks)));
    const file = path.join(tmp, 'x.age');
    writeFileSync(file, sealed);
    const plain = execFileSync('age', ['-d', '-i', identityFile, file], { maxBuffer: 2 ** 24 });
    expect(createHash('sha256').update(plain).digest('hex')).toBe(
      createHash('sha256').update(data).digest('hex'),
    );
    sealed[sealed.length - 100] = (sealed[sealed.length - 100] ?? 0) ^ 1;
    writeFileSync(file, sealed);
    expect(() =>
      execFileSync('age', ['-d', '-i', identityFile, file], { stdio: 'pipe' }),
    ).toThrow();
  });

  it('passes a source error on to the encrypted stream', async () => {
    const r = await identityToRecipient(await generateIdentity());
    const source = new Readable({ read() {} });
    const sealed = await encryptStream([r], source);
    source.destroy(new Error('connection dropped'));
    await expect(collect(sealed)).rejects.toThrow('connection dropped');
  });
});

// The small-order points of Curve25519 (0, 1, the two of order 8, p-1) and their non-canonical
// encodings (p, p+1, and each with the top bit set, which X25519 masks): 14 keys whose shared
// secret is all zeros for every scalar. Each is refused by `age -r` ("low order point").
const lowOrder: [hex: string, recipient: string][] = [
  [
    '0000000000000000000000000000000000000000000000000000000000000000',
    'age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z',
  ],
  [
    '0100000000000000000000000000000000000000000000000000000000000000',
    'age1qyqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqj7vrya',
  ],
  [
    'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
    'age1ur4h5lpmgxu2u9jku0a0r87ydtdqnr0tnsetrlvxvgz3vh6fhqqqzyt4v9',
  ],
  [
    '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
    'age1t7wft09r2zxzfvwsk92eeql0tvzyghxytqwgapkcyf8dm5ylz9ts6wm9s8',
  ],
  [
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'age1anlllllllllllllllllllllllllllllllllllllllllllllllals4n2t7m',
  ],
  [
    'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'age1ahlllllllllllllllllllllllllllllllllllllllllllllllalsn46ayy',
  ],
  [
    'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'age1amlllllllllllllllllllllllllllllllllllllllllllllllalselrwrv',
  ],
  [
    '0000000000000000000000000000000000000000000000000000000000000080',
    'age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqzqqsuwj9m',
  ],
  [
    '0100000000000000000000000000000000000000000000000000000000000080',
    'age1qyqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqzqqk67yly',
  ],
  [
    'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880',
    'age1ur4h5lpmgxu2u9jku0a0r87ydtdqnr0tnsetrlvxvgz3vh6fhzqqxqejhu',
  ],
  [
    '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7',
    'age1t7wft09r2zxzfvwsk92eeql0tvzyghxytqwgapkcyf8dm5ylz8ts72fzt7',
  ],
  [
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
    'age1anllllllllllllllllllllllllllllllllllllllllllllllllls3hcv9z',
  ],
  [
    'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
    'age1ahlllllllllllllllllllllllllllllllllllllllllllllllllsh3g6la',
  ],
  [
    'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
    'age1amlllllllllllllllllllllllllllllllllllllllllllllllllsam3fc4',
  ],
];

async function refusal(values: string[]): Promise<InputError> {
  try {
    await parseRecipients('age-recipients', values);
  } catch (err) {
    if (err instanceof InputError) return err;
    throw err;
  }
  throw new Error(`accepted ${values.join(', ')}`);
}

const ageCli = existsSync('/usr/bin/age');
/** What `age -r` says about a recipient: '' when it encrypts to it. */
function ageRefuses(recipient: string): string {
  const r = spawnSync('age', ['-r', recipient], { input: 'x', encoding: 'utf8' });
  return r.status === 0 ? '' : r.stderr;
}

describe('recipients age would refuse are refused before anything runs', () => {
  it('lists each low-order encoding once, and each decodes to its key', () => {
    expect(new Set(lowOrder.map(([hex]) => hex)).size).toBe(14);
    for (const [hex, recipient] of lowOrder) {
      expect(x25519RecipientKey(recipient)?.toString('hex')).toBe(hex);
      expect(isLowOrderX25519(Buffer.from(hex, 'hex'))).toBe(true);
    }
  });

  it.each(lowOrder)('refuses the low-order point %s', async (_hex, recipient) => {
    const good = await identityToRecipient(await generateIdentity());
    const err = await refusal([good, recipient]);
    expect(err.message).toBe(
      `Input 'age-recipients' is invalid: got "${recipient}"; expected age public keys (age1...), one per line: this is a low-order X25519 point, which any reader could decrypt (age refuses it); give the key age-keygen -y prints.`,
    );
    if (ageCli) expect(ageRefuses(recipient)).toContain('low order point');
  });

  it('refuses upper and mixed case, as age does, and takes the lower-case key', async () => {
    const good = await identityToRecipient(await generateIdentity());
    const upper = good.toUpperCase();
    const mixed = `${good.slice(0, 10)}${good.slice(10, 15).toUpperCase()}${good.slice(15)}`;
    const capital = `A${good.slice(1)}`;
    for (const bad of [upper, mixed, capital]) {
      const err = await refusal([bad]);
      expect(err.message).toBe(
        `Input 'age-recipients' is invalid: got "${bad}"; expected age public keys (age1...), one per line: age1 recipients are all lower case (age refuses upper and mixed case).`,
      );
      expect(x25519RecipientKey(bad)).toBeUndefined();
      if (ageCli) expect(ageRefuses(bad)).not.toBe('');
    }
    // Post-quantum and plugin recipients (age1pq1..., age1yubikey1...) are case-checked too.
    const pq = (await refusal(['AGE1PQ1' + 'Q'.repeat(60)])).message;
    expect(pq).toContain('all lower case');
    await expect(parseRecipients('age-recipients', [good])).resolves.toEqual([good]);
    if (ageCli) expect(ageRefuses(good)).toBe('');
  });

  it('takes a random key, never low order', () => {
    for (let i = 0; i < 20; i++) expect(isLowOrderX25519(randomBytes(32))).toBe(false);
  });
});
