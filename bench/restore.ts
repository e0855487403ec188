// Restore: the restore-drill bundle (as the runner runs it: download with sha256 checks, the
// RESTORE.sh check, RESTORE.sh per item into a fresh root, then a second decryption for
// `tar --compare`) vs what an admin does by hand: `aws s3 cp --recursive` of the backup's
// directory (or `rclone copy`), then the stored RESTORE.sh with --from. One backup of a ~500 MiB
// fixture (half incompressible model-like bytes, half compressible text, as in bench/backup.ts)
// is written by the backup-verda bundle from the real sshd fixture host into the R2 emulator
// (in this process, on the same 2 cores). Every contender runs under /usr/bin/time for its peak
// RSS; medians of BENCH_RUNS (5), interleaved. BENCH_ONLY filters contenders by name.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Manifest } from '../src/backup/manifest.js';
import { inputEnv, loadActionSpec, type ActionName } from '../src/cli/action-runner.js';
import { parseOutputFile } from '../tests/helpers/output-file.js';
import { formatBytes } from '../src/lib/format.js';
import { createR2Client } from '../src/lib/r2.js';
import { tableToMarkdown } from '../src/lib/summary.js';
import { makeSigningKey } from '../src/sandbox/signing-key.js';
import { startR2Emulator, type R2Emulator } from '../src/sandbox/r2.js';
import { startSshHost, type SshHost } from '../src/sandbox/ssh-host.js';
import { items, writeBackupConfig, writeFixture } from './fixture.js';
import { interleaved, median, timed, type Contender, type Measured } from './measure.js';
import { bundleNode } from '../tests/helpers/bundle-node.js';

const MiB = 2 ** 20;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const BUCKET = 'bench';
const PREFIX = 'bench/restore';
const repoRoot = path.resolve(import.meta.dirname, '..');
const backupBundle = path.join(repoRoot, 'actions/backup-verda/dist/index.js');
/** BENCH_BUNDLE: another build of restore-drill to measure (A/B of a change before committing it). */
const drillBundle = path.resolve(
  process.env.BENCH_BUNDLE ?? path.join(repoRoot, 'actions/restore-drill/dist/index.js'),
);
/** BENCH_BASELINE: an older build of restore-drill, run as one more contender (before/after). */
const baselineBundle = process.env.BENCH_BASELINE
  ? path.resolve(process.env.BENCH_BASELINE)
  : undefined;

interface Sample extends Measured {
  /** Where the time went (seconds), when the contender reports it. */
  parts: Record<string, number>;
}

/** Seconds from formatDuration's text ("850 ms", "4.2 s", "1 m 5 s"). */
function seconds(text: string): number {
  const m = /^(?:(\d+) m )?([\d.]+) (ms|s)$/.exec(text.trim());
  if (!m) return NaN;
  return Number(m[1] ?? 0) * 60 + Number(m[2]) / (m[3] === 'ms' ? 1000 : 1);
}

