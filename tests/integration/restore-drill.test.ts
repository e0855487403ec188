// restore-drill through its bundle: a real backup of the sshd fixture host (backup-verda's bundle)
// is downloaded from the R2 emulator, restored by its own RESTORE.sh (real age, zstd and tar) into
// a fresh root and compared file by file with its archive (tar --compare). Each failure names
// what is wrong and leaves no restored file behind.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import type { Manifest } from '../../src/backup/manifest.js';
import { runRestoreDrill } from '../../src/backup/restore-drill.js';
import { parseIdentities } from '../../src/lib/age-stream.js';
import { memoryLogger } from '../../src/lib/logger.js';
import { runAction, type RunActionOptions } from '../helpers/run-action.js';
import { BUCKET, PREFIX, sha256, startBackupWorld, type BackupWorld } from './backup-setup.js';

jest.setTimeout(120_000);

let world: BackupWorld;
let manifest: Manifest;
let keyFile: string;
let runnerTemp: string;

beforeAll(async () => {
  world = await startBackupWorld();
  const backup = await world.run();
  expect(backup.code).toBe(0);
  manifest = JSON.parse(
    (await world.get(backup.outputs['manifest-key'] ?? '')).toString('utf8'),
  ) as Manifest;
  // The whole file age-keygen wrote, comments included, as an admin would paste it.
  keyFile = readFileSync(world.identityFile, 'utf8');
}, 120_000);
afterAll(async () => {
  await world?.stop();
});
beforeEach(() => {
  world.r2.clearFaults();
  world.r2.resetCounts();
  runnerTemp = mkdtempSync(path.join(os.tmpdir(), 'drill-runner-temp-'));
});

async function drill(
  overrides: Record<string, string> = {},
  extraSecrets: string[] = [],
  env: Record<string, string> = {},
  user?: RunActionOptions['user'],
) {
  if (user) chownSync(runnerTemp, user.uid, user.gid);
  const run = await runAction('restore-drill', {
    inputs: {
      bucket: BUCKET,
      prefix: PREFIX,
      'r2-endpoint': world.r2.endpoint,
      'r2-access-key-id': world.r2.accessKeyId,
      'r2-secret-access-key': world.r2.secretAccessKey,
      'age-identity': keyFile,
      'r2-timeout': '20s',
      ...overrides,
    },
    secrets: [...world.secrets, ...extraSecrets],
    env: { RUNNER_TEMP: runnerTemp, ...env },
    ...(user ? { user } : {}),
  });
  // Restored secrets (host keys, the Tailscale identity) never outlive a drill, whatever happened.
  expect(readdirSync(runnerTemp)).toEqual([]);
  rmSync(runnerTemp, { recursive: true, force: true });
  return run;
}

const archiveGets = () =>
  world.r2.requests().filter((r) => r.operation === 'GetObject' && /\.age$/.test(r.key ?? ''));

