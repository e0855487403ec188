// restore-drill through its bundle: a real backup of the sshd fixture host (backup-verda's bundle)
// is downloaded from the R2 emulator, restored by its own RESTORE.sh (real age, zstd and tar) into
// a fresh root and compared file by file with its archive (tar --compare). Each failure names
// what is wrong and leaves no restored file behind.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
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
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
  jest,
} from '@jest/globals';
import { createHash } from 'node:crypto';
import { makeSigningKey, type SigningKey } from '../../src/sandbox/signing-key.js';
import type { Manifest } from '../../src/backup/manifest.js';
import { pipelineOrder, runRestoreDrill } from '../../src/backup/restore-drill.js';
import { loadBackupConfig } from '../../src/backup/config.js';
import { loadAllowedSigners } from '../../src/backup/signature.js';
import { parseIdentities } from '../../src/lib/age-stream.js';
import { memoryLogger } from '../../src/lib/logger.js';
import { runAction, type RunActionOptions } from '../helpers/run-action.js';
import { BUCKET, PREFIX, sha256, startBackupWorld, type BackupWorld } from './backup-setup.js';
import { forgery, MARKER_DIR, type Forged } from './backup-forgery.js';

jest.setTimeout(120_000);

let world: BackupWorld;
let manifest: Manifest;
let keyFile: string;
let runnerTemp: string;
let bucket: ReturnType<typeof forgery>;
/** A file that code smuggled in through the bucket would create. */
const marker = path.join(MARKER_DIR, 'restore-drill-pwned');

