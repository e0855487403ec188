// Profile of the restore drill per item and per stage (not part of `npm run bench`; run it with
// `node --openssl-legacy-provider --import tsx bench/_drill-profile.ts`): one backup of
// the bench fixture, then for each item, PROFILE_RUNS times, the drill's own stages run one by one
// (download as the drill does it, RESTORE.sh --item, the comparison pipeline) and their parts
// (sha256sum, age -d, zstd -d, tar -x, tar --compare, sha256 of the restored files), each under
// /usr/bin/time for wall and CPU seconds. Prints a markdown table of medians.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { Manifest } from '../src/backup/manifest.js';
import { BackupStore } from '../src/backup/store.js';
import { inputEnv, loadActionSpec } from '../src/cli/action-runner.js';
import { parseOutputFile } from '../tests/helpers/output-file.js';
import { createR2Client } from '../src/lib/r2.js';
import { memoryLogger } from '../src/lib/logger.js';
import { makeSigningKey } from '../src/sandbox/signing-key.js';
import { startR2Emulator } from '../src/sandbox/r2.js';
import { startSshHost } from '../src/sandbox/ssh-host.js';
import { items, writeBackupConfig, writeFixture } from './fixture.js';
import { median, timed } from './measure.js';
import { bundleNode } from '../tests/helpers/bundle-node.js';

const RUNS = Number(process.env.PROFILE_RUNS ?? 3);
const BUCKET = 'bench';
const PREFIX = 'bench/restore';
const repoRoot = path.resolve(import.meta.dirname, '..');

interface Cost {
  wall: number;
  cpu: number;
}

function timedSh(script: string, args: string[]): Promise<Cost> {
  return new Promise((resolve, reject) => {
    const t = process.hrtime.bigint();
    const out = path.join(os.tmpdir(), `prof-${process.pid}-${Math.random()}`);
    const child = spawn(
      '/usr/bin/time',
      ['-f', '%U %S', '-o', out, 'bash', '-o', 'pipefail', '-c', script, 'x', ...args],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', async (code) => {
      const wall = Number(process.hrtime.bigint() - t) / 1e9;
      const [u, s] = (await readFile(out, 'utf8')).trim().split('\n').pop()!.split(' ').map(Number);
      await rm(out, { force: true });
      if (code !== 0 && !script.includes('--compare'))
        reject(new Error(`${script}: ${code} ${err}`));
      else resolve({ wall, cpu: u! + s! });
    });
  });
}

async function inProcess(fn: () => Promise<unknown>): Promise<Cost> {
  const t = process.hrtime.bigint();
  const c = process.cpuUsage();
  await fn();
  const d = process.cpuUsage(c);
  return { wall: Number(process.hrtime.bigint() - t) / 1e9, cpu: (d.user + d.system) / 1e6 };
}

