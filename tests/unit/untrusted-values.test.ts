// Values from the bucket or the host reach generated shell only as data: RESTORE.sh generated
// from hostile values of every field parses, lists and refuses to run without running any of
// them; and backups are signed in OpenSSH's own format (ssh-keygen -Y sign/verify both ways).
import { afterAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { restoreScript } from '../../src/backup/restore-script.js';
import { DEFAULT_HOST_SHAPE } from '../../src/host/shape.js';
import { planChecks } from '../../src/host/verify-config.js';
import { loadAllowedSigners, verifyManifestSignature } from '../../src/backup/signature.js';
import { parseSigningKey } from '../../src/backup/signing-key.js';
import { InputError } from '../../src/lib/errors.js';
import { shellComment, shellQuote } from '../../src/lib/shell.js';
import { signSshsig } from '../../src/lib/sshsig.js';
import { makeSigningKey, signersLine } from '../../src/sandbox/signing-key.js';

const NUL = /\0/g;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'untrusted-values-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const marker = path.join(tmp, 'pwned');
/** Ways a value could end a quote, a line, a comment, an array entry or a case branch. */
const HOSTILE = [
  `$(touch ${marker})`,
  `\`touch ${marker}\``,
  `'; touch ${marker}; '`,
  `"; touch ${marker}; "`,
  `x\ntouch ${marker}\n`,
  `x\rtouch ${marker}`,
  `x ;; *) touch ${marker} ;; esac #`,
  `x)\ntouch ${marker}\n(`,
  `]=x [y]=$(touch ${marker})`,
  `\\'$(touch ${marker})\\'`,
  `\u0000$(touch ${marker})`,
];

describe('shellQuote', () => {
  it.each(HOSTILE)('gives back exactly %j, on one line', (value) => {
    const word = shellQuote(value.replace(NUL, ''));
    expect(word).not.toMatch(/[\n\r]/);
    expect(execFileSync('bash', ['-c', `printf %s ${word}`], { encoding: 'utf8' })).toBe(
      value.replace(NUL, ''),
    );
    expect(existsSync(marker)).toBe(false);
  });

  it('keeps a comment a comment', () => {
    const script = `${shellComment(`a\ntouch ${marker}`)}\necho ok\n`;
    expect(execFileSync('bash', ['-c', script], { encoding: 'utf8' })).toBe('ok\n');
    expect(existsSync(marker)).toBe(false);
  });
});

describe('RESTORE.sh from hostile values of every field', () => {
  const scripts = HOSTILE.map((bad, n) => {
    // NUL cannot live in a JS-built shell string that bash reads; JSON can carry it: strip it.
    const v = bad.replace(NUL, '');
    const file = path.join(tmp, `RESTORE-${n}.sh`);
    writeFileSync(
      file,
      restoreScript({
        backupId: v,
        toolVersion: v,
        bucket: v,
        manifestKey: v,
        endpoint: v,
        hostFingerprint: v,
        facts: {
          tailscaleIp: v,
          hostname: v,
          os: v,
          kernel: v,
          disks: {},
          user: { name: v, uid: 1, gid: 1, groups: [v], home: v, shell: v },
          docker: '',
        },
        // Every string a hostile manifest could set in the host section.
        shape: {
          ...DEFAULT_HOST_SHAPE,
          user: v,
          home: v,
          project: v,
          'env-file': v,
          mounts: { models: v, scratch: v },
          links: { [v]: v },
          redis: v,
          'zsh-theme': v,
          containers: [v],
          'comfyui-url': v,
          'test-workflow': v,
          packages: [v],
        },
        checks: planChecks({}).checks,
        items: [
          {
            id: v,
            description: v,
            key: v,
            sha256: v,
            compression: 'zstd',
            restoreTo: v,
            step: 'user',
            afterRestore: [v, v],
          },
          {
            id: 'plain',
            description: v,
            key: `k/${v}`,
            sha256: v,
            compression: 'gzip',
            restoreTo: '/',
            step: 'project',
            afterRestore: [v],
          },
        ],
      }),
    );
    return [JSON.stringify(bad), file, v] as const;
  });

  it.each(scripts)('%s: bash -n, --list and a refused run execute none of it', (_v, file, v) => {
    execFileSync('bash', ['-n', file]);
    const listed = execFileSync('bash', [file, '--list'], { encoding: 'utf8' });
    expect(listed).toContain(v.split('\n')[0]);
    expect(listed).toContain('plain');
    // A run that gets as far as the signature check (which fails: no manifest) runs nothing.
    const run = () =>
      execFileSync(
        'bash',
        [
          file,
          '--signers',
          file,
          '--identity',
          file,
          '--from',
          tmp,
          '--root',
          tmp,
          '--item',
          'plain',
        ],
        { stdio: 'pipe' },
      );
    expect(run).toThrow(/RESTORE\.sh: missing /);
    expect(readdirSync(tmp).filter((f) => f.startsWith('pwned'))).toEqual([]);
  });
});

describe('backup signatures (SSHSIG)', () => {
  const message = Buffer.from('{"backupId": "20261128T021500Z"}\n');

  it('are what ssh-keygen -Y verify accepts, and it refuses a changed byte', async () => {
    const key = await makeSigningKey(tmp, 'ours');
    const sig = path.join(tmp, 'm.sig');
    writeFileSync(
      sig,
      signSshsig(message, 'comfyume-backup', parseSigningKey('k', key.privateKey)),
    );
    const verify = (data: Buffer) =>
      execFileSync(
        'ssh-keygen',
        [
          '-Y',
          'verify',
          '-f',
          key.signersFile,
          '-I',
          'comfyume-backup',
          '-n',
          'comfyume-backup',
          '-s',
          sig,
        ],
        { input: data, encoding: 'utf8', stdio: 'pipe' },
      );
    expect(verify(message)).toMatch(/Good "comfyume-backup" signature/);
    const changed = Buffer.from(message);
    changed[3]! ^= 1;
    expect(() => verify(changed)).toThrow();
  });

  it('verify what ssh-keygen -Y sign wrote; one key of several (rotation) is enough', async () => {
    const old = await makeSigningKey(tmp, 'old');
    const current = await makeSigningKey(tmp, 'current');
    const both = path.join(tmp, 'both-signers');
    writeFileSync(
      both,
      `# rotation\n${signersLine(old.publicKey)}\n${signersLine(current.publicKey)}`,
    );
    const { signers } = await loadAllowedSigners(both);
    expect(signers).toHaveLength(2);
    writeFileSync(path.join(tmp, 'msg'), message);
    execFileSync('ssh-keygen', [
      '-Y',
      'sign',
      '-q',
      '-f',
      path.join(tmp, 'current'),
      '-n',
      'comfyume-backup',
      path.join(tmp, 'msg'),
    ]);
    const signature = readFileSync(path.join(tmp, 'msg.sig'), 'utf8');
    expect(verifyManifestSignature(message, signature, signers, 'm.json').text).toBe(
      current.publicKey.split(' ').slice(0, 2).join(' '),
    );
    expect(() =>
      verifyManifestSignature(
        Buffer.concat([message, Buffer.from(' ')]),
        signature,
        signers,
        'm.json',
      ),
    ).toThrow(/m\.json: not accepted: the signature does not match \(changed after signing\)/);
    // Another namespace (a git commit signature, say) is not a backup signature.
    rmSync(path.join(tmp, 'msg.sig'));
    execFileSync('ssh-keygen', [
      '-Y',
      'sign',
      '-q',
      '-f',
      path.join(tmp, 'current'),
      '-n',
      'git',
      path.join(tmp, 'msg'),
    ]);
    expect(() =>
      verifyManifestSignature(
        message,
        readFileSync(path.join(tmp, 'msg.sig'), 'utf8'),
        signers,
        'm.json',
      ),
    ).toThrow(/signed for namespace "git"/);
    const { signers: onlyOld } = await loadAllowedSigners(old.signersFile);
    expect(() => verifyManifestSignature(message, signature, onlyOld, 'm.json')).toThrow(
      /not an allowed signer/,
    );
    expect(() => verifyManifestSignature(message, 'garbage', signers, 'm.json')).toThrow(
      /not an SSH signature/,
    );
  });

  it('refuses a signers file without a key, and one with an unsupported line', async () => {
    const empty = path.join(tmp, 'empty-signers');
    writeFileSync(empty, readFileSync('config/backup-signers'));
    await expect(loadAllowedSigners(empty)).rejects.toThrow(/lists no key for comfyume-backup/);
    writeFileSync(empty, 'comfyume-backup cert-authority ssh-ed25519 AAAA\n');
    await expect(loadAllowedSigners(empty)).rejects.toThrow(/line 1: expected/);
  });

  it('take only an Ed25519 private key as signing-key, never echoed', async () => {
    const key = await makeSigningKey(tmp, 'echo');
    for (const bad of [key.publicKey, 'not a key', '']) {
      let err: unknown;
      try {
        parseSigningKey('signing-key', bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InputError);
      expect(String(err)).toMatch(/signing-key.*OpenSSH Ed25519 private key/);
      if (bad === key.publicKey) expect(String(err)).not.toContain(bad.slice(12, 40));
    }
    execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', path.join(tmp, 'ecdsa')]);
    expect(() =>
      parseSigningKey('signing-key', readFileSync(path.join(tmp, 'ecdsa'), 'utf8')),
    ).toThrow(/this is a ecdsa-sha2-nistp256 key/);
  });
});