beforeAll(async () => {
  world = await startBackupWorld();
  const backup = await world.run();
  expect(backup.code).toBe(0);
  manifest = JSON.parse(
    (await world.get(backup.outputs['manifest-key'] ?? '')).toString('utf8'),
  ) as Manifest;
  // The whole file age-keygen wrote, comments included, as an admin would paste it.
  keyFile = readFileSync(world.identityFile, 'utf8');
  bucket = forgery(world, PREFIX);
}, 120_000);
afterAll(async () => {
  await world?.stop();
  rmSync(MARKER_DIR, { recursive: true, force: true });
});
afterEach(() => {
  // A test that never ran the drill still made its runner temp.
  rmSync(runnerTemp, { recursive: true, force: true });
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
  // The checkout (config and signers) as another user sees it: readable, not the test's 0700 dir.
  const checkout = mkdtempSync(path.join(os.tmpdir(), 'drill-checkout-'));
  chmodSync(checkout, 0o755);
  const config = path.join(checkout, 'backup.yml');
  const signers = path.join(checkout, 'backup-signers');
  writeFileSync(config, readFileSync(world.configFile), { mode: 0o644 });
  writeFileSync(signers, readFileSync(world.signing.signersFile), { mode: 0o644 });
  const run = await runAction('restore-drill', {
    inputs: {
      bucket: BUCKET,
      prefix: PREFIX,
      'r2-endpoint': world.r2.endpoint,
      'r2-access-key-id': world.r2.accessKeyId,
      'r2-secret-access-key': world.r2.secretAccessKey,
      'age-identity': keyFile,
      signers,
      config,
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
  rmSync(checkout, { recursive: true, force: true });
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

  it('keeps the verified backup for a rebuild drill: every archive, RESTORE.sh, the signed manifest, never the identity', async () => {
    const keep = path.join(mkdtempSync(path.join(os.tmpdir(), 'drill-keep-')), 'backup');
    try {
      const run = await drill({ 'keep-backup-dir': keep });
      expect(run.errors).toEqual([]);
      expect(run.code).toBe(0);
      const names = [...manifest.items.map((i) => path.basename(i.key))]
        .concat(['RESTORE.sh', 'backup-signers', 'manifest.json', 'manifest.json.sig'])
        .sort();
      expect(readdirSync(keep).sort()).toEqual(names);
      for (const item of manifest.items)
        expect([item.id, sha256(readFileSync(path.join(keep, path.basename(item.key))))]).toEqual([
          item.id,
          item.sha256,
        ]);
      expect(sha256(readFileSync(path.join(keep, 'RESTORE.sh')))).toBe(
        manifest.restoreScript.sha256,
      );
      for (const name of names)
        expect(readFileSync(path.join(keep, name), 'utf8')).not.toContain(world.identity);
      // What is kept is enough for RESTORE.sh itself: signature and every sha256 check out.
      const out = execFileSync(
        'bash',
        [path.join(keep, 'RESTORE.sh'), '--signers', path.join(keep, 'backup-signers')].concat([
          '--from',
          keep,
          '--download-only',
        ]),
        { encoding: 'utf8' },
      );
      expect(out).toContain(`${manifest.items.length} archive(s): sha256 verified`);
    } finally {
      rmSync(path.dirname(keep), { recursive: true, force: true });
    }
  });

  it('restores only the items asked for', async () => {
    const run = await drill({ items: 'ssh-host-keys, comfy-env' });
    expect(run.errors).toEqual([]);
    expect(run.outputs.items).toBe('2');
    // Each once; the smaller first (pipelineOrder).
    const [a, b] = ['ssh-host-keys', 'comfy-env'].map((id) =>
      manifest.items.find((i) => i.id === id)!,
    );
    const order = a!.storedBytes <= b!.storedBytes ? [a!.id, b!.id] : [b!.id, a!.id];
    expect(archiveGets().map((r) => r.key?.replace(/.*\//, '').replace(/\..*/, ''))).toEqual(order);
  });

  // A restore that went wrong (a full disk, a broken tar): a `tar` first on PATH that extracts
  // with the real one, then damages one file it wrote. The comparison must name the damage.
  const ENV = 'home/dev/comfy-multi/.env';
  const START_SH = 'home/dev/comfy-multi/scripts/start.sh';
  const START_LINK = 'home/dev/comfy-multi/start';
  const asRoot = process.getuid?.() === 0;
  it.each<[string, string, string, string, RegExp]>([
    [
      'is missing',
      'comfy-env',
      ENV,
      'rm -f -- "$f"',
      /comfy-multi\/\.env: Warning: Cannot stat: No such file/,
    ],
    ['is truncated', 'comfy-env', ENV, 'truncate -s 3 -- "$f"', /comfy-multi\/\.env: Size differs/],
    [
      'has other bytes of the same size',
      'comfy-env',
      ENV,
      'printf Z | dd of="$f" bs=1 seek=0 conv=notrunc status=none',
      /comfy-multi\/\.env: Contents differ/,
    ],
    [
      'has another mode',
      'comfy-project',
      START_SH,
      'chmod 700 -- "$f"',
      /scripts\/start\.sh: Mode differs/,
    ],
    [
      'is a symlink to another target',
      'comfy-project',
      START_LINK,
      'ln -sfn README.md -- "$f"',
      /comfy-multi\/start: Symlink differs/,
    ],
    ...(asRoot
      ? ([
          [
            'has another owner (as root)',
            'comfy-project',
            START_SH,
            'chown 0:0 -- "$f"',
            /scripts\/start\.sh: Uid differs/,
          ],
        ] as [string, string, string, string, RegExp][])
      : []),
  ])(
    'fails, naming the file, when a restored file %s',
    async (_what, item, file, damage, message) => {
      const bin = mkdtempSync(path.join(os.tmpdir(), 'drill-bad-tar-'));
      const realTar = execFileSync('bash', ['-c', 'command -v tar'], { encoding: 'utf8' }).trim();
      writeFileSync(
        path.join(bin, 'tar'),
        [
          '#!/bin/bash',
          `${realTar} "$@" || exit`,
          'extracting=0; dest=.',
          'while (($#)); do case $1 in -x*) extracting=1 ;; -C) dest=$2; shift ;; esac; shift; done',
          `f=$dest/${file}`,
          `if ((extracting)) && [[ -e $f || -L $f ]]; then ${damage}; fi`,
          '',
        ].join('\n'),
        { mode: 0o755 },
      );
      try {
        const run = await drill({ items: item }, [], { PATH: `${bin}:${process.env.PATH}` });
        expect(run.code).toBe(1);
        expect(run.errors[0]).toMatch(
          new RegExp(`${item}: the restored files differ from the archive`),
        );
        expect(run.errors[0]).toMatch(message);
      } finally {
        rmSync(bin, { recursive: true, force: true });
      }
    },
  );

  // Two items in the order the drill takes them (pipelineOrder): the second is downloaded and
  // restored while the first is compared.
  const twoItems = () =>
    pipelineOrder(
      ['comfy-project', 'comfy-env'].map((id) => manifest.items.find((i) => i.id === id)!),
    );

  it('fails with the first item that differs while the next is restored, not "cancelled"', async () => {
    const [first] = twoItems();
    const file = first!.id === 'comfy-env' ? ENV : START_SH;
    const bin = mkdtempSync(path.join(os.tmpdir(), 'drill-bad-tar-'));
    const realTar = execFileSync('bash', ['-c', 'command -v tar'], { encoding: 'utf8' }).trim();
    writeFileSync(
      path.join(bin, 'tar'),
      [
        '#!/bin/bash',
        `${realTar} "$@" || exit`,
        'extracting=0; dest=.',
        'while (($#)); do case $1 in -x*) extracting=1 ;; -C) dest=$2; shift ;; esac; shift; done',
        `f=$dest/${file}`,
        `if ((extracting)) && [[ -f $f ]]; then truncate -s 1 -- "$f"; fi`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    try {
      const run = await drill({ items: 'comfy-project,comfy-env' }, [], {
        PATH: `${bin}:${process.env.PATH}`,
      });
      expect(run.code).toBe(1);
      expect(run.errors).toHaveLength(1);
      expect(run.errors[0]).toContain(`${first!.id}: the restored files differ from the archive`);
      expect(run.errors[0]).toContain(`${file}: Size differs`);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it('refuses to run a RESTORE.sh that is not the one this tool generates, even when signed', async () => {
    // Defence in depth: even a manifest signed by the backup key cannot bring in another script.
    const original = await world.get(manifest.restoreScript.key);
    const evil = Buffer.from(`${original.toString('utf8')}touch ${marker}\n`);
    await bucket.forge(manifest, { script: evil, signWith: world.signing.privateKey });
    try {
      const run = await drill();
      expect(run.code).toBe(1);
      expect(run.errors[0]).toMatch(
        /RESTORE\.sh of backup \d{8}T\d{6}Z is not the script this tool generates from its manifest \(line \d+ differs\); the same version \(\d+\.\d+\.\d+\) wrote it, so it was changed after the backup\. Not run\./,
      );
      expect(archiveGets()).toEqual([]);
      expect(existsSync(marker)).toBe(false);
    } finally {
      await bucket.restore();
    }
  });

  it('refuses an archive that does not match its manifest sha256, before decrypting it', async () => {
    const item = manifest.items.find((i) => i.id === 'comfy-env')!;
    const original = await world.get(item.key);
    const tampered = Buffer.from(original);
    tampered[tampered.length - 1]! ^= 0xff;
    await world.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: item.key, Body: tampered }));
    try {
      const keep = path.join(os.tmpdir(), `drill-keep-never-${process.pid}`);
      const run = await drill({ items: 'comfy-env', 'keep-backup-dir': keep });
      expect(run.code).toBe(1);
      // A drill that fails keeps nothing for a rebuild.
      expect(existsSync(keep)).toBe(false);
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

  it('fails with the archive that does not match while the item before it is restored, not "cancelled"', async () => {
    const [first, second] = twoItems();
    const original = await world.get(second!.key);
    const tampered = Buffer.from(original);
    tampered[tampered.length - 1]! ^= 0xff;
    await world.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: second!.key, Body: tampered }));
    world.r2.resetCounts();
    try {
      const run = await drill({ items: 'comfy-project,comfy-env' });
      expect(run.code).toBe(1);
      expect(run.errors).toHaveLength(1);
      expect(run.errors[0]).toContain(
        `${second!.id} (${second!.key}) does not match the manifest: sha256 `,
      );
      // It is never restored; the first item was downloaded before it.
      expect(run.stdout).not.toMatch(new RegExp(`${second!.id}: [0-9]+ member`));
      expect(archiveGets().map((r) => r.key)).toEqual([first!.key, second!.key]);
    } finally {
      await world.s3.send(
        new PutObjectCommand({ Bucket: BUCKET, Key: second!.key, Body: original }),
      );
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

describe('restore-drill: whoever writes to the bucket cannot run code or pass a drill', () => {
  let attacker: SigningKey;
  beforeAll(async () => {
    attacker = await makeSigningKey(world.dir, 'attacker');
  });
  afterEach(async () => {
    await bucket.restore();
    rmSync(marker, { force: true });
  });

  // Shell that would run if a manifest value reached RESTORE.sh as code: it copies the drill's
  // age identity and the R2 secret from the parent's environment next to the marker.
  const payload = `$(touch ${marker}; cat "$1" > ${marker}.key; env > ${marker}.env)`;
  const breakout = `true ;; *) touch ${marker} ;; esac; touch ${marker} #`;
  const injected = (m: Forged) => {
    m.tool.version = `0.1.0\ntouch ${marker}`;
    m.host.fingerprint = `SHA256:x\n${payload}`;
    m.facts.tailscaleIp = `100.64.0.1\ntouch ${marker}`;
    for (const item of m.items) item.afterRestore = [`x\n;;\n*) touch ${marker} ;;\nesac\n`];
  };
  const nothingRan = () => {
    expect(readdirSync(MARKER_DIR).filter((f) => f.startsWith('restore-drill-pwned'))).toEqual([]);
    expect(archiveGets()).toEqual([]);
  };

  it('refuses a rewritten manifest signed by another key, before anything runs', async () => {
    await bucket.forge(manifest, { edit: injected, signWith: attacker.privateKey });
    const run = await drill();
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(
      /manifest\.json: not accepted: signed by a key that is not an allowed signer \(ssh-ed25519 /,
    );
    nothingRan();
  });

  it('refuses an unsigned backup', async () => {
    await bucket.forge(manifest, { edit: injected, signWith: 'none' });
    const run = await drill();
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/it has no signature \(.*manifest\.json\.sig\)/);
    nothingRan();
  });

  it('refuses a manifest changed by one byte after signing', async () => {
    await bucket.forge(manifest, {
      edit: (m) => (m.items[0].storedBytes += 1),
      signWith: 'keep',
    });
    const run = await drill();
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/the signature does not match \(changed after signing\)/);
    nothingRan();
  });

  // Even signed by the backup key (stolen, or a bug of ours), no value of the wrong shape passes.
  it.each<[string, (m: Forged) => void, RegExp]>([
    [
      'a version with a newline',
      (m) => (m.tool.version = `0.1.0\ntouch ${marker}`),
      /tool\.version/,
    ],
    [
      'a fingerprint with shell',
      (m) => (m.host.fingerprint = `SHA256:${payload}`),
      /host\.fingerprint/,
    ],
    [
      'a Tailscale IP with a newline',
      (m) => (m.facts.tailscaleIp = `1.2.3.4\nid`),
      /facts\.tailscaleIp/,
    ],
    ['a hostname with shell', (m) => (m.facts.hostname = payload), /facts\.hostname/],
    ['an unknown field', (m) => (m.run = 'touch x'), /\(top level\): Unrecognized key: "run"/],
    [
      'an archive key outside the backup',
      (m) => (m.items[0].key = `${PREFIX}/../elsewhere/x.tar.zst.age`),
      /items\[0\]\.key: must be backups\/verda\/\d{8}T\d{6}Z\//,
    ],
    ['an item id with shell', (m) => (m.items[0].id = `a$(id)`), /items\[0\]\.id/],
    [
      'an after-restore step breaking out of its line',
      (m) => (m.items[0].afterRestore = [`x\n;;\n*) touch ${marker} ;;`]),
      /items\[0\]\.afterRestore\[0\]: must not contain control characters/,
    ],
    ['a restoreTo outside the root', (m) => (m.items[0].restoreTo = '/../..'), /restoreTo/],
  ])('refuses %s even when signed with the backup key', async (_what, edit, message) => {
    await bucket.forge(manifest, { edit, signWith: world.signing.privateKey });
    const run = await drill();
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/is not a comfyume-ops\/backup-manifest\/1 manifest: /);
    expect(run.errors[0]).toMatch(message);
    nothingRan();
  });

  it('never runs after-restore steps from the bucket: a breakout stays data', async () => {
    await bucket.forge(manifest, {
      edit: (m) => {
        for (const item of m.items) item.afterRestore = [breakout];
      },
      signWith: world.signing.privateKey,
    });
    const run = await drill({ items: 'comfy-env' });
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    expect(readdirSync(MARKER_DIR).filter((f) => f.startsWith('restore-drill-pwned'))).toEqual([]);
  });

  it.each<[string, (m: Forged) => void, RegExp]>([
    ['has no items', (m) => (m.items = []), /has no items: a drill of it would prove nothing/],
    [
      'lacks a required item of the config',
      (m) => (m.items = m.items.filter((i: { id: string }) => i.id !== 'ssh-host-keys')),
      /lacks required item\(s\) of the config: ssh-host-keys/,
    ],
    [
      'finished in the future',
      (m) => (m.finishedAt = new Date(Date.now() + 3_600_000).toISOString()),
      /finished at .*, (59|60) min in the future/,
    ],
  ])('fails when the backup %s', async (_what, edit, message) => {
    await bucket.forge(manifest, { edit, signWith: world.signing.privateKey });
    const run = await drill();
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(message);
    expect(archiveGets()).toEqual([]);
  });

  it('fails when an item restores no file', async () => {
    const item = manifest.items.find((i) => i.id === 'comfy-env')!;
    const empty = execFileSync('bash', [
      '-o',
      'pipefail',
      '-c',
      'tar -cf - -T /dev/null | zstd -q | age -r "$1"',
      'x',
      world.recipient,
    ]);
    await bucket.forge(manifest, {
      objects: { [item.key]: empty },
      edit: (m) => {
        const forged = m.items.find((i: { id: string }) => i.id === 'comfy-env');
        forged.sha256 = createHash('sha256').update(empty).digest('hex');
        forged.storedBytes = empty.length;
      },
      signWith: world.signing.privateKey,
    });
    const run = await drill({ items: 'comfy-env' });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/comfy-env: the archive restores no file: it proves nothing/);
  });
});

describe('RESTORE.sh by hand, as an admin restores a dead host', () => {
  let dir: string;
  let files: string;
  let root: string;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'restore-by-hand-'));
    files = path.join(dir, 'from');
    root = path.join(dir, 'root');
    mkdirSync(files);
    mkdirSync(root);
    const base = `${PREFIX}/${manifest.backupId}`;
    for (const key of [`${base}/manifest.json`, `${base}/manifest.json.sig`, `${base}/RESTORE.sh`])
      writeFileSync(path.join(files, path.posix.basename(key)), await world.get(key));
    const item = manifest.items.find((i) => i.id === 'comfy-env')!;
    writeFileSync(path.join(files, path.posix.basename(item.key)), await world.get(item.key));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const restore = () => {
    try {
      const out = execFileSync(
        'bash',
        [
          path.join(files, 'RESTORE.sh'),
          '--signers',
          world.signing.signersFile,
          '--identity',
          world.identityFile,
          '--root',
          root,
          '--from',
          files,
          '--item',
          'comfy-env',
        ],
        { encoding: 'utf8', stdio: 'pipe' },
      );
      return { code: 0, out };
    } catch (err) {
      const e = err as { status: number; stderr: string };
      return { code: e.status, out: e.stderr };
    }
  };
  const restored = () => execFileSync('find', [root, '-mindepth', '1'], { encoding: 'utf8' });

  it('checks the signature with ssh-keygen, then restores', () => {
    const { code, out } = restore();
    expect(code).toBe(0);
    expect(out).toMatch(
      /Signature of .*manifest\.json verified; this RESTORE\.sh is the one it names/,
    );
    expect(readFileSync(path.join(root, 'home/dev/comfy-multi/.env'), 'utf8')).toBe(
      readFileSync(path.join(world.host.hostRoot, 'home/dev/comfy-multi/.env'), 'utf8'),
    );
  });

  it('ssh-keygen -Y verify accepts the signature the backup wrote and refuses a changed byte', () => {
    const verify = (manifestFile: string) =>
      execFileSync(
        'bash',
        [
          '-c',
          'ssh-keygen -Y verify -f "$1" -I comfyume-backup -n comfyume-backup -s "$2" < "$3"',
          'x',
          world.signing.signersFile,
          path.join(files, 'manifest.json.sig'),
          manifestFile,
        ],
        { encoding: 'utf8', stdio: 'pipe' },
      );
    expect(verify(path.join(files, 'manifest.json'))).toMatch(
      /Good "comfyume-backup" signature for comfyume-backup with ED25519 key SHA256:/,
    );
    const changed = readFileSync(path.join(files, 'manifest.json'));
    changed[changed.length - 2]! ^= 0x01;
    writeFileSync(path.join(dir, 'changed.json'), changed);
    expect(() => verify(path.join(dir, 'changed.json'))).toThrow(/Signature verification failed/);
  });

  it('refuses a manifest changed after signing, before decrypting anything', () => {
    const file = path.join(files, 'manifest.json');
    writeFileSync(file, readFileSync(file, 'utf8').replace('"storedBytes": ', '"storedBytes": 1'));
    const { code, out } = restore();
    expect(code).toBe(1);
    expect(out).toMatch(
      /the signature of .*manifest\.json does not verify against .*: not restoring/,
    );
    expect(restored()).toBe('');
  });

  it('refuses a RESTORE.sh that the signed manifest does not name', () => {
    const file = path.join(files, 'RESTORE.sh');
    writeFileSync(file, `${readFileSync(file, 'utf8')}\n# changed\n`);
    const { code, out } = restore();
    expect(code).toBe(1);
    expect(out).toMatch(
      /the signed manifest does not name this RESTORE\.sh \(sha256 [0-9a-f]{64}\): it was changed/,
    );
    expect(restored()).toBe('');
  });

  it('refuses a signers file that does not list the signing key', async () => {
    const other = await makeSigningKey(dir, 'other');
    const out = (() => {
      try {
        execFileSync(
          'bash',
          [
            path.join(files, 'RESTORE.sh'),
            '--signers',
            other.signersFile,
            '--identity',
            world.identityFile,
            '--root',
            root,
            '--from',
            files,
          ],
          { stdio: 'pipe' },
        );
        return '';
      } catch (err) {
        return String((err as { stderr: Buffer }).stderr);
      }
    })();
    expect(out).toMatch(/does not verify against/);
    expect(restored()).toBe('');
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
      const { text: signersText, signers } = await loadAllowedSigners(world.signing.signersFile);
      const err = await runRestoreDrill({
        client: world.s3,
        bucket: BUCKET,
        prefix: PREFIX,
        endpoint: world.r2.endpoint,
        identities: await parseIdentities('age-identity', keyFile),
        signers,
        signersText,
        config: await loadBackupConfig(world.configFile),
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
      rmSync(temp, { recursive: true, force: true });
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