describe('restore-drill', () => {
  it('restores the latest backup with its own RESTORE.sh; every item equals its archive', async () => {
    const run = await drill();
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.outputs).toMatchObject({
      'backup-id': manifest.backupId,
      items: String(manifest.items.length),
      bytes: String(
        manifest.items.reduce((n, i) => n + i.storedBytes, 0) + manifest.restoreScript.bytes,
      ),
    });
    expect(Number(run.outputs['backup-age-hours'])).toBeLessThan(1);
    expect(Number(run.outputs['restore-seconds'])).toBeGreaterThan(0);
    // One row per item: restored members, compared equal (as root, owners included).
    for (const item of manifest.items)
      expect(run.summary).toMatch(
        new RegExp(`\\| ${item.id} \\|.*\\| [1-9]\\d* member\\(s\\) \\| equal \\|`),
      );
    // The .env: one directory chain and the file, restored and compared.
    expect(run.stdout).toMatch(/comfy-env: [1-9]\d* member\(s\) restored, equal to the archive\n/);
    expect(run.stdout).toMatch(/RESTORE.sh: Restoring backup \d{8}T\d{6}Z/);
    expect(archiveGets()).toHaveLength(manifest.items.length);
  });

  it('restores only the items asked for', async () => {
    const run = await drill({ items: 'ssh-host-keys, comfy-env' });
    expect(run.errors).toEqual([]);
    expect(run.outputs.items).toBe('2');
    expect(archiveGets().map((r) => r.key?.replace(/.*\//, '').replace(/\..*/, ''))).toEqual([
      'ssh-host-keys',
      'comfy-env',
    ]);
  });

  // A restore that went wrong (a full disk, a broken tar): a `tar` first on PATH that extracts
  // with the real one, then damages the .env it wrote. The comparison must name the damage.
  it.each([
    [
      'is missing',
      'rm -f -- "$f"',
      /home\/dev\/comfy-multi\/\.env: Warning: Cannot stat: No such file/,
    ],
    ['is truncated', 'truncate -s 3 -- "$f"', /home\/dev\/comfy-multi\/\.env: Size differs/],
    [
      'has other bytes of the same size',
      'printf Z | dd of="$f" bs=1 seek=0 conv=notrunc status=none',
      /home\/dev\/comfy-multi\/\.env: Contents differ/,
    ],
  ])('fails, naming the file, when a restored file %s', async (_what, damage, message) => {
    const bin = mkdtempSync(path.join(os.tmpdir(), 'drill-bad-tar-'));
    const realTar = execFileSync('bash', ['-c', 'command -v tar'], { encoding: 'utf8' }).trim();
    writeFileSync(
      path.join(bin, 'tar'),
      [
        '#!/bin/bash',
        `${realTar} "$@" || exit`,
        'extracting=0; dest=.',
        'while (($#)); do case $1 in -x*) extracting=1 ;; -C) dest=$2; shift ;; esac; shift; done',
        'f=$dest/home/dev/comfy-multi/.env',
        `if ((extracting)) && [[ -f $f ]]; then ${damage}; fi`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    try {
      const run = await drill({ items: 'comfy-env' }, [], { PATH: `${bin}:${process.env.PATH}` });
      expect(run.code).toBe(1);
      expect(run.errors[0]).toMatch(/comfy-env: the restored files differ from the archive/);
      expect(run.errors[0]).toMatch(message);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it('refuses to run a RESTORE.sh that is not the one this tool generates (a changed bucket)', async () => {
    // Someone with write access to the bucket swaps the script and fixes up the manifest's sha256.
    const manifestKey = `${PREFIX}/${manifest.backupId}/manifest.json`;
    const original = await world.get(manifest.restoreScript.key);
    const evil = Buffer.from(`${original.toString('utf8')}touch /tmp/drill-pwned\n`);
    const edited = structuredClone(manifest);
    edited.restoreScript.sha256 = sha256(evil);
    const put = (key: string, body: Buffer | string) =>
      world.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
    await put(manifest.restoreScript.key, evil);
    await put(manifestKey, JSON.stringify(edited));
    try {
      const run = await drill();
      expect(run.code).toBe(1);
      expect(run.errors[0]).toMatch(
        /RESTORE\.sh of backup \d{8}T\d{6}Z is not the script this tool generates from its manifest \(line \d+ differs\); the same version \(\d+\.\d+\.\d+\) wrote it, so it was changed after the backup\. Not run\./,
      );
      expect(archiveGets()).toEqual([]);
    } finally {
      await put(manifest.restoreScript.key, original);
      await put(manifestKey, JSON.stringify(manifest));
    }
  });

  it('refuses an archive that does not match its manifest sha256, before decrypting it', async () => {
    const item = manifest.items.find((i) => i.id === 'comfy-env')!;
    const original = await world.get(item.key);
    const tampered = Buffer.from(original);
    tampered[tampered.length - 1]! ^= 0xff;
    await world.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: item.key, Body: tampered }));
    try {
      const run = await drill({ items: 'comfy-env' });
      expect(run.code).toBe(1);
      expect(run.errors[0]).toMatch(
        new RegExp(
          `comfy-env \\(${item.key}\\) does not match the manifest: sha256 [0-9a-f]{64}, recorded ${item.sha256}`,
        ),
      );
      expect(run.stdout).not.toMatch(/RESTORE.sh: Restoring/);
    } finally {
      await world.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: item.key, Body: original }));
    }
  });

  it('retries a download answered 500 and one cut mid-body', async () => {
    world.r2.addFault({
      operation: 'GetObject',
      keyPattern: /home-dev/,
      action: 'status',
      status: 500,
    });
    world.r2.addFault({
      operation: 'GetObject',
      keyPattern: /comfy-project/,
      action: 'reset',
      resetAfterBytes: 1000,
    });
    const run = await drill();
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    expect(
      world.r2
        .requests()
        .filter((r) => r.fault)
        .map((r) => r.fault)
        .sort(),
    ).toEqual(['reset', 'status']);
  });

  it('restores but fails when the backup is older than max-age (the nightly has stopped)', async () => {
    const run = await drill({ 'max-age': '1ms' });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(
      new RegExp(`backup ${manifest.backupId} restores, but it is [\\d.]+ h old \\(max-age 1ms\\)`),
    );
    expect(run.summary).toMatch(/STALE \(max-age 1ms\)/);
    expect(run.outputs['backup-id']).toBe(manifest.backupId);
  });

  it('refuses an identity that is not a recipient of the backup, before downloading an archive', async () => {
    const other = path.join(world.dir, 'other-key.txt');
    rmSync(other, { force: true });
    execFileSync('age-keygen', ['-o', other], { stdio: 'ignore' });
    const otherKey = readFileSync(other, 'utf8');
    const otherSecret = otherKey.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
    const run = await drill({ 'age-identity': otherKey }, [otherSecret]);
    expect(run.code).toBe(1);
    expect(run.errors[0]).toContain(`age-identity`);
    expect(run.errors[0]).toContain(world.recipient);
    expect(archiveGets()).toEqual([]);
  });
});

