// The seed's scale (opt-in: `npm run bench -- scale`; bench/run.ts leaves it out of a plain run):
// the sync-models bundle, as the runner runs it, pushing the LTX-2 checkpoint's 26 GiB and the
// seed's 45 GiB vault (checkpoint 26 GiB + text encoder 19 GiB) to the discard sink, beside 1 and
// 4 GiB; part counts (R2 allows 10,000), MiB/s, peak RSS; then a 26 GiB push killed half-way and
// resumed, counting the parts the sink receives on the resumed run.
//
// The files are sparse (truncate): no disk is used, the kernel hands out zero pages. That is fair
// for what is measured here, the client's own cost: SHA-256 and MD5 take the same time over zeros
// as over any bytes, and nothing on this path compresses. It leaves out the disk's read speed.
import { spawn } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { formatBytes } from '../src/lib/format.js';
import { R2_MAX_PART, R2_MAX_PARTS, r2PartSize } from '../src/lib/r2.js';
import { tableToMarkdown } from '../src/lib/summary.js';
import { startDiscardSink, type DiscardSink } from '../src/sandbox/discard-sink.js';
import { interleaved, median, timed, type Contender, type Measured } from './measure.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** BENCH_SCALE=small: every size ÷ 16 (a check of the area itself, not the seed's scale). */
const DIVIDE = process.env.BENCH_SCALE === 'small' ? 16 : 1;
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 5));
/** Runs of the 26 GiB and 45 GiB pushes (each takes minutes): BENCH_BIG_RUNS, default 1. */
const BIG_RUNS = Math.max(1, Number(process.env.BENCH_BIG_RUNS ?? 1));
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
  const m = await timed(process.execPath, [bundle], pushEnv(sink, source, prefix, manifest));
  const after = sink.stats();
  return { ...m, parts: after.parts - before.parts, bytes: after.bytes - before.bytes };
}

/** Bytes the push reads: files over CopyObject's 5 GiB are hashed first, then read again to send. */
const bytesRead = (sizes: number[]): number =>
  sizes.reduce((n, s) => n + (s > R2_MAX_PART ? 2 * s : s), 0);

const rate = (bytes: number, ms: number): string => (bytes / MiB / (ms / 1000)).toFixed(0);

export async function run(): Promise<string> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'bench-scale-'));
  const fsInfo = await statfs(work);
  const sink = await startDiscardSink();
  const lines: string[] = ["## The seed's scale: model vault push to the discard sink", ''];
  let seq = 0;
  try {
    const manifest = path.join(work, 'models.yml');
    await writeFile(manifest, 'models: []\n');
    const singles = [1 * GiB, 4 * GiB, 26 * GiB].map((s) => Math.round(s / DIVIDE));
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
        `the sync-models bundle with concurrency 4 and part-size auto (R2's max(16 MiB, size / 10,000)); ` +
        `${RUNS} interleaved runs up to 4 GiB, ${BIG_RUNS} of the 26 GiB and 45 GiB pushes` +
        `${DIVIDE > 1 ? ` (BENCH_SCALE=small: every size ÷ ${DIVIDE})` : ''}. ` +
        `Parts are UploadPart requests the sink stored in one run: ${partsOk ? 'all' : 'NOT all'} within R2's ${R2_MAX_PARTS}.`,
      '',
      tableToMarkdown(table),
      '',
    );

    lines.push(...(await killAndResume(work, manifest, singles[2] ?? 26 * GiB)));
    lines.push(
      '',
      `Reproduce: \`${DIVIDE > 1 ? 'BENCH_SCALE=small ' : ''}BENCH_RUNS=${RUNS} BENCH_BIG_RUNS=${BIG_RUNS} npm run bench -- scale\`.`,
    );
    return lines.join('\n');
  } finally {
    await sink.stop();
    await rm(work, { recursive: true, force: true });
  }
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
    const child = spawn(process.execPath, [bundle], {
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
    const resumed = await timed(process.execPath, [bundle], pushEnv(sink, dir, prefix, manifest));
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
