// A backup signing key for the sandbox, tests and benches: made by the real ssh-keygen, as an
// admin makes one, with its allowed signers file (what config/backup-signers holds in production).
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { SIGNATURE_NAMESPACE, SIGNER_PRINCIPAL } from '../backup/signature.js';

export interface SigningKey {
  /** The OpenSSH private key, as the BACKUP_SIGNING_KEY secret holds it. */
  privateKey: string;
  /** `ssh-ed25519 AAAA… comment` */
  publicKey: string;
  /** An allowed signers file listing the key (the drill's `signers` input). */
  signersFile: string;
}

/** The allowed signers line of a public key, as config/backup-signers lists it. */
export const signersLine = (publicKey: string) =>
  `${SIGNER_PRINCIPAL} namespaces="${SIGNATURE_NAMESPACE}" ${publicKey.trim()}\n`;

/** Makes a key pair in `dir` (signing, signing.pub, backup-signers). */
export async function makeSigningKey(dir: string, name = 'signing'): Promise<SigningKey> {
  const file = path.join(dir, name);
  await promisify(execFile)('ssh-keygen', [
    '-q',
    '-t',
    'ed25519',
    '-N',
    '',
    '-C',
    SIGNER_PRINCIPAL,
    '-f',
    file,
  ]);
  const publicKey = (await readFile(`${file}.pub`, 'utf8')).trim();
  const signersFile = path.join(dir, `${name}-signers`);
  await writeFile(signersFile, signersLine(publicKey));
  return { privateKey: await readFile(file, 'utf8'), publicKey, signersFile };
}
