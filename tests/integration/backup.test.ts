// backup-verda through its bundle against the real sshd fixture host and the R2 emulator: a full
// backup restored by its own RESTORE.sh and compared file by file, retention on synthetic
// backups, dry run, and the GitHub issue alerting against a local REST stand-in.
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { loadBackupConfig } from '../../src/backup/config.js';
import { backupIdFor, type Manifest } from '../../src/backup/manifest.js';
import { repoRoot } from '../helpers/run-action.js';
import { FIXTURE_ENV_SECRET } from '../../src/sandbox/fixture-tree.js';
import {
  BUCKET,
  PREFIX,
  latestId,
  sha256,
  startBackupWorld,
  type BackupWorld,
} from './backup-setup.js';

// Real sshd and R2 emulator runs take seconds; set here as project-level testTimeout is not applied.
jest.setTimeout(120_000);

let world: BackupWorld;
beforeAll(async () => {
  world = await startBackupWorld();
});
afterAll(async () => {
  await world?.stop();
});

/** Files, symlinks and directories under root: relative path → "type mode uid content-hash". */
function snapshot(root: string, skip: (rel: string) => boolean = () => false): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(root, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      if (skip(r)) continue;
      const full = path.join(root, r);
      const st = lstatSync(full);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out.set(r, `link ${st.uid} -> ${readlinkSync(full)}`);
      else if (st.isDirectory()) {
        out.set(r, `dir ${mode} ${st.uid}`);
        walk(r);
      } else out.set(r, `file ${mode} ${st.uid} ${sha256(readFileSync(full))}`);
    }
  };
  walk('');
  return out;
}

// What config/backup.yml leaves out of the fixture tree.
const notBackedUp = (rel: string) =>
  rel === 'mnt' ||
  rel === 'etc/ssh/sshd_config' ||
  rel === 'home/dev/.cache' ||
  rel === 'home/dev/.oh-my-zsh/oh-my-zsh.sh' ||
  /^home\/dev\/comfy-multi\/data\/(models|outputs|inputs)$/.test(rel);

