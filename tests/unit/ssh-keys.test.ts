// ed25519 key pairs the runner makes (the bootstrap host key, the sandbox's runner key) must load
// in OpenSSH and ssh2: ssh2's own generator makes about one unloadable pair in 256.
import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import { newEd25519KeyPair } from '../../src/lib/ssh.js';

describe('newEd25519KeyPair', () => {
  it('makes 2,000 pairs that ssh2 loads, each with a 32-byte public key (ssh2 alone: ~8 bad)', () => {
    for (let i = 0; i < 2000; i++) {
      const pair = newEd25519KeyPair('test');
      const parsed = ssh2.utils.parseKey(pair.private);
      expect(parsed).not.toBeInstanceOf(Error);
      expect(Buffer.from(pair.public.split(' ')[1] ?? '', 'base64')).toHaveLength(51);
    }
  });

  it('makes again a pair whose public key lost its leading zero byte, and one OpenSSH loads', () => {
    // The pair ssh2 makes when the key starts with 0x00: the byte stripped from both halves.
    let made = 0;
    const broken = (): { private: string; public: string } => {
      for (;;) {
        const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 't' });
        if (Buffer.from(pair.public.split(' ')[1] ?? '', 'base64').length < 51) return pair;
      }
    };
    const pair = newEd25519KeyPair('t', (comment) =>
      made++ < 2 ? broken() : ssh2.utils.generateKeyPairSync('ed25519', { comment }),
    );
    expect(made).toBe(3);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ed25519-'));
    try {
      const file = path.join(dir, 'key');
      writeFileSync(file, `${pair.private.trimEnd()}\n`, { mode: 0o600 });
      const derived = execFileSync('ssh-keygen', ['-y', '-f', file], { encoding: 'utf8' });
      expect(derived.trim().split(' ').slice(0, 2)).toEqual(pair.public.split(' ').slice(0, 2));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives up with a clear error after 16 bad pairs', () => {
    const bad = () => ({ private: 'x', public: 'ssh-ed25519 AAAA' });
    expect(() => newEd25519KeyPair('t', bad)).toThrow(
      'could not generate a well-formed ed25519 key in 16 attempts',
    );
  });
});
