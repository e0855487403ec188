import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { InputError } from '../../src/lib/errors.js';
import { shellGlob, shellQuote } from '../../src/lib/shell.js';
import { checkPrivateKey, fingerprintSha256, parseFingerprints } from '../../src/lib/ssh.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'ssh-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keygen(name: string, extra: string[] = []): string {
  const file = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file, ...extra]);
  return file;
}

describe('fingerprintSha256', () => {
  it('matches ssh-keygen -l for the same public key', () => {
    const key = keygen('k1');
    const blob = Buffer.from(readFileSync(`${key}.pub`, 'utf8').split(' ')[1] ?? '', 'base64');
    const printed = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${key}.pub`], {
      encoding: 'utf8',
    });
    expect(printed.split(' ')[1]).toBe(fingerprintSha256(blob));
    expect(fingerprintSha256(blob)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });
});

describe('parseFingerprints', () => {
  const good = 'SHA256:Eo4qlVnPnjoxgxwQ5BcI0YDxbz5mZh/6wyGWim8CwKA';
  it('accepts a list (rotation) and drops duplicates', () => {
    const other = 'SHA256:' + 'A'.repeat(43);
    expect(parseFingerprints('pins', [good, other, good])).toEqual([good, other]);
  });
  it.each([
    ['missing prefix', good.slice(7)],
    ['md5 style', 'MD5:12:34:56'],
    ['too short', good.slice(0, -1)],
    ['padded', `${good}=`],
    ['whole ssh-keygen line', `256 ${good} root@host (ED25519)`],
  ])('rejects %s naming the input and value', (_what, value) => {
    expect(() => parseFingerprints('host-key-fingerprints', [value])).toThrow(InputError);
    expect(() => parseFingerprints('host-key-fingerprints', [value])).toThrow(
      /Input 'host-key-fingerprints' is invalid: got .*expected .*SHA256:/,
    );
  });
  it('requires at least one pin', () => {
    expect(() => parseFingerprints('host-key-fingerprints', [])).toThrow(/host-key-fingerprints/);
  });
});

describe('shellQuote / shellGlob', () => {
  const words = [
    'plain',
    '',
    "it's",
    'a b',
    '$(rm -rf /)',
    '`id`',
    'x;y|z&',
    '*',
    'new\nline',
    '-n',
  ];
  it('round-trips every word through a real shell', () => {
    for (const word of words) {
      const out = execFileSync('bash', ['-c', `printf '%s' ${shellQuote(word)}`], {
        encoding: 'utf8',
      });
      expect(out).toBe(word);
    }
  });
  it('leaves only * and ? to the shell', () => {
    const root = mkdtempSync(path.join(dir, "g l'ob-"));
    for (const f of ['ssh_host_a', 'ssh_host_b', 'other'])
      execFileSync('touch', [path.join(root, f)]);
    const out = execFileSync('bash', ['-c', `printf '%s\\n' ${shellGlob(`${root}/ssh_host_*`)}`], {
      encoding: 'utf8',
    });
    expect(out.trim().split('\n')).toEqual([`${root}/ssh_host_a`, `${root}/ssh_host_b`]);
    expect(shellGlob('/a b/$(x)*')).toBe("'/a b/$(x)'*");
  });
});

describe('checkPrivateKey', () => {
  it('accepts an unencrypted OpenSSH key', () => {
    expect(() =>
      checkPrivateKey('ssh-private-key', readFileSync(keygen('k2'), 'utf8')),
    ).not.toThrow();
  });
  it('refuses an encrypted key without printing it', () => {
    const file = path.join(dir, 'enc');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret-pass', '-f', file]);
    const key = readFileSync(file, 'utf8');
    let message = '';
    try {
      checkPrivateKey('ssh-private-key', key);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/ssh-private-key.*passphrase/);
    for (const line of key.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'))) {
      expect(message).not.toContain(line);
    }
  });
  it('refuses garbage and empty keys', () => {
    expect(() => checkPrivateKey('ssh-private-key', 'not a key')).toThrow(
      /Input 'ssh-private-key'.*<redacted>/,
    );
    expect(() => checkPrivateKey('ssh-private-key', '')).toThrow(InputError);
  });
});
