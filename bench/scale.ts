// The seed's scale (opt-in: `npm run bench -- scale`; bench/run.ts leaves it out of a plain run):
// the sync-models bundle, as the runner runs it, pushing the LTX-2 checkpoint's 26 GiB and the
// seed's 45 GiB vault (checkpoint 26 GiB + text encoder 19 GiB) to the discard sink, beside 1 and
// 4 GiB; part counts (R2 allows 10,000), MiB/s, peak RSS; then a 26 GiB push killed half-way and
// resumed, counting the parts the sink receives on the resumed run.
//
// The files are sparse (truncate): no disk is used, the kernel hands out zero pages. That is fair
// for what is measured here, the client's own cost: SHA-256 and MD5 take the same time over zeros
// as over any bytes, and nothing on this path compresses. It leaves out the disk's read speed.
import { execFileSync, spawn } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { formatBytes } from '../src/lib/format.js';
import { R2_MAX_PART, R2_MAX_PARTS, r2PartSize } from '../src/lib/r2.js';
import { tableToMarkdown } from '../src/lib/summary.js';
import { startDiscardSink, type DiscardSink } from '../src/sandbox/discard-sink.js';
import { makeSigningKey } from '../src/sandbox/signing-key.js';
import { startSshHost } from '../src/sandbox/ssh-host.js';
import { writeBackupConfig, writeFixture } from './fixture.js';
import { interleaved, median, timed, type Contender, type Measured } from './measure.js';
import { bundleNode } from '../tests/helpers/bundle-node.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** BENCH_SCALE=small: every size ÷ 16 (a check of the area itself, not the seed's scale). */
const DIVIDE = process.env.BENCH_SCALE === 'small' ? 16 : 1;
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 5));
/** Runs of the 26 GiB and 45 GiB pushes (each takes minutes): BENCH_BIG_RUNS, default 1. */
const BIG_RUNS = Math.max(1, Number(process.env.BENCH_BIG_RUNS ?? 1));
/** BENCH_SCALE_PARTS: which of push, resume, backup to run (default all three). */
const SECTIONS = (process.env.BENCH_SCALE_PARTS ?? 'push,resume,backup').split(',');
const repoRoot = path.resolve(import.meta.dirname, '..');
const bundle = path.join(repoRoot, 'actions/sync-models/dist/index.js');

interface Sample extends Measured {
  parts: number;
  bytes: number;
}

/** A directory of sparse files (path → size). */
async function sparseTree(root: string, files: Record<string, number>): Promise<number> {
  let total = 0;
  for (const [rel, size] of Object.entries(files)) {
    const file = path.join(root, rel);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, '');
    await truncate(file, size);
    total += size;
  }
  return total;
}

function pushEnv(sink: DiscardSink, source: string, prefix: string, manifest: string) {
  const inputs: Record<string, string> = {
    direction: 'push',
    source,
    bucket: 'scale-vault',
    prefix,
    'r2-endpoint': sink.endpoint,
    'r2-access-key-id': sink.accessKeyId,
    'r2-secret-access-key': sink.secretAccessKey,
    include: '**/*.safetensors',
    compare: 'size',
    concurrency: '4',
    'part-size': 'auto',
    delete: 'false',
    'dry-run': 'false',
    manifest,
    'hf-fallback': 'false',
  };
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/root',
    NODE_OPTIONS: '',
  };
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
  return env;
}

/** One push of `source` under /usr/bin/time, with the parts and bytes the sink took meanwhile. */
async function push(
  sink: DiscardSink,
  source: string,
  prefix: string,
  manifest: string,
): Promise<Sample> {
  const before = sink.stats();
  const m = await timed(bundleNode.path, [bundle], pushEnv(sink, source, prefix, manifest));
  const after = sink.stats();
  return { ...m, parts: after.parts - before.parts, bytes: after.bytes - before.bytes };
}

/** Bytes the push reads: files over CopyObject's 5 GiB are hashed first, then read again to send. */
const bytesRead = (sizes: number[]): number =>
  sizes.reduce((n, s) => n + (s > R2_MAX_PART ? 2 * s : s), 0);

const rate = (bytes: number, ms: number): string => (bytes / MiB / (ms / 1000)).toFixed(0);

