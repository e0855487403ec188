// age encryption of a Node stream with the age-encryption package (typage): the output is a
// standard age file (X25519 recipients) that `age -d -i key` decrypts.
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Encrypter } from 'age-encryption';
import { InputError } from './errors.js';

const EXPECTED = 'age public keys (age1...), one per line';

/** Validates recipients by parsing each as age does; a pasted secret key is never echoed. */
export function parseRecipients(input: string, values: string[]): string[] {
  if (values.length === 0) throw new InputError(input, '', EXPECTED);
  for (const value of values) {
    if (/^AGE-SECRET-KEY-/i.test(value)) {
      throw new InputError(
        input,
        '<redacted>',
        `${EXPECTED}: this is a secret identity, give its public key (age-keygen -y)`,
      );
    }
    try {
      new Encrypter().addRecipient(value);
    } catch (err) {
      throw new InputError(input, value, `${EXPECTED} (${(err as Error).message})`);
    }
  }
  return [...new Set(values)];
}

/** Encrypts `source` to every recipient; errors of the source surface on the returned stream. */
export async function encryptStream(recipients: string[], source: Readable): Promise<Readable> {
  const encrypter = new Encrypter();
  for (const r of recipients) encrypter.addRecipient(r);
  const web = Readable.toWeb(source) as unknown as ReadableStream<Uint8Array>;
  const encrypted = await encrypter.encrypt(web);
  return Readable.fromWeb(encrypted as unknown as WebReadableStream<Uint8Array>);
}
