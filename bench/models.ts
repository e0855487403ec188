// Model upload: the sync-models bundle (as the runner runs it) vs rclone (Debian, --transfers 4
// --s3-upload-concurrency 4, 16 MiB chunks) vs `aws s3 sync` (4 concurrent, 16 MB chunks) vs a
// minimal @aws-sdk/lib-storage script, on one 1 GiB + twenty 20 MiB files, against (a) the
// discard sink (the client's own cost) and (b) s3rver behind the R2 rules. Then a no-op re-sync
// of 1,000 files (time and requests), and peak RSS of the bundle uploading 4 GiB vs 256 MiB.
// Every tool is a child process; the servers live in this process. Medians of BENCH_RUNS (5).
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { formatBytes } from '../src/lib/format.js';
import { tableToMarkdown } from '../src/lib/summary.js';
import { startDiscardSink } from '../src/sandbox/discard-sink.js';
import { startR2Emulator } from '../src/sandbox/r2.js';
import { bundleNode } from '../tests/helpers/bundle-node.js';
import { hashedIn, named, profiledStages, type Stage } from './profile.js';
import { cpuTable, interleaved, median, timed, type Measured } from './measure.js';

const MiB = 2 ** 20;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SMALL = process.env.BENCH_SCALE === 'small';
const BUCKET = 'bench-vault';
const repoRoot = path.resolve(import.meta.dirname, '..');
const bundle = path.join(repoRoot, 'actions/sync-models/dist/index.js');
const libStorageScript = path.join(repoRoot, 'bench/_lib-storage-upload.mjs');
let emptyManifest = '';