/**
 * A backup item of 1 GiB and one of 4 GiB through the backup-verda bundle (the sshd fixture host,
 * tar | zstd there, ssh2, age, the stream uploader) to the discard sink with verify=in-transit.
 * Not sparse: the host compresses, and zeros would shrink to nothing, so 4 GiB of incompressible
 * bytes (AES-CTR) are written once to the fixture host's disk; the 1 GiB item is one of its files.
 */
async function backupItems(work: string): Promise<string[]> {
  const runs = Math.max(1, Math.min(RUNS, Number(process.env.BENCH_BACKUP_RUNS ?? 3)));
  const host = await startSshHost({
    models: [{ path: 'checkpoints/tiny.safetensors', size: 1024 }],
  });
  const sink = await startDiscardSink();
  const bundle = path.join(repoRoot, 'actions/backup-verda/dist/index.js');
  try {
    const size = Math.round((4 * GiB) / DIVIDE);
    await writeFixture(host.hostRoot, [
      { id: 'big', path: '/srv/scale/big', size, compressible: false },
    ]);
    const identity = path.join(work, 'age.txt');
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim();
    const signing = await makeSigningKey(work);
    const items = [
      {
        name: `1 item, ${formatBytes(size / 4)} (1 file)`,
        path: '/srv/scale/big/part-0.bin',
        size: size / 4,
      },
      { name: `1 item, ${formatBytes(size)} (4 files)`, path: '/srv/scale/big', size },
    ];
    const configs = await Promise.all(
      items.map(async (item, i) => {
        const file = path.join(work, `backup-${i}.yml`);
        await writeBackupConfig(file, host.hostRoot, [
          { id: 'scale', path: item.path, size: item.size, compressible: false },
        ]);
        return file;
      }),
    );
    let n = 0;
    const env = (config: string): NodeJS.ProcessEnv => ({
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_OPTIONS: '--openssl-legacy-provider',
      RUNNER_TEMP: path.join(work, `runner-${n}`),
      INPUT_HOST: host.host,
      INPUT_PORT: String(host.port),
      INPUT_USER: host.user,
      'INPUT_SSH-PRIVATE-KEY': host.privateKey,
      'INPUT_HOST-KEY-FINGERPRINTS': host.hostKeyFingerprint,
      INPUT_CONFIG: config,
      INPUT_BUCKET: 'scale',
      INPUT_PREFIX: `backups/run-${n++}`,
      'INPUT_R2-ENDPOINT': sink.endpoint,
      'INPUT_R2-ACCESS-KEY-ID': sink.accessKeyId,
      'INPUT_R2-SECRET-ACCESS-KEY': sink.secretAccessKey,
      'INPUT_AGE-RECIPIENTS': recipient,
      'INPUT_SIGNING-KEY': signing.privateKey,
      INPUT_RETENTION: 'daily=7,weekly=4,monthly=6',
      'INPUT_WITH-MODELS': 'false',
      'INPUT_DRY-RUN': 'false',
      INPUT_VERIFY: 'in-transit',
      'INPUT_R2-TIMEOUT': '2m',
    });
    const contenders: Contender<Sample>[] = items.map((item, i) => ({
      name: item.name,
      run: async () => {
        const before = sink.stats();
        const m = await timed(bundleNode.path, [bundle], env(configs[i] ?? ''));
        const after = sink.stats();
        return { ...m, parts: after.parts - before.parts, bytes: after.bytes - before.bytes };
      },
    }));
    const { samples } = await interleaved(contenders, runs);
    const table = {
      headers: [
        'Backup',
        'Runs',
        'Parts',
        'Median time',
        'MiB/s of the item',
        'Median peak RSS',
        'Peak RSS range',
      ],
      rows: items.map((item) => {
        const s = samples.get(item.name) ?? [];
        const ms = median(s.map((x) => x.ms));
        const rss = s.map((x) => x.rssKiB);
        return [
          item.name,
          String(s.length),
          String(s[0]?.parts ?? 0),
          `${(ms / 1000).toFixed(1)} s`,
          rate(item.size, ms),
          formatBytes(median(rss) * 1024),
          `${formatBytes(Math.min(...rss) * 1024)} - ${formatBytes(Math.max(...rss) * 1024)}`,
        ];
      }),
    };
    return [
      '### A backup item of several GiB (backup-verda → discard sink, verify=in-transit)',
      '',
      `Incompressible bytes written once to the sshd fixture host (loopback, same 2 cores); ${runs} interleaved runs. ` +
        'Parts: UploadPart requests of the archive (part-size auto: 5 MiB on a first backup). ' +
        'A backup does not resume: a failed item aborts its multipart upload and the next run streams it again.',
      '',
      tableToMarkdown(table),
    ];
  } finally {
    await sink.stop();
    await host.stop();
  }
}