describe('restore-drill bad inputs fail before any request', () => {
  it.each([
    [
      'a public key as identity',
      { 'age-identity': 'age1' + 'q'.repeat(58) },
      /age-identity.*public key/,
    ],
    [
      'a malformed identity (never echoed)',
      { 'age-identity': 'AGE-SECRET-KEY-1NOTAKEY' },
      /age-identity.*<line 1 redacted>.*AGE-SECRET-KEY-1/,
    ],
    [
      'a malformed backup-id',
      { 'backup-id': 'yesterday' },
      /backup-id.*yesterday.*20261128T021500Z/,
    ],
    ['an invalid bucket', { bucket: 'No_Such' }, /bucket/],
    ['a bad prefix', { prefix: '/backups' }, /prefix.*\/backups/],
    ['a bad max-age', { 'max-age': 'soon' }, /max-age.*soon/],
  ])('%s', async (_what, overrides, message) => {
    const run = await drill(overrides);
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(message);
    expect(run.errors[0]).not.toMatch(/NOTAKEY/);
    expect(world.r2.requests()).toEqual([]);
  });

  it('names the items of the backup when an unknown one is asked for', async () => {
    const run = await drill({ items: 'no-such-item' });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(
      /items.*no-such-item.*items of backup \d{8}T\d{6}Z: .*ssh-host-keys/,
    );
    expect(archiveGets()).toEqual([]);
  });

  it('names a backup-id that has no manifest', async () => {
    const run = await drill({ 'backup-id': '20200101T000000Z' });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/backup-id.*20200101T000000Z.*no manifest\.json/);
  });
});

