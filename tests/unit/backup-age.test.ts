// Native age encryption: decrypted by the age-encryption package and by the age CLI.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from '@jest/globals';
import { Decrypter, generateIdentity, identityToRecipient } from 'age-encryption';
import { encryptStream, x25519RecipientKey } from '../../src/lib/age-stream.js';

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