export async function run(): Promise<string> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'bench-scale-'));
  const sink = await startDiscardSink();
  const lines: string[] = ["## The seed's scale: model vault push to the discard sink", ''];
  try {
    const manifest = path.join(work, 'models.yml');
    await writeFile(manifest, 'models: []\n');
    const singles = [1 * GiB, 4 * GiB, 26 * GiB].map((s) => Math.round(s / DIVIDE));
    if (SECTIONS.includes('push')) lines.push(...(await pushSizes(work, sink, manifest, singles)));
    if (SECTIONS.includes('resume'))
      lines.push(...(await killAndResume(work, manifest, singles[2] ?? 26 * GiB)), '');
    if (SECTIONS.includes('backup')) lines.push(...(await backupItems(work)), '');
    lines.push(
      `Reproduce: \`${DIVIDE > 1 ? 'BENCH_SCALE=small ' : ''}BENCH_RUNS=${RUNS} BENCH_BIG_RUNS=${BIG_RUNS}${process.env.BENCH_SCALE_PARTS ? ` BENCH_SCALE_PARTS=${process.env.BENCH_SCALE_PARTS}` : ''} npm run bench -- scale\`.`,
    );
    return lines.join('\n');
  } finally {
    await sink.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/** 1, 4 and 26 GiB files and the seed's vault, pushed to the (plain) sink: parts, MiB/s, RSS. */
async function pushSizes(
  work: string,
  sink: DiscardSink,
  manifest: string,
  singles: number[],
): Promise<string[]> {
  const fsInfo = await statfs(work);
  const lines: string[] = [];
  let seq = 0;
  const vaultFiles = {
    'checkpoints/ltx-2-19b-dev-fp8.safetensors': Math.round((26 * GiB) / DIVIDE),
    'text_encoders/gemma_3_12B_it.safetensors': Math.round((19 * GiB) / DIVIDE),
  };
  const cases: { name: string; dir: string; sizes: number[]; runs: number }[] = [];
  for (const size of singles) {
    const dir = path.join(work, `single-${size}`);
    await sparseTree(dir, { 'checkpoints/ltx-2-19b-dev-fp8.safetensors': size });
    cases.push({
      name: `1 file, ${formatBytes(size)}`,
      dir,
      sizes: [size],
      runs: size >= 8 * GiB ? BIG_RUNS : RUNS,
    });
  }
  const vaultDir = path.join(work, 'vault');
  const vaultTotal = await sparseTree(vaultDir, vaultFiles);
  cases.push({
    name: `vault, ${Object.keys(vaultFiles).length} files, ${formatBytes(vaultTotal)}`,
    dir: vaultDir,
    sizes: Object.values(vaultFiles),
    runs: BIG_RUNS,
  });

  // Interleaved rounds; the big cases only take part in their first BIG_RUNS rounds.
  const samples = new Map<string, Sample[]>();
  const rounds = Math.max(...cases.map((c) => c.runs));
  for (let round = 0; round < rounds; round++) {
    const contenders: Contender<Sample>[] = cases
      .filter((c) => round < c.runs)
      .map((c) => ({ name: c.name, run: () => push(sink, c.dir, `run-${seq++}`, manifest) }));
    const got = await interleaved(contenders, 1);
    for (const [name, s] of got.samples) samples.set(name, [...(samples.get(name) ?? []), ...s]);
  }

  const table = {
    headers: [
      'Push',
      'Runs',
      'Parts (part size)',
      'Median time',
      'MiB/s of the files',
      'MiB/s read (over 5 GiB: hashed, then sent)',
      'Median peak RSS',
      'Peak RSS range',
    ],
    rows: cases.map((c) => {
      const s = samples.get(c.name) ?? [];
      const ms = median(s.map((x) => x.ms));
      const size = c.sizes.reduce((a, b) => a + b, 0);
      const rss = s.map((x) => x.rssKiB);
      const partSizes = [...new Set(c.sizes.map((z) => formatBytes(r2PartSize(z))))].join(', ');
      return [
        c.name,
        String(s.length),
        `${s[0]?.parts ?? 0} (${partSizes})`,
        `${(ms / 1000).toFixed(1)} s`,
        rate(size, ms),
        rate(bytesRead(c.sizes), ms),
        formatBytes(median(rss) * 1024),
        `${formatBytes(Math.min(...rss) * 1024)} - ${formatBytes(Math.max(...rss) * 1024)}`,
      ];
    }),
  };
  const partsOk = [...samples.values()].every((s) => s.every((x) => x.parts <= R2_MAX_PARTS));
  lines.push(
    `Sparse files (no disk used; ${formatBytes(Number(fsInfo.bavail) * Number(fsInfo.bsize))} free where they live), ` +
      `the sync-models bundle with concurrency 4 and part-size auto (max(8 MiB, size / 10,000)); ` +
      `${RUNS} interleaved runs up to 4 GiB, ${BIG_RUNS} of the 26 GiB and 45 GiB pushes` +
      `${DIVIDE > 1 ? ` (BENCH_SCALE=small: every size ÷ ${DIVIDE})` : ''}. ` +
      `Parts are UploadPart requests the sink stored in one run: ${partsOk ? 'all' : 'NOT all'} within R2's ${R2_MAX_PARTS}.`,
    '',
    tableToMarkdown(table),
    '',
  );

  return lines;
}

/**
 * A push of one file killed (SIGKILL) once the sink holds half its parts, then run again: the
 * parts it sends are counted against those still missing. The sink keeps parts in this case.
 */
async function killAndResume(work: string, manifest: string, size: number): Promise<string[]> {
  const sink = await startDiscardSink({ resumable: true });
  try {
    const dir = path.join(work, 'resume');
    await sparseTree(dir, { 'checkpoints/ltx-2-19b-dev-fp8.safetensors': size });
    const partSize = r2PartSize(size);
    const total = Math.ceil(size / partSize);
    const prefix = 'resume';

    const started = process.hrtime.bigint();
    const child = spawn(bundleNode.path, [bundle], {
      env: pushEnv(sink, dir, prefix, manifest),
      stdio: 'ignore',
    });
    const closed = new Promise<void>((r) => child.on('close', () => r()));
    let exited = false;
    void closed.then(() => (exited = true));
    while (!exited && sink.stats().parts < total / 2) await new Promise((r) => setTimeout(r, 100));
    if (exited) throw new Error('the push ended before half its parts were stored');
    child.kill('SIGKILL');
    await closed;
    const killedMs = Number(process.hrtime.bigint() - started) / 1e6;
    // Parts cut off by the kill never reached the sink's 'end': not stored.
    const stored = sink.stats().parts;

    const before = sink.stats();
    const resumed = await timed(bundleNode.path, [bundle], pushEnv(sink, dir, prefix, manifest));
    const sent = sink.stats().parts - before.parts;
    const sentBytes = sink.stats().bytes - before.bytes;
    const table = {
      headers: [
        'File',
        'Parts',
        'Stored when killed',
        'Sent on resume',
        'Missing',
        'Resume time',
        'Peak RSS',
      ],
      rows: [
        [
          formatBytes(size),
          `${total} of ${formatBytes(partSize)}`,
          `${stored} (killed after ${(killedMs / 1000).toFixed(1)} s)`,
          `${sent} (${formatBytes(sentBytes)})`,
          `${total - stored}${sent === total - stored ? ' (= sent)' : ' (DIFFERS from sent)'}`,
          `${(resumed.ms / 1000).toFixed(1)} s`,
          formatBytes(resumed.rssKiB * 1024),
        ],
      ],
    };
    return [
      '### Killed half-way, then resumed',
      '',
      `SIGKILL once the sink (resumable mode: it keeps parts and lists them with their MD5) held half the parts; ` +
        'the next run finds the pending upload, reads and hashes the whole file again (MD5 of each stored part ' +
        'to trust it, SHA-256 of every byte) and sends only what is missing.',
      '',
      tableToMarkdown(table),
    ];
  } finally {
    await sink.stop();
  }
}
