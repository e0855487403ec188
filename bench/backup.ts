// Backup throughput: the backup-verda bundle vs the OpenSSH pipeline
// `ssh host 'tar -cf - … | zstd -T0' > file` vs the seed's `tar czf` per item, on a ~500 MiB
// fixture (half incompressible model-like bytes, half compressible text) served by the real sshd
// fixture host. The action runs as the runner runs it (`node dist/index.js`) under
// /usr/bin/time for its peak RSS, against (a) the discard sink (the client's own cost, like
// writing a file; R2's own checks run on R2's CPU, not the runner's) with verify=in-transit and
// (b) the R2 emulator (which also hashes every part, on these same 2 cores) with each verify mode.
// The honest alternative to what is shipped is the OpenSSH pipeline to a file, then `aws s3 cp`
// of that file to the same emulator (no encryption, no signed manifest: a floor, not a rival).
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { formatBytes } from '../src/lib/format.js';
import { tableToMarkdown } from '../src/lib/summary.js';
import { makeSigningKey } from '../src/sandbox/signing-key.js';
import { startDiscardSink } from '../src/sandbox/discard-sink.js';
import { startR2Emulator } from '../src/sandbox/r2.js';
import { startSshHost, type SshHost } from '../src/sandbox/ssh-host.js';
import { items, writeBackupConfig, writeFixture } from './fixture.js';
import { awsConfig } from './models.js';
import { hashedIn, named, profiledStages, type Stage } from './profile.js';
import { cpuTable, interleaved, median, timed, type Contender, type Measured } from './measure.js';
import { bundleNode } from '../tests/helpers/bundle-node.js';

const MiB = 2 ** 20;

/** Where the action's CPU goes, by stage (bench/profile.ts). */
const STAGES: Stage[] = [
  { name: 'MD5 of every part (Content-MD5, the ETag proof)', match: named('md5Hex') },
  { name: 'SHA-256 of the archive (the manifest)', match: hashedIn('next') },
  { name: 'age encryption (ChaCha20-Poly1305)', match: named('seal', 'sealChaCha') },
  { name: 'SSH decryption (ssh2, AES-GCM)', match: named('decrypt') },
  { name: 'buffer copies', match: named('_copyActual', 'copy') },
];
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const repoRoot = path.resolve(import.meta.dirname, '..');
/** BENCH_BUNDLE: another build of the action to measure (A/B of a change before committing it). */
const bundle = path.resolve(
  process.env.BENCH_BUNDLE ?? path.join(repoRoot, 'actions/backup-verda/dist/index.js'),
);
/** BENCH_BASELINE: an older build of backup-verda, run as one more contender (before/after). */
const baselineBundle = process.env.BENCH_BASELINE
  ? path.resolve(process.env.BENCH_BASELINE)
  : undefined;