describe('full backup of the fixture host', () => {
  let manifest: Manifest;
  let outputs: Record<string, string>;
  const synthetic: { id: string; complete: boolean }[] = [];

  beforeAll(async () => {
    // Earlier backups: one a day for 40 days, plus monthly ones, plus two leftovers of crashed runs.
    const day = 86_400_000;
    const now = Date.now();
    const put = (key: string, body: string) =>
      world.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
    for (let i = 1; i <= 40; i++)
      synthetic.push({ id: backupIdFor(new Date(now - i * day)), complete: true });
    for (let m = 2; m <= 9; m++)
      synthetic.push({ id: backupIdFor(new Date(now - m * 31 * day)), complete: true });
    synthetic.push({ id: backupIdFor(new Date(now - 3 * day - 3600_000)), complete: false });
    synthetic.push({ id: backupIdFor(new Date(now - 2 * 3600_000)), complete: false });
    for (const b of synthetic) {
      await put(`${PREFIX}/${b.id}/home-dev.tar.zst.age`, `old ${b.id}`);
      if (b.complete)
        await put(`${PREFIX}/${b.id}/manifest.json`, JSON.stringify({ backupId: b.id }));
    }
    world.r2.resetCounts();
    const run = await world.run();
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    outputs = run.outputs;
    manifest = JSON.parse(
      (await world.get(outputs['manifest-key'] ?? '')).toString('utf8'),
    ) as Manifest;
    expect(run.summary).toContain(`Backup ${outputs['backup-id']}`);
    expect(run.summary).toMatch(/\| tailscale-identity \| 10\.0 KiB \|/);
    expect(run.stdout + run.stderr + run.summary).not.toContain(FIXTURE_ENV_SECRET);
  });

  it('sets the outputs and moves latest.json', async () => {
    expect(outputs['backup-id']).toMatch(/^\d{8}T\d{6}Z$/);
    expect(outputs['manifest-key']).toBe(`${PREFIX}/${outputs['backup-id']}/manifest.json`);
    expect(outputs.items).toBe('9');
    expect(outputs['tailscale-ip']).toBe('100.89.38.43');
    expect(Number(outputs.bytes)).toBe(manifest.items.reduce((n, i) => n + i.storedBytes, 0));
    expect(await latestId(world)).toBe(outputs['backup-id']);
    expect(await world.pendingUploads()).toBe(0);
  });

  it('records facts, host fingerprint and every item in the manifest', async () => {
    expect(manifest.host.fingerprint).toBe(world.host.hostKeyFingerprint);
    expect(manifest.facts.tailscaleIp).toBe('100.89.38.43');
    expect(Object.keys(manifest.facts.disks).sort()).toEqual(['models', 'scratch']);
    const config = await loadBackupConfig(path.join(repoRoot, 'config/backup.yml'));
    expect(manifest.items.map((i) => i.id)).toEqual(config.items.map((i) => i.id));
    expect(manifest.encryption.recipients).toEqual([world.recipient]);
  });

  it('stores objects whose sha256 matches the manifest and that are age-encrypted', async () => {
    for (const item of manifest.items) {
      const data = await world.get(item.key);
      expect(sha256(data)).toBe(item.sha256);
      expect(data.length).toBe(item.storedBytes);
      expect(data.subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
      expect(data.includes(Buffer.from('REDIS_PASSWORD'))).toBe(false);
    }
  });

  it('restores through its own RESTORE.sh to the same files, modes and owners', async () => {
    const manifestKey = outputs['manifest-key'] ?? '';
    const script = (await world.get(manifest.restoreScript.key)).toString('utf8');
    expect(sha256(script)).toBe(manifest.restoreScript.sha256);
    const scriptFile = path.join(world.dir, 'RESTORE.sh');
    writeFileSync(scriptFile, script, { mode: 0o755 });
    if (existsSync('/usr/bin/shellcheck')) execFileSync('/usr/bin/shellcheck', [scriptFile]);
    else console.log('shellcheck not installed: skipping the lint of RESTORE.sh');

    const from = path.join(world.dir, 'download');
    const root = path.join(world.dir, 'restored');
    mkdirSync(from);
    mkdirSync(root);
    for (const key of [...manifest.items.map((i) => i.key), manifestKey, `${manifestKey}.sig`])
      writeFileSync(path.join(from, path.basename(key)), await world.get(key));
    const out = execFileSync(
      'bash',
      [
        scriptFile,
        '--signers',
        world.signing.signersFile,
        '--identity',
        world.identityFile,
        '--from',
        from,
        '--root',
        root,
      ],
      {
        encoding: 'utf8',
      },
    );
    expect(out).toMatch(/changed: comfy-env: \d+ difference\(s\), restored into /);
    // A second run compares every item with what is there and changes nothing.
    const again = execFileSync(
      'bash',
      [scriptFile, '--signers', world.signing.signersFile, '--identity', world.identityFile].concat(
        ['--from', from, '--root', root],
      ),
      { encoding: 'utf8' },
    );
    expect(again).toMatch(/RESTORE\.sh: done, 0 change\(s\) in /);
    expect(again).toContain('comfy-env: up to date');

    const hostRoot = world.host.hostRoot;
    const expected = snapshot(hostRoot, notBackedUp);
    // Members are relative to host-root. tar recreates the parents of lone members (e.g. etc/ssh
    // for the host keys) with default modes, so directories are compared where they were archived.
    const restored = snapshot(root);
    const files = (m: Map<string, string>) =>
      new Map([...m].filter(([, v]) => !v.startsWith('dir ')));
    expect(files(restored)).toEqual(files(expected));
    for (const dir of [
      'var/lib/tailscale',
      'home/dev/.ssh',
      'etc/ubuntu-advantage/private',
      'home/dev/comfy-multi',
    ]) {
      expect(restored.get(dir)).toBe(expected.get(dir));
    }
    expect(restored.get('var/lib/tailscale/tailscaled.state')).toMatch(/^file 600 0 /);
    expect(restored.get('home/dev/comfy-multi/start')).toContain('-> scripts/start.sh');
  });

  it('refuses a tampered archive in RESTORE.sh (sha256 check before decrypting)', async () => {
    const manifestKey = outputs['manifest-key'] ?? '';
    const item = manifest.items.find((i) => i.id === 'comfy-env')!;
    const from = path.join(world.dir, 'tampered');
    mkdirSync(from);
    const data = await world.get(item.key);
    data[data.length - 1] = (data[data.length - 1] ?? 0) ^ 1;
    writeFileSync(path.join(from, path.basename(item.key)), data);
    for (const key of [manifestKey, `${manifestKey}.sig`])
      writeFileSync(path.join(from, path.basename(key)), await world.get(key));
    const scriptFile = path.join(world.dir, 'RESTORE.sh');
    expect(() =>
      execFileSync(
        'bash',
        [
          scriptFile,
          '--signers',
          world.signing.signersFile,
          '--identity',
          world.identityFile,
          '--from',
          from,
          '--root',
          world.dir,
          '--item',
          'comfy-env',
        ],
        {
          stdio: 'pipe',
        },
      ),
    ).toThrow(/sha256 mismatch for comfy-env/);
  });

  it('applies retention: expired backups and stale leftovers deleted, manifest first; the new one kept', async () => {
    const keys = await world.keys();
    const ids = new Set(keys.map((k) => k.split('/')[2]));
    // daily=7 keeps the 7 newest days (the new backup's day + 6 synthetic days), weekly=4, monthly=6.
    const kept = synthetic.filter((b) => b.complete && ids.has(b.id)).map((b) => b.id);
    const deleted = synthetic.filter((b) => b.complete && !ids.has(b.id));
    expect(kept.length).toBeGreaterThanOrEqual(6);
    expect(kept.length).toBeLessThanOrEqual(6 + 4 + 6);
    expect(deleted.length).toBeGreaterThan(20);
    for (const b of synthetic.filter((s) => s.complete).slice(0, 6))
      expect(ids.has(b.id)).toBe(true);
    // No half-deleted backup: every remaining id still has its manifest, except the fresh leftover.
    const [staleLeftover, freshLeftover] = synthetic.filter((b) => !b.complete);
    expect(ids.has(staleLeftover!.id)).toBe(false);
    expect(ids.has(freshLeftover!.id)).toBe(true);
    for (const id of ids) {
      if (id === 'latest.json' || id === freshLeftover!.id) continue;
      expect(keys).toContain(`${PREFIX}/${id}/manifest.json`);
    }
    const deletes = world.r2.requests().filter((r) => r.operation === 'DeleteObject');
    const firstDeleted = deleted[0]!.id;
    const order = deletes
      .filter((r) => r.key?.includes(firstDeleted))
      .map((r) => path.basename(r.key ?? ''));
    expect(order).toEqual(['manifest.json', 'home-dev.tar.zst.age']);
  });
});

describe('with-models', () => {
  it('pushes the host models to the vault over the same connection after the backup', async () => {
    const run = await world.run({
      'with-models': 'true',
      'models-bucket': BUCKET,
      'models-prefix': 'vault',
    });
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.summary).toContain('Model sync (push)');
    const stored = (await world.keys('vault/')).filter((k) => k.endsWith('.safetensors'));
    const local = [
      'checkpoints/ltx-2-19b-dev-fp8.safetensors',
      'loras/flux2-klein-style.safetensors',
      'text_encoders/gemma_3_12B_it.safetensors',
    ];
    expect(stored).toEqual(local.map((p) => `vault/${p}`));
    for (const p of local) {
      expect(sha256(await world.get(`vault/${p}`))).toBe(
        sha256(readFileSync(path.join(world.host.modelsDir, p))),
      );
    }
  });
});