describe('runRestoreDrill: a restore that hangs', () => {
  /** A `tar` first on PATH whose extraction hangs (its pid in a file); other uses pass through. */
  function hangingTar() {
    const bin = mkdtempSync(path.join(os.tmpdir(), 'drill-hanging-tar-'));
    const pidFile = path.join(bin, 'pid');
    const realTar = execFileSync('bash', ['-c', 'command -v tar'], { encoding: 'utf8' }).trim();
    writeFileSync(
      path.join(bin, 'tar'),
      `#!/bin/bash\ncase " $* " in *" -x "*) echo $$ > ${pidFile}; exec sleep 300 ;; esac\nexec ${realTar} "$@"\n`,
      { mode: 0o755 },
    );
    return { bin, pidFile };
  }

  /** Whether a process still runs (a zombie waiting to be reaped does not). */
  function running(pid: number): boolean {
    try {
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  }

  async function drillInProcess(extra: { stepTimeoutMs?: number; signal?: AbortSignal }) {
    const { bin, pidFile } = hangingTar();
    const temp = mkdtempSync(path.join(os.tmpdir(), 'drill-temp-'));
    const savedPath = process.env.PATH;
    process.env.PATH = `${bin}:${savedPath}`;
    try {
      const err = await runRestoreDrill({
        client: world.s3,
        bucket: BUCKET,
        prefix: PREFIX,
        endpoint: world.r2.endpoint,
        identities: await parseIdentities('age-identity', keyFile),
        only: ['comfy-env'],
        tempDir: temp,
        logger: memoryLogger(),
        ...extra,
      }).catch((e: unknown) => e as Error);
      const pid = Number(readFileSync(pidFile, 'utf8'));
      for (let i = 0; i < 40 && running(pid); i++) await new Promise((r) => setTimeout(r, 50));
      return { err, pid, left: readdirSync(temp) };
    } finally {
      process.env.PATH = savedPath;
      rmSync(bin, { recursive: true, force: true });
    }
  }

  it('is killed after the step timeout, with its whole pipeline; nothing is left', async () => {
    const { err, pid, left } = await drillInProcess({ stepTimeoutMs: 2000 });
    expect(String(err)).toMatch(/RESTORE\.sh failed on comfy-env \(timed out after 2 s\)/);
    expect(running(pid)).toBe(false);
    expect(left).toEqual([]);
  });

  it('is killed when the drill is cancelled; nothing is left', async () => {
    const cancel = new AbortController();
    setTimeout(() => cancel.abort(), 1500);
    const { err, pid, left } = await drillInProcess({ signal: cancel.signal });
    expect(String(err)).toMatch(/the restore drill was cancelled/);
    expect(running(pid)).toBe(false);
    expect(left).toEqual([]);
  });
});

describe('restore-drill as a non-root user (as on GitHub-hosted runners)', () => {
  const who = (flag: string) =>
    Number(execFileSync('id', [flag, world.host.user], { encoding: 'utf8' }).trim());
  const canRunNode = () => {
    try {
      execFileSync('runuser', ['-u', world.host.user, '--', process.execPath, '-e', '0']);
      return true;
    } catch {
      return false;
    }
  };

  it('restores and compares; owners are counted, not compared; read-only trees are removed', async () => {
    if (!canRunNode()) {
      console.log(`skipped: ${world.host.user} cannot run ${process.execPath}`);
      return;
    }
    // A read-only directory in the project, as a vendored tree can be: a non-root restore keeps
    // its mode, and the drill must still remove what it restored.
    const readOnly = path.join(world.host.hostRoot, 'home/dev/comfy-multi/vendor-ro');
    mkdirSync(readOnly);
    writeFileSync(path.join(readOnly, 'LICENSE'), 'MIT\n');
    chmodSync(readOnly, 0o555);
    const user = { uid: who('-u'), gid: who('-g'), home: os.tmpdir() };
    try {
      const backup = await world.run();
      expect(backup.code).toBe(0);
      const run = await drill({ 'backup-id': backup.outputs['backup-id'] ?? '' }, [], {}, user);
      expect(run.errors).toEqual([]);
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(
        /comfy-project: [1-9]\d* member\(s\) restored, equal to the archive/,
      );
      // Root-owned items (the SSH host keys) restore as the runner user: counted, not failed.
      expect(run.summary).toMatch(
        /\| ssh-host-keys \|.*\| equal \(owners not compared for [1-9]\d*: not root\) \|/,
      );
    } finally {
      chmodSync(readOnly, 0o755);
      rmSync(readOnly, { recursive: true, force: true });
    }
  });
});
