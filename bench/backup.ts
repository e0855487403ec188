// Backup throughput: the backup-verda bundle vs the OpenSSH pipeline
// `ssh host 'tar -cf - … | zstd -T0' > file` vs the seed's `tar czf` per item, on a ~500 MiB
// fixture (half incompressible model-like bytes, half compressible text) served by the real sshd
// fixture host. The action runs as the runner runs it (`node dist/index.js`) under
// /usr/bin/time for its peak RSS, against (a) an MD5-echo sink (the client's own cost, like
// writing a file) with verify=etag and (b) the R2 emulator with the default read-back check.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, createCipheriv } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { formatBytes } from '../src/lib/format.js';
import { tableToMarkdown } from '../src/lib/summary.js';
import { startR2Emulator } from '../src/sandbox/r2.js';
import { startSshHost, type SshHost } from '../src/sandbox/ssh-host.js';

const MiB = 2 ** 20;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const repoRoot = path.resolve(import.meta.dirname, '..');
const bundle = path.join(repoRoot, 'actions/backup-verda/dist/index.js');
/** BENCH_ACTION_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=DIR") are given to node for the action runs. */
const nodeArgs = (process.env.BENCH_ACTION_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');

interface Item {
  id: string;
  path: string;
  size: number;
  compressible: boolean;
}

function items(scale: number): Item[] {
  const quarter = Math.round((125 * MiB) / scale);
  return [
    { id: 'models-a', path: '/srv/bench/models-a', size: quarter, compressible: false },
    { id: 'models-b', path: '/srv/bench/models-b', size: quarter, compressible: false },
    { id: 'logs', path: '/srv/bench/logs', size: quarter, compressible: true },
    { id: 'code', path: '/srv/bench/code', size: quarter, compressible: true },
  ];
}

/** Four files per item: AES-CTR keystream (incompressible) or log-like lines (~4:1 with zstd). */
async function writeFixture(hostRoot: string, list: Item[]): Promise<void> {
  for (const item of list) {
    const dir = path.join(hostRoot, item.path);
    await mkdir(dir, { recursive: true });
    const cipher = createCipheriv(
      'aes-128-ctr',
      createHash('sha256').update(item.id).digest().subarray(0, 16),
      Buffer.alloc(16),
    );
    for (let f = 0; f < 4; f++) {
      const out = createWriteStream(
        path.join(dir, `part-${f}.${item.compressible ? 'log' : 'bin'}`),
      );
      let left = item.size / 4;
      let line = 0;
      while (left > 0) {
        let chunk: Buffer;
        if (item.compressible) {
          const noise = cipher.update(Buffer.alloc(12)).toString('hex');
          const lines: string[] = [];
          for (let i = 0; i < 2000; i++, line++) {
            lines.push(
              `2026-11-28T02:${String(line % 60).padStart(2, '0')}:00Z worker=${line % 40} prompt_id=${noise.slice(line % 16, (line % 16) + 8)} step=${line % 30}/30 it/s=${(line % 97) / 10}\n`,
            );
          }
          chunk = Buffer.from(lines.join(''));
        } else {
          chunk = cipher.update(Buffer.alloc(MiB));
        }
        chunk = chunk.subarray(0, Math.min(chunk.length, left));
        left -= chunk.length;
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
      }
      await new Promise<void>((r) => out.end(() => r()));
    }
  }
  await chmod(path.join(hostRoot, 'srv'), 0o755);
}

/** A minimal S3 endpoint that drops bodies but answers ETags = MD5 and sizes, like R2. */
async function startEchoSink(): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  const sizes = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sink');
    const key = decodeURIComponent(url.pathname);
    const md5 = createHash('md5');
    let size = 0;
    req.on('data', (c: Buffer) => {
      md5.update(c);
      size += c.length;
    });
    req.on('end', () => {
      const etag = `"${md5.digest('hex')}"`;
      const xml = (body: string) => {
        res.writeHead(200, { 'content-type': 'application/xml' });
        res.end(`<?xml version="1.0" encoding="UTF-8"?>\n${body}`);
      };
      const q = url.searchParams;
      if (req.method === 'PUT') {
        sizes.set(key, (q.has('uploadId') ? (sizes.get(key) ?? 0) : 0) + size);
        res.writeHead(200, { etag, 'content-length': 0 }).end();
      } else if (req.method === 'POST' && q.has('uploads')) {
        sizes.set(key, 0);
        xml(
          '<InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>',
        );
      } else if (req.method === 'POST') {
        xml(`<CompleteMultipartUploadResult><ETag>"x-1"</ETag></CompleteMultipartUploadResult>`);
      } else if (req.method === 'HEAD') {
        if (sizes.has(key)) res.writeHead(200, { 'content-length': sizes.get(key) ?? 0 }).end();
        else res.writeHead(404).end();
      } else if (req.method === 'GET' && q.has('uploads')) {
        xml(
          '<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>',
        );
      } else if (req.method === 'GET' && q.has('list-type')) {
        xml(
          '<ListBucketResult><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>',
        );
      } else if (req.method === 'DELETE') {
        res.writeHead(204).end();
      } else {
        res.writeHead(404, { 'content-type': 'application/xml' });
        res.end('<Error><Code>NoSuchKey</Code><Message>none</Message></Error>');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}

interface Sample {
  ms: number;
  rssKiB?: number;
  outBytes: number;
}

async function timed(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  stdoutFile?: string,
): Promise<Sample> {
  const started = process.hrtime.bigint();
  const rssFile = path.join(
    os.tmpdir(),
    `bench-rss-${process.pid}-${Math.random().toString(36).slice(2)}`,
  );
  const child = spawn('/usr/bin/time', ['-f', '%M', '-o', rssFile, cmd, ...args], {
    env,
    stdio: ['ignore', stdoutFile ? 'pipe' : 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  let outBytes = 0;
  const sink = stdoutFile ? createWriteStream(stdoutFile) : undefined;
  if (sink && child.stdout) {
    child.stdout.on('data', (d: Buffer) => (outBytes += d.length));
    child.stdout.pipe(sink);
  }
  const code = await new Promise<number | null>((r) => child.on('close', r));
  if (sink)
    await new Promise<void>((r) => (sink.writableFinished ? r() : sink.once('finish', () => r())));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (code !== 0)
    throw new Error(`${cmd} ${args.slice(0, 3).join(' ')} failed (${code}): ${stderr.slice(-800)}`);
  const rssKiB = Number((await readFile(rssFile, 'utf8')).trim().split('\n').pop());
  await rm(rssFile, { force: true });
  return { ms, rssKiB, outBytes };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
};

export async function run(): Promise<string> {
  const scale = process.env.BENCH_SCALE === 'small' ? 10 : 1;
  const list = items(scale);
  const total = list.reduce((n, i) => n + i.size, 0);
  const host: SshHost = await startSshHost({
    models: [{ path: 'checkpoints/tiny.safetensors', size: 1024 }],
  });
  const r2 = await startR2Emulator({ buckets: ['bench'] });
  const echo = await startEchoSink();
  const work = await mkdtemp(path.join(os.tmpdir(), 'bench-backup-'));
  try {
    await writeFixture(host.hostRoot, list);
    const identity = path.join(work, 'age.txt');
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim();
    const config = path.join(work, 'backup.yml');
    await writeFile(
      config,
      [
        'version: 1',
        `host-root: ${host.hostRoot}`,
        'items:',
        ...list.map((i) => `  - id: ${i.id}\n    paths: [${i.path}]`),
        '',
      ].join('\n'),
    );
    const keyFile = path.join(work, 'id');
    await writeFile(keyFile, host.privateKey, { mode: 0o600 });
    const knownHosts = path.join(work, 'known_hosts');
    const hostPub = execFileSync(
      'ssh-keyscan',
      ['-p', String(host.port), '-t', 'ed25519', host.host],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    );
    await writeFile(knownHosts, hostPub);
    const sshArgs = [
      '-T',
      '-i',
      keyFile,
      '-p',
      String(host.port),
      '-o',
      `UserKnownHostsFile=${knownHosts}`,
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'BatchMode=yes',
      `${host.user}@${host.host}`,
    ];
    const rels = list.map((i) => `${host.hostRoot.slice(1)}${i.path}`);

    const actionEnv = (
      endpoint: string,
      accessKeyId: string,
      secret: string,
      verify: string,
    ): NodeJS.ProcessEnv => {
      const runner = path.join(work, `runner-${Math.random().toString(36).slice(2)}`);
      return {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        NODE_OPTIONS: '--openssl-legacy-provider',
        RUNNER_TEMP: runner,
        INPUT_HOST: host.host,
        INPUT_PORT: String(host.port),
        INPUT_USER: host.user,
        'INPUT_SSH-PRIVATE-KEY': host.privateKey,
        'INPUT_HOST-KEY-FINGERPRINTS': host.hostKeyFingerprint,
        INPUT_CONFIG: config,
        INPUT_BUCKET: 'bench',
        INPUT_PREFIX: `bench/${Math.random().toString(36).slice(2)}`,
        'INPUT_R2-ENDPOINT': endpoint,
        'INPUT_R2-ACCESS-KEY-ID': accessKeyId,
        'INPUT_R2-SECRET-ACCESS-KEY': secret,
        'INPUT_AGE-RECIPIENTS': recipient,
        INPUT_RETENTION: 'daily=7,weekly=4,monthly=6',
        'INPUT_WITH-MODELS': 'false',
        'INPUT_DRY-RUN': 'false',
        INPUT_VERIFY: verify,
        'INPUT_R2-TIMEOUT': '2m',
      };
    };

    const contenders: { name: string; run: () => Promise<Sample> }[] = [
      {
        name: 'backup-verda → MD5-echo sink (verify=etag)',
        run: () =>
          timed(
            process.execPath,
            [...nodeArgs, bundle],
            actionEnv(echo.endpoint, 'bench', 'bench-secret', 'etag'),
          ),
      },
      {
        name: 'backup-verda → R2 emulator (verify=read-back, as shipped)',
        run: () =>
          timed(
            process.execPath,
            [...nodeArgs, bundle],
            actionEnv(r2.endpoint, r2.accessKeyId, r2.secretAccessKey, 'read-back'),
          ),
      },
      {
        name: "OpenSSH `ssh host 'tar -cf - … | zstd -T0' > file`",
        run: () =>
          timed(
            'ssh',
            [...sshArgs, `tar -C / -cf - ${rels.join(' ')} | zstd -q -c -T0`],
            process.env,
            path.join(work, 'openssh.tar.zst'),
          ),
      },
      {
        name: "seed: `ssh host 'tar czf - <item>' > item.tar.gz` per item",
        run: async () => {
          let ms = 0;
          let rss = 0;
          let out = 0;
          for (const rel of rels) {
            const s = await timed(
              'ssh',
              [...sshArgs, `tar -C / -czf - ${rel}`],
              process.env,
              path.join(work, 'seed.tar.gz'),
            );
            ms += s.ms;
            rss = Math.max(rss, s.rssKiB ?? 0);
            out += s.outBytes;
          }
          return { ms, rssKiB: rss, outBytes: out };
        },
      },
    ];

    const results = new Map<string, Sample[]>();
    for (let i = 0; i < RUNS; i++) {
      // Interleaved so that machine noise hits every contender alike.
      for (const c of contenders) {
        const s = await c.run();
        results.set(c.name, [...(results.get(c.name) ?? []), s]);
        process.stderr.write(`  ${c.name}: ${(s.ms / 1000).toFixed(2)} s, ${s.rssKiB} KiB\n`);
      }
    }
    const rate = (ms: number) => total / MiB / (ms / 1000);
    const openssh = median(results.get(contenders[2]!.name)!.map((s) => s.ms));
    const seed = median(results.get(contenders[3]!.name)!.map((s) => s.ms));
    const rows = contenders.map((c) => {
      const samples = results.get(c.name)!;
      const ms = median(samples.map((s) => s.ms));
      return [
        c.name,
        `${(ms / 1000).toFixed(2)} s`,
        `${rate(ms).toFixed(0)} MiB/s`,
        `${(openssh / ms).toFixed(2)}×`,
        `${(seed / ms).toFixed(2)}×`,
        `${((median(samples.map((s) => s.rssKiB ?? 0)) * 1024) / MiB).toFixed(0)} MiB`,
        `${((Math.max(...samples.map((s) => s.rssKiB ?? 0)) * 1024) / MiB).toFixed(0)} MiB`,
      ];
    });
    return [
      `## backup: ${formatBytes(total)} fixture (half incompressible), ${RUNS} runs each, medians`,
      '',
      `Command: \`${process.env.BENCH_SCALE ? `BENCH_SCALE=${process.env.BENCH_SCALE} ` : ''}npm run bench -- backup\` ` +
        `(the action is the committed bundle, \`node ${path.relative(repoRoot, bundle)}\`). ` +
        'Goals: ≥ 0.8× OpenSSH, ≥ 3× seed, peak RSS ≤ 150 MiB.',
      '',
      `Host: the sshd fixture on loopback (same 2 cores as the client). Throughput = tar input bytes / wall time. ` +
        'Peak RSS from /usr/bin/time (for the seed: the largest of its ssh processes).',
      '',
      tableToMarkdown({
        headers: [
          'contender',
          'time',
          'throughput',
          'vs OpenSSH',
          'vs seed',
          'peak RSS (median)',
          'peak RSS (max)',
        ],
        rows,
      }),
    ].join('\n');
  } finally {
    await echo.stop();
    await r2.stop();
    await host.stop();
    await rm(work, { recursive: true, force: true });
  }
}