describe('dry run', () => {
  it('connects and plans, writes and deletes nothing', async () => {
    const before = await world.keys();
    world.r2.resetCounts();
    const run = await world.run({ 'dry-run': 'true' });
    expect(run.code).toBe(0);
    expect(run.summary).toContain('Backup dry run');
    expect(run.summary).toMatch(/\| comfy-project \| backup \|/);
    expect(run.outputs['manifest-key']).toBe('');
    expect(await world.keys()).toEqual(before);
    const ops = Object.keys(world.r2.counts().byOperation);
    expect(ops.every((op) => ['GetObject', 'ListObjectsV2'].includes(op))).toBe(true);
  });
});

describe('alerting through a GitHub issue', () => {
  interface Issue {
    number: number;
    title: string;
    state: string;
    body: string;
    comments: string[];
  }
  const issues: Issue[] = [];
  const seenAuth: string[] = [];
  let server: http.Server;
  let apiUrl = '';
  const token = 'ghs_fakeTokenForTheStandIn0123456789';

  beforeAll(async () => {
    // The few REST endpoints @actions/github calls here, on loopback.
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seenAuth.push(req.headers.authorization ?? '');
        const url = new URL(req.url ?? '/', 'http://x');
        const send = (status: number, data: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(data));
        };
        const json = body ? (JSON.parse(body) as Record<string, string>) : {};
        const m = /^\/repos\/acme\/ops\/issues(?:\/(\d+)(\/comments)?)?$/.exec(url.pathname);
        if (!m) return send(404, { message: 'Not Found' });
        const issue = m[1] ? issues.find((i) => i.number === Number(m[1])) : undefined;
        if (req.method === 'GET' && !m[1]) {
          return send(
            200,
            issues.filter((i) => i.state === url.searchParams.get('state')),
          );
        }
        if (req.method === 'POST' && !m[1]) {
          const created = {
            number: issues.length + 1,
            title: json.title ?? '',
            body: json.body ?? '',
            state: 'open',
            comments: [],
          };
          issues.push(created);
          return send(201, created);
        }
        if (!issue) return send(404, { message: 'Not Found' });
        if (req.method === 'POST' && m[2]) {
          issue.comments.push(json.body ?? '');
          return send(201, { id: issue.comments.length, body: json.body });
        }
        if (req.method === 'PATCH') {
          issue.state = json.state ?? issue.state;
          return send(200, issue);
        }
        return send(405, { message: 'Method Not Allowed' });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const env = () => ({
    GITHUB_API_URL: apiUrl,
    GITHUB_REPOSITORY: 'acme/ops',
    GITHUB_SERVER_URL: 'https://github.example',
    GITHUB_RUN_ID: '4242',
  });

  it('opens one issue on failure, comments on the next failure, closes it on success', async () => {
    const wrongPin = `SHA256:${'A'.repeat(43)}`;
    const fail = { 'host-key-fingerprints': wrongPin, 'github-token': token };
    const secrets = [...world.secrets, token];
    const first = await world.run(fail, env(), [token]);
    expect(first.code).not.toBe(0);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ title: 'Nightly backup failing', state: 'open' });
    expect(issues[0]!.body).toContain(world.host.hostKeyFingerprint);
    expect(issues[0]!.body).toContain('https://github.example/acme/ops/actions/runs/4242');

    await world.run(fail, env(), [token]);
    expect(issues).toHaveLength(1);
    expect(issues[0]!.comments).toHaveLength(1);

    const good = await world.run({ 'github-token': token }, env(), [token]);
    expect(good.code).toBe(0);
    expect(issues[0]!.state).toBe('closed');
    expect(issues[0]!.comments[1]).toContain(`Backup ${good.outputs['backup-id']} succeeded`);
    expect(seenAuth.every((a) => a === `token ${token}`)).toBe(true);
    for (const text of [...issues.map((i) => i.body), ...issues.flatMap((i) => i.comments)]) {
      for (const s of secrets) expect(text).not.toContain(s);
    }
  });
});