export async function run(): Promise<string> {
  const scale = process.env.BENCH_SCALE === 'small' ? 10 : 1;
  const list = items(scale);
  const total = list.reduce((n, i) => n + i.size, 0);
  let sshHost: SshHost | undefined;
  let emulator: R2Emulator | undefined;
  let client: S3Client | undefined;
  const work = await mkdtemp(path.join(os.tmpdir(), 'bench-restore-'));
  try {
    const host = (sshHost = await startSshHost({
      models: [{ path: 'checkpoints/tiny.safetensors', size: 1024 }],
    }));
    const r2 = (emulator = await startR2Emulator({ buckets: [BUCKET] }));
    const s3 = (client = createR2Client({
      endpoint: r2.endpoint,
      accessKeyId: r2.accessKeyId,
      secretAccessKey: r2.secretAccessKey,
    }));
    await writeFixture(host.hostRoot, list);
    const identityFile = path.join(work, 'age.txt');
    execFileSync('age-keygen', ['-o', identityFile], { stdio: 'ignore' });
    const identityText = await readFile(identityFile, 'utf8');
    const recipient = execFileSync('age-keygen', ['-y', identityFile], {
      encoding: 'utf8',
    }).trim();
    const config = path.join(work, 'backup.yml');
    await writeBackupConfig(config, host.hostRoot, list);
    const signing = await makeSigningKey(work);
    const baseEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };

    /** An action's bundle as the runner runs it: INPUT_* (action.yml defaults applied) and files. */
    let runCount = 0;
    const actionEnv = async (name: ActionName, inputs: Record<string, string>) => {
      const dir = path.join(work, `run-${name}-${runCount++}`);
      await mkdir(path.join(dir, 'runner-temp'), { recursive: true });
      const files = {
        output: path.join(dir, 'output'),
        summary: path.join(dir, 'summary'),
        runnerTemp: path.join(dir, 'runner-temp'),
      };
      await writeFile(files.output, '');
      await writeFile(files.summary, '');
      const env: NodeJS.ProcessEnv = {
        ...inputEnv(await loadActionSpec(name), inputs),
        ...baseEnv,
        NODE_OPTIONS: '--openssl-legacy-provider',
        GITHUB_ACTIONS: 'true',
        GITHUB_OUTPUT: files.output,
        GITHUB_STEP_SUMMARY: files.summary,
        RUNNER_TEMP: files.runnerTemp,
      };
      return { dir, env, files };
    };

    // The one backup every contender restores.
    process.stderr.write(`  writing one backup of ${formatBytes(total)} with backup-verda\n`);
    const backup = await actionEnv('backup-verda', {
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
    });
    const made = await timed(bundleNode.path, [backupBundle], backup.env);
    const manifestKey = parseOutputFile(await readFile(backup.files.output, 'utf8'))[
      'manifest-key'
    ];
    if (!manifestKey) throw new Error('backup-verda gave no manifest-key output');
    await rm(backup.dir, { recursive: true, force: true });
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: manifestKey }));
    const manifest = JSON.parse(await got.Body!.transformToString()) as Manifest;
    const stored =
      manifest.items.reduce((n, i) => n + i.storedBytes, 0) + manifest.restoreScript.bytes;
    const backupDir = `${PREFIX}/${manifest.backupId}/`;
    process.stderr.write(
      `  backup ${manifest.backupId}: ${formatBytes(stored)} stored, ${(made.ms / 1000).toFixed(1)} s\n`,
    );

    const awsConfig = path.join(work, 'aws-config');
    await writeFile(
      awsConfig,
      [
        '[default]',
        'region = auto',
        'request_checksum_calculation = when_required',
        'response_checksum_validation = when_required',
        '',
      ].join('\n'),
    );
    const s3Env = {
      ...baseEnv,
      AWS_ACCESS_KEY_ID: r2.accessKeyId,
      AWS_SECRET_ACCESS_KEY: r2.secretAccessKey,
      AWS_CONFIG_FILE: awsConfig,
    };
    const rcloneEnv = {
      ...baseEnv,
      RCLONE_CONFIG_R2_TYPE: 's3',
      RCLONE_CONFIG_R2_PROVIDER: 'Other',
      RCLONE_CONFIG_R2_ACCESS_KEY_ID: r2.accessKeyId,
      RCLONE_CONFIG_R2_SECRET_ACCESS_KEY: r2.secretAccessKey,
      RCLONE_CONFIG_R2_ENDPOINT: r2.endpoint,
      RCLONE_CONFIG_R2_REGION: 'auto',
      RCLONE_CONFIG_R2_FORCE_PATH_STYLE: 'true',
    };

    const drill = async (bundle = drillBundle): Promise<Sample> => {
      const { dir, env, files } = await actionEnv('restore-drill', {
        bucket: BUCKET,
        prefix: PREFIX,
        'r2-endpoint': r2.endpoint,
        'r2-access-key-id': r2.accessKeyId,
        'r2-secret-access-key': r2.secretAccessKey,
        'age-identity': identityText,
        signers: signing.signersFile,
        config,
      });
      try {
        const s = await timed(bundleNode.path, [bundle], env);
        const outputs = parseOutputFile(await readFile(files.output, 'utf8'));
        if (outputs.items !== String(manifest.items.length) || outputs.bytes !== String(stored))
          throw new Error(`restore-drill outputs unexpected: ${JSON.stringify(outputs)}`);
        const left = await readdir(files.runnerTemp);
        if (left.length > 0) throw new Error(`restore-drill left ${left.join(', ')} behind`);
        const summary = await readFile(files.summary, 'utf8');
        const cell = (name: string) =>
          seconds(
            new RegExp(`\\| \\*\\*${name}\\*\\* \\| (?:.* in )?([^|]+) \\|`).exec(summary)?.[1] ??
              '',
          );
        return {
          ...s,
          parts: {
            download: cell('download'),
            'RESTORE.sh': cell('RESTORE.sh'),
            comparison: cell('comparison'),
          },
        };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    };

    /** Download with `fetch`, then the stored RESTORE.sh from that directory into a fresh root. */
    const byHand =
      (fetch: (into: string) => [string, string[], NodeJS.ProcessEnv]) =>
      async (): Promise<Sample> => {
        const dir = await mkdtemp(path.join(work, 'by-hand-'));
        try {
          const archives = path.join(dir, 'archives');
          const root = path.join(dir, 'root');
          await mkdir(root);
          const [cmd, args, env] = fetch(archives);
          const dl = await timed(cmd, args, env);
          const restore = await timed(
            'bash',
            [
              path.join(archives, 'RESTORE.sh'),
              '--signers',
              signing.signersFile,
              '--identity',
              identityFile,
              '--from',
              archives,
              '--root',
              root,
              '--skip-after-restore',
            ],
            baseEnv,
          );
          return {
            ms: dl.ms + restore.ms,
            rssKiB: Math.max(dl.rssKiB, restore.rssKiB),
            outBytes: 0,
            parts: { download: dl.ms / 1000, 'RESTORE.sh': restore.ms / 1000 },
          };
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      };

    const AWS = 'by hand: `aws s3 cp --recursive` + RESTORE.sh';
    const all: Contender<Sample>[] = [
      {
        name: 'restore-drill (download, verify, RESTORE.sh, tar --compare)',
        run: () => drill(),
      },
      ...(baselineBundle
        ? [
            {
              name: `restore-drill, baseline build (${path.relative(repoRoot, baselineBundle)})`,
              run: () => drill(baselineBundle),
            },
          ]
        : []),
      {
        name: AWS,
        run: byHand((into) => [
          'aws',
          [
            's3',
            'cp',
            '--recursive',
            '--only-show-errors',
            '--endpoint-url',
            r2.endpoint,
            `s3://${BUCKET}/${backupDir}`,
            into,
          ],
          s3Env,
        ]),
      },
      {
        name: 'by hand: `rclone copy` + RESTORE.sh',
        run: byHand((into) => ['rclone', ['copy', `r2:${BUCKET}/${backupDir}`, into], rcloneEnv]),
      },
    ];

    const { contenders, samples: results } = await interleaved(all, RUNS);

    const medianMs = (name: string) => median((results.get(name) ?? []).map((s) => s.ms));
    const aws = medianMs(AWS);
    const rows = contenders.map((c) => {
      const samples = results.get(c.name)!;
      const ms = median(samples.map((s) => s.ms));
      return [
        c.name,
        `${(ms / 1000).toFixed(2)} s`,
        `${(stored / MiB / (ms / 1000)).toFixed(0)} MiB/s`,
        Number.isNaN(aws) ? '-' : `${(aws / ms).toFixed(2)}×`,
        `${((median(samples.map((s) => s.rssKiB)) * 1024) / MiB).toFixed(0)} MiB`,
      ];
    });
    const partNames = ['download', 'RESTORE.sh', 'comparison'];
    const partRows = contenders.map((c) => {
      const samples = results.get(c.name)!;
      return [
        c.name,
        ...partNames.map((p) => {
          const xs = samples.map((s) => s.parts[p]).filter((x): x is number => x !== undefined);
          return xs.length > 0 ? `${median(xs).toFixed(1)} s` : '-';
        }),
      ];
    });
    return [
      `## restore: one backup of a ${formatBytes(total)} fixture (${formatBytes(stored)} stored, half incompressible), ${RUNS} runs each, medians`,
      '',
      `Command: \`${process.env.BENCH_SCALE ? `BENCH_SCALE=${process.env.BENCH_SCALE} ` : ''}BENCH_RUNS=${RUNS} npm run bench -- restore\` ` +
        `(the drill is \`node ${path.relative(repoRoot, drillBundle)}\`` +
        (baselineBundle
          ? `; the baseline, with \`BENCH_BASELINE=${path.relative(repoRoot, baselineBundle)}\`, \`node ${path.relative(repoRoot, baselineBundle)}\``
          : '') +
        '). ' +
        'R2 is the emulator in the bench process, on the same 2 cores. MiB/s = stored (encrypted) bytes / wall time. ' +
        'Peak RSS from /usr/bin/time: for the drill, the largest of node and its children; by hand, the largest of the two steps.',
      '',
      tableToMarkdown({
        headers: ['contender', 'time', 'MiB/s', 'vs aws-cli by hand', 'peak RSS (median)'],
        rows,
      }),
      'Where the time goes (medians; the drill’s from its job summary, whole seconds above 10 s):',
      '',
      tableToMarkdown({ headers: ['contender', ...partNames], rows: partRows }),
      'The drill does more than the restore by hand: it checks RESTORE.sh against the generated one, ' +
        'and then decrypts and decompresses every archive a second time for `tar --compare`, which ' +
        "reads every restored file back (overlapped with the next item's download and RESTORE.sh: " +
        "the drill's step times are busy times and add up to more than its wall time); " +
        'by hand there is no comparison.',
    ].join('\n');
  } finally {
    client?.destroy();
    await emulator?.stop();
    await sshHost?.stop();
    await rm(work, { recursive: true, force: true });
  }
}