async function main(): Promise<void> {
  const list = items(process.env.BENCH_SCALE === 'small' ? 10 : 1);
  const work = await mkdtemp(path.join(os.tmpdir(), 'drill-profile-'));
  const host = await startSshHost({
    models: [{ path: 'checkpoints/tiny.safetensors', size: 1024 }],
  });
  const r2 = await startR2Emulator({ buckets: [BUCKET] });
  const s3 = createR2Client({
    endpoint: r2.endpoint,
    accessKeyId: r2.accessKeyId,
    secretAccessKey: r2.secretAccessKey,
  });
  try {
    await writeFixture(host.hostRoot, list);
    const identityFile = path.join(work, 'age.txt');
    execFileSync('age-keygen', ['-o', identityFile], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', identityFile], { encoding: 'utf8' }).trim();
    const config = path.join(work, 'backup.yml');
    await writeBackupConfig(config, host.hostRoot, list);
    const signing = await makeSigningKey(work);
    const output = path.join(work, 'output');
    await writeFile(output, '');
    const env = {
      ...inputEnv(await loadActionSpec('backup-verda'), {
        host: host.host,
        port: String(host.port),
        user: host.user,
        'ssh-private-key': host.privateKey,
        'host-key-fingerprints': host.hostKeyFingerprint,
        config,
        bucket: BUCKET,
        prefix: PREFIX,
        'r2-endpoint': r2.endpoint,
        'r2-access-key-id': r2.accessKeyId,
        'r2-secret-access-key': r2.secretAccessKey,
        'age-recipients': recipient,
        'signing-key': signing.privateKey,
        'with-models': 'false',
      }),
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_OPTIONS: '--openssl-legacy-provider',
      GITHUB_OUTPUT: output,
      RUNNER_TEMP: work,
    };
    // Not execFileSync: the emulator serves from this process's event loop.
    await timed(bundleNode.path, [path.join(repoRoot, 'actions/backup-verda/dist/index.js')], env);
    const manifestKey = parseOutputFile(await readFile(output, 'utf8'))['manifest-key']!;
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: manifestKey }));
    const manifest = JSON.parse(await got.Body!.transformToString()) as Manifest;
    const base = `${PREFIX}/${manifest.backupId}`;
    const from = path.join(work, 'from');
    await mkdir(from);
    const store = BackupStore.open({ client: s3, bucket: BUCKET, prefix: PREFIX }, memoryLogger());
    for (const k of [`${base}/manifest.json`, `${base}/manifest.json.sig`, `${base}/RESTORE.sh`])
      await store.sha256Of(k, path.join(from, path.posix.basename(k)));
    const script = path.join(from, 'RESTORE.sh');

    const rows: string[][] = [];
    const totals = new Map<string, Cost[]>();
    for (const item of manifest.items) {
      const archive = path.join(from, path.posix.basename(item.key));
      const plain = path.join(work, 'plain.tar');
      const samples = new Map<string, Cost[]>();
      const add = (k: string, c: Cost) => samples.set(k, [...(samples.get(k) ?? []), c]);
      for (let r = 0; r < RUNS; r++) {
        await rm(archive, { force: true });
        add(
          'download (drill: GET, sha256, write)',
          await inProcess(() => store.sha256Of(item.key, archive)),
        );
        const root = path.join(work, 'root');
        await rm(root, { recursive: true, force: true });
        await mkdir(root);
        add(
          'RESTORE.sh --item (whole)',
          await timedSh(
            'bash "$1" --signers "$2" --identity "$3" --root "$4" --from "$5" --skip-after-restore --item "$6" >/dev/null',
            [script, signing.signersFile, identityFile, root, from, item.id],
          ),
        );
        const dest = path.join(root, item.restoreTo);
        add(
          ' ├ ssh-keygen -Y verify',
          await timedSh(
            'ssh-keygen -Y verify -f "$1" -I comfyume-backup -n comfyume-backup -s "$2.sig" < "$2" >/dev/null 2>&1',
            [signing.signersFile, path.join(from, 'manifest.json')],
          ),
        );
        add(' ├ sha256sum archive', await timedSh('sha256sum -- "$1" >/dev/null', [archive]));
        const extracted = path.join(work, 'x');
        await rm(extracted, { recursive: true, force: true });
        await mkdir(extracted);
        add(
          ' └ age -d | zstd -dc | tar -x -p',
          await timedSh(
            'age -d -i "$1" -- "$2" | zstd -dc | tar -x -p --numeric-owner -f - -C "$3"',
            [identityFile, archive, extracted],
          ),
        );
        add(
          'comparison (age -d | zstd -dc | tar --compare)',
          await timedSh(
            'age -d -i "$1" -- "$2" | zstd -dc | tar --compare --verbose --numeric-owner --file=- --directory="$3" >/dev/null',
            [identityFile, archive, dest],
          ),
        );
        add(
          ' ├ age -d',
          await timedSh('age -d -i "$1" -o /dev/null -- "$2"', [identityFile, archive]),
        );
        add(
          ' ├ age -d | zstd -dc',
          await timedSh('age -d -i "$1" -- "$2" | zstd -dc >/dev/null', [identityFile, archive]),
        );
        await timedSh('age -d -i "$1" -- "$2" | zstd -dc > "$3"', [identityFile, archive, plain]);
        add(
          ' └ tar --compare (plain tar file)',
          await timedSh('tar --compare --numeric-owner -f "$1" -C "$2" >/dev/null', [plain, dest]),
        );
        add(
          'alt: node sha256 of the restored files',
          await inProcess(async () => {
            const walk = async (d: string): Promise<void> => {
              for (const e of await readdir(d, { withFileTypes: true })) {
                const p = path.join(d, e.name);
                if (e.isDirectory()) await walk(p);
                else if (e.isFile()) {
                  const h = createHash('sha256');
                  for await (const c of createReadStream(p, { highWaterMark: 1 << 20 }))
                    h.update(c as Buffer);
                  h.digest();
                }
              }
            };
            await walk(dest);
          }),
        );
        add(
          'alt: sha256 of the plain tar stream (node)',
          await inProcess(async () => {
            const h = createHash('sha256');
            for await (const c of createReadStream(plain, { highWaterMark: 1 << 20 }))
              h.update(c as Buffer);
            h.digest();
          }),
        );
        await rm(plain, { force: true });
        await rm(extracted, { recursive: true, force: true });
      }
      const tarBytes = item.tarBytes ?? NaN;
      for (const [k, cs] of samples) {
        totals.set(k, [
          ...(totals.get(k) ?? []),
          { wall: median(cs.map((c) => c.wall)), cpu: median(cs.map((c) => c.cpu)) },
        ]);
        rows.push([
          item.id,
          `${(item.storedBytes / 2 ** 20).toFixed(1)} / ${(tarBytes / 2 ** 20).toFixed(1)} MiB`,
          k,
          (median(cs.map((c) => c.wall)) * 1000).toFixed(0),
          (median(cs.map((c) => c.cpu)) * 1000).toFixed(0),
        ]);
      }
    }
    const lines = [
      '| item | stored / tar | stage | wall ms (median) | CPU ms (median) |',
      '|---|---|---|---|---|',
    ];
    for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
    lines.push(
      '',
      '| all items | stage | wall ms (sum of medians) | CPU ms |',
      '|---|---|---|---|',
    );
    for (const [k, cs] of totals)
      lines.push(
        `| all | ${k} | ${(cs.reduce((n, c) => n + c.wall, 0) * 1000).toFixed(0)} | ${(cs.reduce((n, c) => n + c.cpu, 0) * 1000).toFixed(0)} |`,
      );
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    s3.destroy();
    await r2.stop();
    await host.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