/** BENCH_ACTION_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=DIR") are given to node for the action runs. */
const nodeArgs = (process.env.BENCH_ACTION_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');

export async function run(): Promise<string> {
  const scale = process.env.BENCH_SCALE === 'small' ? 10 : 1;
  const list = items(scale);
  const total = list.reduce((n, i) => n + i.size, 0);
  const host: SshHost = await startSshHost({
    models: [{ path: 'checkpoints/tiny.safetensors', size: 1024 }],
  });
  const r2 = await startR2Emulator({ buckets: ['bench'] });
  const sink = await startDiscardSink();
  const work = await mkdtemp(path.join(os.tmpdir(), 'bench-backup-'));
  try {
    await writeFixture(host.hostRoot, list);
    const identity = path.join(work, 'age.txt');
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim();
    const signing = await makeSigningKey(work);
    const config = path.join(work, 'backup.yml');
    await writeBackupConfig(config, host.hostRoot, list);
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
    const awsConfigFile = await awsConfig(work);

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
        'INPUT_SIGNING-KEY': signing.privateKey,
        INPUT_RETENTION: 'daily=7,weekly=4,monthly=6',
        'INPUT_WITH-MODELS': 'false',
        'INPUT_DRY-RUN': 'false',
        INPUT_VERIFY: verify,
        'INPUT_R2-TIMEOUT': '2m',
      };
    };

    /** The honest alternative to a target: the OpenSSH pipeline to a file, then `aws s3 cp`. */
    const alternative = (
      target: string,
      to: { endpoint: string; accessKeyId: string; secretAccessKey: string },
    ): Contender<Measured> => ({
      name: `honest alternative: the OpenSSH pipeline to a file, then \`aws s3 cp\` → ${target}`,
      run: async () => {
        const file = path.join(work, 'alternative.tar.zst');
        const pipe = await timed(
          'ssh',
          [...sshArgs, `tar -C / -cf - ${rels.join(' ')} | zstd -q -c -T0`],
          process.env,
          file,
        );
        const cp = await timed(
          'aws',
          [
            's3',
            'cp',
            file,
            `s3://bench/alternative/${Math.random().toString(36).slice(2)}.tar.zst`,
            '--endpoint-url',
            to.endpoint,
            '--only-show-errors',
          ],
          {
            ...process.env,
            AWS_ACCESS_KEY_ID: to.accessKeyId,
            AWS_SECRET_ACCESS_KEY: to.secretAccessKey,
            AWS_CONFIG_FILE: awsConfigFile,
          },
        );
        return {
          ms: pipe.ms + cp.ms,
          rssKiB: Math.max(pipe.rssKiB, cp.rssKiB),
          outBytes: pipe.outBytes,
        };
      },
    });

    const all: Contender<Measured>[] = [
      {
        name: 'backup-verda → discard sink (verify=in-transit)',
        run: () =>
          timed(
            bundleNode.path,
            [...nodeArgs, bundle],
            actionEnv(sink.endpoint, sink.accessKeyId, sink.secretAccessKey, 'in-transit'),
          ),
      },
      ...(baselineBundle
        ? [
            {
              name: `backup-verda, baseline build (${path.relative(repoRoot, baselineBundle)}) → discard sink (verify=in-transit)`,
              run: () =>
                timed(
                  bundleNode.path,
                  [...nodeArgs, baselineBundle],
                  actionEnv(sink.endpoint, sink.accessKeyId, sink.secretAccessKey, 'in-transit'),
                ),
            },
          ]
        : []),
      {
        name: 'backup-verda → R2 emulator (verify=in-transit)',
        run: () =>
          timed(
            bundleNode.path,
            [...nodeArgs, bundle],
            actionEnv(r2.endpoint, r2.accessKeyId, r2.secretAccessKey, 'in-transit'),
          ),
      },
      {
        name: 'backup-verda → R2 emulator (verify=read-back)',
        run: () =>
          timed(
            bundleNode.path,
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
      alternative('R2 emulator', r2),
      alternative('discard sink', sink),
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
            rss = Math.max(rss, s.rssKiB);
            out += s.outBytes;
          }
          return { ms, rssKiB: rss, outBytes: out };
        },
      },
    ];

    const { contenders, samples: results } = await interleaved(all, RUNS);
    // One more run to the sink, profiled: what each stage of the action costs.
    const stages = await profiledStages(path.join(work, 'profile'), STAGES, (args) =>
      timed(
        bundleNode.path,
        [...args, bundle],
        actionEnv(sink.endpoint, sink.accessKeyId, sink.secretAccessKey, 'in-transit'),
      ),
    );
    const rate = (ms: number) => total / MiB / (ms / 1000);
    const medianMs = (name: string) => median((results.get(name) ?? []).map((s) => s.ms));
    const byName = (start: string) => all.find((c) => c.name.startsWith(start))!.name;
    const openssh = medianMs(byName('OpenSSH'));
    // Each row is compared with the alternative to the same target.
    const alternativeMs = (row: string) => {
      const target = row.includes('discard sink') ? 'discard sink' : 'R2 emulator';
      const alt = all.find(
        (c) => c.name.startsWith('honest alternative') && c.name.endsWith(target),
      );
      return alt ? medianMs(alt.name) : NaN;
    };
    const seed = medianMs(byName('seed'));
    // A contender BENCH_ONLY left out has no median to compare with.
    const ratio = (other: number, ms: number) =>
      Number.isNaN(other) ? '—' : `${(other / ms).toFixed(2)}×`;
    const rows = contenders.map((c) => {
      const samples = results.get(c.name)!;
      const ms = median(samples.map((s) => s.ms));
      return [
        c.name,
        `${(ms / 1000).toFixed(2)} s`,
        `${rate(ms).toFixed(0)} MiB/s`,
        ratio(openssh, ms),
        ratio(alternativeMs(c.name), ms),
        ratio(seed, ms),
        `${((median(samples.map((s) => s.rssKiB)) * 1024) / MiB).toFixed(0)} MiB`,
        `${((Math.max(...samples.map((s) => s.rssKiB ?? 0)) * 1024) / MiB).toFixed(0)} MiB`,
      ];
    });
    return [
      `## backup: ${formatBytes(total)} fixture (half incompressible), ${RUNS} runs each, medians`,
      '',
      `Command: \`${process.env.BENCH_SCALE ? `BENCH_SCALE=${process.env.BENCH_SCALE} ` : ''}npm run bench -- backup\` ` +
        `(the action is the committed bundle, \`node ${path.relative(repoRoot, bundle)}\`). ` +
        'Goals: ≥ 0.8× OpenSSH, ≥ 3× seed, as shipped (verify=in-transit → R2 emulator) ≥ 1.5× the honest alternative, peak RSS ≤ 150 MiB. ' +
        '"vs alternative" compares each row with the alternative to the same target (the discard sink stands for R2 with its CPU off this machine).',
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
          'vs alternative',
          'vs seed',
          'peak RSS (median)',
          'peak RSS (max)',
        ],
        rows,
      }),
      '',
      'Which process held the cores (medians of each run, sampled from /proc; the bench process serves the R2 emulator and the sink; `node` is the action):',
      '',
      cpuTable(contenders, results),
      '',
      "What the action's CPU went to, by stage (one more run to the discard sink under `node --cpu-prof`, self time):",
      '',
      stages,
    ].join('\n');
  } finally {
    await sink.stop();
    await r2.stop();
    await host.stop();
    await rm(work, { recursive: true, force: true });
  }
}