interface Endpoint {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** A tool under /usr/bin/time with only PATH and HOME from this process's environment. */
const measure = (cmd: string, args: string[], env: Record<string, string>): Promise<Measured> =>
  timed(cmd, args, { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env });

type Tool = (dir: string, ep: Endpoint, prefix: string) => Promise<Measured>;

/** Where the action's CPU goes, by stage (bench/profile.ts). */
const STAGES: Stage[] = [
  { name: 'MD5 of every part (Content-MD5, the ETag proof)', match: named('md5Hex') },
  { name: 'SHA-256 of every file (metadata, manifest)', match: hashedIn('readExactly') },
  { name: 'file reads', match: named('read', 'readFileHandle') },
];

const ourTool = (dir: string, ep: Endpoint, prefix: string, nodeArgs: string[] = []) => {
  const inputs: Record<string, string> = {
    direction: 'push',
    source: dir,
    bucket: BUCKET,
    prefix,
    'r2-endpoint': ep.endpoint,
    'r2-access-key-id': ep.accessKeyId,
    'r2-secret-access-key': ep.secretAccessKey,
    include: '**/*',
    compare: 'size',
    concurrency: '4',
    'part-size': 'auto',
    delete: 'false',
    'dry-run': 'false',
    manifest: emptyManifest,
    'hf-fallback': 'false',
  };
  const env: Record<string, string> = { NODE_OPTIONS: '' };
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
  return measure(bundleNode.path, [...nodeArgs, bundle], env);
};

const libStorage: Tool = (dir, ep, prefix) =>
  measure(bundleNode.path, [libStorageScript, dir, ep.endpoint, BUCKET, prefix], {
    AWS_ACCESS_KEY_ID: ep.accessKeyId,
    AWS_SECRET_ACCESS_KEY: ep.secretAccessKey,
  });

const rclone: Tool = (dir, ep, prefix) =>
  measure(
    'env',
    [
      '-u',
      'AWS_CA_BUNDLE',
      'rclone',
      'copy',
      dir,
      `bench:${BUCKET}/${prefix}`,
      '--transfers',
      '4',
      '--s3-upload-concurrency',
      '4',
      '--s3-chunk-size',
      '16M',
      '--s3-upload-cutoff',
      '16M',
      '--s3-no-check-bucket',
    ],
    {
      RCLONE_CONFIG_BENCH_TYPE: 's3',
      RCLONE_CONFIG_BENCH_PROVIDER: 'Cloudflare',
      RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: ep.accessKeyId,
      RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: ep.secretAccessKey,
      RCLONE_CONFIG_BENCH_ENDPOINT: ep.endpoint,
      RCLONE_CONFIG_BENCH_REGION: 'auto',
      RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
    },
  );

/** aws-cli's config for R2 (also bench/backup.ts's honest alternative): path-style, no flexible checksums. */
export async function awsConfig(dir: string): Promise<string> {
  const file = path.join(dir, 'aws-config');
  await writeFile(
    file,
    [
      '[default]',
      'region = auto',
      'request_checksum_calculation = when_required',
      'response_checksum_validation = when_required',
      's3 =',
      '  max_concurrent_requests = 4',
      '  multipart_threshold = 16MB',
      '  multipart_chunksize = 16MB',
      '  addressing_style = path',
      '',
    ].join('\n'),
  );
  return file;
}

const awsCli =
  (configFile: string): Tool =>
  (dir, ep, prefix) =>
    measure(
      'aws',
      [
        's3',
        'sync',
        dir,
        `s3://${BUCKET}/${prefix}`,
        '--endpoint-url',
        ep.endpoint,
        '--only-show-errors',
      ],
      {
        AWS_ACCESS_KEY_ID: ep.accessKeyId,
        AWS_SECRET_ACCESS_KEY: ep.secretAccessKey,
        AWS_CONFIG_FILE: configFile,
      },
    );

async function writeRandom(file: string, size: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const out = createWriteStream(file);
  for (let left = size; left > 0; left -= 8 * MiB) {
    if (!out.write(randomBytes(Math.min(8 * MiB, left))))
      await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
}

export async function run(): Promise<string> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'bench-models-'));
  const sink = await startDiscardSink();
  const r2 = await startR2Emulator({ buckets: [BUCKET] });
  const lines: string[] = ['## Model vault upload (sync-models)', ''];
  try {
    const configFile = await awsConfig(work);
    emptyManifest = path.join(work, 'models.yml');
    await writeFile(emptyManifest, 'models: []\n');
    const data = path.join(work, 'data');
    const big = SMALL ? 128 * MiB : 1024 * MiB;
    const small = SMALL ? 4 * MiB : 20 * MiB;
    await writeRandom(path.join(data, 'checkpoints/big.safetensors'), big);
    for (let i = 0; i < 20; i++)
      await writeRandom(path.join(data, `loras/l${String(i).padStart(2, '0')}.safetensors`), small);
    const total = big + 20 * small;
    const tools: [string, Tool][] = [
      ['sync-models (this action)', ourTool],
      ['lib-storage script', libStorage],
      ['rclone', rclone],
      ['aws s3 sync', awsCli(configFile)],
    ];

    const cpu: string[] = [];
    const table = {
      headers: [
        'Target',
        'Tool',
        'Median time',
        'MiB/s',
        'vs rclone',
        'vs lib-storage',
        'vs aws-cli',
        'Peak RSS',
      ],
      rows: [] as string[][],
    };
    for (const [targetName, ep] of [
      ['discard sink', sink],
      ['s3rver + R2 rules', r2],
    ] as const) {
      let n = 0;
      const { contenders, samples } = await interleaved(
        tools.map(([name, tool]) => ({
          name,
          run: async () => {
            const prefix = `run-${n++}`;
            const m = await tool(data, ep, prefix);
            if (ep === r2)
              await rm(path.join(r2.dir, BUCKET, prefix), { recursive: true, force: true });
            return m;
          },
        })),
        RUNS,
      );
      const med = (name: string) => median((samples.get(name) ?? []).map((m) => m.ms));
      for (const [name] of tools) {
        const t = med(name);
        const rate = total / MiB / (t / 1000);
        const ratio = (other: string) => `${(med(other) / t).toFixed(2)}×`;
        table.rows.push([
          targetName,
          name,
          `${(t / 1000).toFixed(2)} s`,
          rate.toFixed(0),
          ratio('rclone'),
          ratio('lib-storage script'),
          ratio('aws s3 sync'),
          formatBytes(median((samples.get(name) ?? []).map((m) => m.rssKiB)) * 1024),
        ]);
      }
      cpu.push(
        `Which process held the cores, to the ${targetName} (the bench process serves the sink and the emulator; \`node\` is the action or the lib-storage script, \`aws\` is aws-cli):`,
        '',
        cpuTable(contenders, samples),
        '',
      );
    }
    const stages = await profiledStages(path.join(work, 'profile'), STAGES, (args) =>
      ourTool(data, sink, 'profiled', args),
    );
    cpu.push(
      "What the action's CPU went to, by stage (one more run to the discard sink under `node --cpu-prof`, self time):",
      '',
      stages,
      '',
    );
    lines.push(
      `Data: 1 × ${formatBytes(big)} + 20 × ${formatBytes(small)} = ${formatBytes(total)} of random bytes; ${RUNS} runs per tool, interleaved; ratios are speed-ups of this row over the named tool (time of the other ÷ time of this).`,
      '',
      tableToMarkdown(table),
      '',
      ...cpu,
    );

    // No-op re-sync of 1,000 files: uploaded once, then each tool syncs again; s3rver + rules.
    const many = path.join(work, 'many');
    const count = SMALL ? 200 : 1000;
    for (let i = 0; i < count; i++)
      await writeRandom(
        path.join(many, `d${i % 10}/f${String(i).padStart(4, '0')}.safetensors`),
        1024,
      );
    const noop = {
      headers: ['Tool', 'Median time', 'Requests (by operation)'],
      rows: [] as string[][],
    };
    const noopTools: [string, Tool][] = [
      ['sync-models (compare: size)', ourTool],
      ['aws s3 sync', awsCli(configFile)],
      ['rclone copy', rclone],
    ];
    for (const [name, tool] of noopTools) {
      const prefix = `noop-${name.split(' ')[0]}`;
      await tool(many, r2, prefix); // the first upload
      const times: number[] = [];
      let ops = '';
      for (let i = 0; i < RUNS; i++) {
        r2.resetCounts();
        times.push((await tool(many, r2, prefix)).ms);
        ops = Object.entries(r2.counts().byOperation)
          .map(([op, k]) => `${op} ${k}`)
          .join(', ');
      }
      noop.rows.push([name, `${(median(times) / 1000).toFixed(2)} s`, ops || 'none']);
    }
    lines.push(
      `### No-op re-sync of ${count} files (s3rver + R2 rules)`,
      '',
      tableToMarkdown(noop),
    );

    // Peak RSS: a large file vs a small one, to the sink (sparse files: reading is not the limit).
    const rssTable = {
      headers: ['File', 'Median peak RSS', 'Median time'],
      rows: [] as string[][],
    };
    const rssRuns = Math.max(3, Math.min(RUNS, 5));
    for (const size of [256 * MiB, SMALL ? 1024 * MiB : 4096 * MiB]) {
      const dir = path.join(work, `rss-${size}`);
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'one.safetensors'), '');
      await truncate(path.join(dir, 'one.safetensors'), size);
      const ms: number[] = [];
      const kib: number[] = [];
      for (let i = 0; i < rssRuns; i++) {
        const m = await ourTool(dir, sink, `rss-${size}-${i}`);
        ms.push(m.ms);
        kib.push(m.rssKiB);
      }
      rssTable.rows.push([
        formatBytes(size),
        formatBytes(median(kib) * 1024),
        `${(median(ms) / 1000).toFixed(2)} s`,
      ]);
    }
    lines.push(
      '### Peak RSS of the sync-models bundle (to the discard sink)',
      '',
      tableToMarkdown(rssTable),
    );
    lines.push(
      `Reproduce: \`npm run bench -- models\` (BENCH_RUNS=${RUNS}${SMALL ? ', BENCH_SCALE=small' : ''}).`,
    );
    return lines.join('\n');
  } finally {
    await sink.stop();
    await r2.stop();
    await rm(work, { recursive: true, force: true });
  }
}
