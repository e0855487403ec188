// Model vault pull: how fast the vault comes back onto a rebuilt GPU host. The sync-models bundle
// pulling from the R2 emulator (s3rver behind the R2 rules) onto the real sshd fixture host over
// SSH (target ssh://user@host:port/dir, pinned key: what rebuild-host.yml runs after a restore)
// vs what an admin would do by hand: `rclone copy` or `aws s3 cp --recursive` to a local staging
// dir then `scp -r` to the host; `rclone cat | ssh host 'cat > f'` per file (streamed, no local
// disk); and the floor, `ssh host 'cat > f' < file` of the same bytes already local (OpenSSH
// alone). Data: one 1 GiB file + four 20 MiB ones (BENCH_SCALE=small: 128 MiB + 4 × 4 MiB), put
// in the vault once by the sync-models bundle (so models-manifest.json holds every sha256, as in
// production). Every contender is a child process under /usr/bin/time; medians of BENCH_RUNS
// (5), interleaved. BENCH_ONLY filters contenders by name. The by-hand pipelines are bash
// scripts with constant text (values come in through the environment) printed in the report.
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inputEnv, loadActionSpec } from '../src/cli/action-runner.js';
import { formatBytes } from '../src/lib/format.js';
import { bashText } from '../src/lib/shell.js';
import { tableToMarkdown } from '../src/lib/summary.js';
import { startR2Emulator, type R2Emulator } from '../src/sandbox/r2.js';
import { startSshHost, type SshHost } from '../src/sandbox/ssh-host.js';
import { parseOutputFile } from '../tests/helpers/output-file.js';
import { interleaved, median, timed, type Contender, type Measured } from './measure.js';
import { bundleNode } from '../tests/helpers/bundle-node.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SMALL = process.env.BENCH_SCALE === 'small';
const BUCKET = 'bench-vault';
const PREFIX = 'models';
/** The seed's model vault (LTX-2 checkpoint, Gemma text encoder, upscaler, LoRAs). */
const VAULT_GIB = 45;
const repoRoot = path.resolve(import.meta.dirname, '..');
/** BENCH_BUNDLE: another build of sync-models to measure (A/B of a change before committing it). */
const bundle = path.resolve(
  process.env.BENCH_BUNDLE ?? path.join(repoRoot, 'actions/sync-models/dist/index.js'),
);

interface Sample extends Measured {
  /** Seconds per step, for the two-step pipelines. */
  parts: Record<string, number>;
}

// ---- the by-hand pipelines (constant bash; values from the environment) --------------------

const SSH_OPTS = bashText`set -euo pipefail
# OpenSSH pinned to the fixture host's key (checked against its SHA256 fingerprint first).
ssh_opts=(-F /dev/null -i "$KEY" -o IdentitiesOnly=yes -o BatchMode=yes -o LogLevel=ERROR
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$KNOWN_HOSTS")
`;

const SCRIPTS = {
  'fetch-rclone': bashText`set -euo pipefail
# rclone's defaults: --transfers 4, files over 250 MiB fetched in 4 ranged streams.
rclone copy "r2:$BUCKET/$PREFIX" "$STAGE"
`,
  'fetch-aws': bashText`set -euo pipefail
# aws-cli's defaults: 10 concurrent requests, 8 MB ranged parts.
aws s3 cp --recursive --only-show-errors --endpoint-url "$R2_ENDPOINT" "s3://$BUCKET/$PREFIX/" "$STAGE"
`,
  'send-scp':
    SSH_OPTS +
    bashText`# The target does not exist yet: scp -r creates it as a copy of the staging dir.
scp "$\{ssh_opts[@]}" -q -r -P "$PORT" "$STAGE" "$HOST_USER@$HOST:$TARGET"
`,
  'stream-rclone-ssh':
    SSH_OPTS +
    bashText`# One file at a time: rclone cat's bytes straight into cat on the host.
rclone lsf -R --files-only --include '*.safetensors' "r2:$BUCKET/$PREFIX" |
  while IFS= read -r f; do
    dest="$TARGET/$f"
    rclone cat "r2:$BUCKET/$PREFIX/$f" |
      ssh "$\{ssh_opts[@]}" -p "$PORT" "$HOST_USER@$HOST" \
        "mkdir -p -- $(printf %q "$(dirname -- "$dest")") && cat > $(printf %q "$dest")"
  done
`,
  'floor-ssh-cat':
    SSH_OPTS +
    bashText`# The same bytes already on the runner's disk: OpenSSH alone, one connection per file.
cd "$SRC"
find . -type f -printf '%P\n' | sort |
  while IFS= read -r f; do
    dest="$TARGET/$f"
    ssh "$\{ssh_opts[@]}" -p "$PORT" "$HOST_USER@$HOST" \
      "mkdir -p -- $(printf %q "$(dirname -- "$dest")") && cat > $(printf %q "$dest")" < "$f"
  done
`,
} as const;
type ScriptName = keyof typeof SCRIPTS;

// ---- data ------------------------------------------------------------------------------------

/** Incompressible bytes (AES-CTR keystream, fast) written to `file`; returns their sha256. */
async function writeRandom(file: string, size: number): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  const sha = createHash('sha256');
  const out = createWriteStream(file);
  const zeros = Buffer.alloc(8 * MiB);
  for (let left = size; left > 0; left -= zeros.length) {
    const chunk = cipher.update(zeros.subarray(0, Math.min(zeros.length, left)));
    sha.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
  return sha.digest('hex');
}

async function fileSha256(file: string): Promise<string> {
  const sha = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: MiB }) as AsyncIterable<Buffer>)
    sha.update(chunk);
  return sha.digest('hex');
}

/** Relative paths of the regular files under `dir`. */
async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, child)));
    else if (e.isFile()) out.push(child);
  }
  return out.sort();
}

export async function run(): Promise<string> {
  const areaStarted = Date.now();
  const big = SMALL ? 128 * MiB : 1024 * MiB;
  const small = SMALL ? 4 * MiB : 20 * MiB;
  const files: Record<string, number> = { 'checkpoints/big.safetensors': big };
  for (let i = 0; i < 4; i++) files[`loras/l${i}.safetensors`] = small;
  const total = Object.values(files).reduce((a, b) => a + b, 0);

  let sshHost: SshHost | undefined;
  let emulator: R2Emulator | undefined;
  const work = await mkdtemp(path.join(os.tmpdir(), 'bench-pull-'));
  try {
    const host = (sshHost = await startSshHost({ models: [] }));
    const r2 = (emulator = await startR2Emulator({ buckets: [BUCKET] }));
    const data = path.join(work, 'data');
    const sha: Record<string, string> = {};
    for (const [rel, size] of Object.entries(files))
      sha[rel] = await writeRandom(path.join(data, rel), size);

    // Pinned OpenSSH for the by-hand pipelines: the scanned key must have the fixture's fingerprint.
    const keyFile = path.join(work, 'id');
    await writeFile(keyFile, host.privateKey, { mode: 0o600 });
    const knownHosts = path.join(work, 'known_hosts');
    const scanned = execFileSync(
      'ssh-keyscan',
      ['-p', String(host.port), '-t', 'ed25519', host.host],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    );
    await writeFile(knownHosts, scanned);
    const printed = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', knownHosts], {
      encoding: 'utf8',
    });
    if (!printed.includes(host.hostKeyFingerprint))
      throw new Error(
        `ssh-keyscan of ${host.host}:${host.port} gave ${printed.trim()}, not ${host.hostKeyFingerprint}`,
      );

    // Where every run lands on the host: a fresh directory under one the test user owns.
    const hostBase = path.join(host.hostRoot, 'pull-bench');
    await mkdir(hostBase, { mode: 0o755 });
    const uid = Number(execFileSync('id', ['-u', host.user], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', host.user], { encoding: 'utf8' }).trim());
    await chown(hostBase, uid, gid);

    const baseEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
    const emptyManifest = path.join(work, 'models.yml');
    await writeFile(emptyManifest, 'models: []\n');
    let runCount = 0;
    const syncModels = async (inputs: Record<string, string>) => {
      const dir = path.join(work, `action-${runCount++}`);
      const runnerTemp = path.join(dir, 'runner-temp');
      await mkdir(runnerTemp, { recursive: true });
      const output = path.join(dir, 'output');
      await writeFile(output, '');
      await writeFile(path.join(dir, 'summary'), '');
      const env: NodeJS.ProcessEnv = {
        ...inputEnv(await loadActionSpec('sync-models'), {
          bucket: BUCKET,
          prefix: PREFIX,
          'r2-endpoint': r2.endpoint,
          'r2-access-key-id': r2.accessKeyId,
          'r2-secret-access-key': r2.secretAccessKey,
          manifest: emptyManifest,
          'hf-fallback': 'false',
          ...inputs,
        }),
        ...baseEnv,
        NODE_OPTIONS: '--openssl-legacy-provider',
        GITHUB_ACTIONS: 'true',
        GITHUB_OUTPUT: output,
        GITHUB_STEP_SUMMARY: path.join(dir, 'summary'),
        RUNNER_TEMP: runnerTemp,
      };
      try {
        const m = await timed(bundleNode.path, [bundle], env);
        const left = await readdir(runnerTemp);
        if (left.length > 0) throw new Error(`sync-models left ${left.join(', ')} in RUNNER_TEMP`);
        return { ...m, outputs: parseOutputFile(await readFile(output, 'utf8')) };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    };

    // The vault, as a push from the old host left it (models-manifest.json with every sha256).
    process.stderr.write(`  pushing ${formatBytes(total)} into the vault with sync-models\n`);
    const pushed = await syncModels({ direction: 'push', source: data, compare: 'size' });
    if (pushed.outputs.uploaded !== String(Object.keys(files).length))
      throw new Error(`the push gave ${JSON.stringify(pushed.outputs)}`);

    const scriptDir = path.join(work, 'scripts');
    await mkdir(scriptDir);
    for (const [name, text] of Object.entries(SCRIPTS))
      await writeFile(path.join(scriptDir, `${name}.sh`), text);
    const scriptEnv = {
      ...baseEnv,
      KEY: keyFile,
      KNOWN_HOSTS: knownHosts,
      HOST: host.host,
      PORT: String(host.port),
      HOST_USER: host.user,
      BUCKET,
      PREFIX,
      R2_ENDPOINT: r2.endpoint,
      SRC: data,
      // rclone's remote `r2:` and the aws CLI, both pointed at the emulator.
      RCLONE_CONFIG_R2_TYPE: 's3',
      RCLONE_CONFIG_R2_PROVIDER: 'Cloudflare',
      RCLONE_CONFIG_R2_ACCESS_KEY_ID: r2.accessKeyId,
      RCLONE_CONFIG_R2_SECRET_ACCESS_KEY: r2.secretAccessKey,
      RCLONE_CONFIG_R2_ENDPOINT: r2.endpoint,
      RCLONE_CONFIG_R2_REGION: 'auto',
      RCLONE_CONFIG_R2_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: r2.accessKeyId,
      AWS_SECRET_ACCESS_KEY: r2.secretAccessKey,
      AWS_CONFIG_FILE: path.join(work, 'aws-config'),
    };
    await writeFile(
      scriptEnv.AWS_CONFIG_FILE,
      [
        '[default]',
        'region = auto',
        'request_checksum_calculation = when_required',
        'response_checksum_validation = when_required',
        '',
      ].join('\n'),
    );
    const script = (name: ScriptName, env: Record<string, string>) =>
      timed('bash', [path.join(scriptDir, `${name}.sh`)], { ...scriptEnv, ...env });

    /**
     * What landed on the host: every file at its size, nothing else (models-manifest.json aside,
     * which the by-hand copies bring along); sha256 of every file on each contender's first run.
     */
    const checked = new Set<string>();
    const verify = async (name: string, target: string): Promise<void> => {
      const got = (await listFiles(target)).filter((f) => f !== 'models-manifest.json');
      if (got.join('\n') !== Object.keys(files).sort().join('\n'))
        throw new Error(`${name} left ${got.join(', ')} in ${target}`);
      for (const [rel, size] of Object.entries(files)) {
        const st = await stat(path.join(target, rel));
        if (st.size !== size) throw new Error(`${name}: ${rel} is ${st.size} bytes, not ${size}`);
        if (st.uid !== uid) throw new Error(`${name}: ${rel} was not written by ${host.user}`);
        if (!checked.has(name) && (await fileSha256(path.join(target, rel))) !== sha[rel])
          throw new Error(`${name}: ${rel} arrived with other bytes`);
      }
      checked.add(name);
    };

    let n = 0;
    /** One run into a fresh host directory (and staging dir), both removed afterwards. */
    const once =
      (name: string, go: (target: string, stage: string) => Promise<Sample>) =>
      async (): Promise<Sample> => {
        const target = path.join(hostBase, `run-${n}`);
        const stage = path.join(work, `stage-${n++}`);
        try {
          const s = await go(target, stage);
          await verify(name, target);
          return s;
        } finally {
          await rm(target, { recursive: true, force: true });
          await rm(stage, { recursive: true, force: true });
        }
      };
    const twoSteps =
      (fetch: ScriptName) =>
      async (target: string, stage: string): Promise<Sample> => {
        const a = await script(fetch, { STAGE: stage });
        const b = await script('send-scp', { STAGE: stage, TARGET: target });
        return {
          ms: a.ms + b.ms,
          rssKiB: Math.max(a.rssKiB, b.rssKiB),
          outBytes: 0,
          parts: { 'R2 → runner disk': a.ms / 1000, 'runner disk → host': b.ms / 1000 },
        };
      };
    const oneStep =
      (name: ScriptName) =>
      async (target: string): Promise<Sample> => ({
        ...(await script(name, { TARGET: target })),
        parts: {},
      });

    const BUNDLE = 'sync-models pull (this action)';
    const VIA_HOST = 'sync-models pull via host (presigned URLs)';
    const RCLONE = 'rclone copy + scp -r';
    const STREAM = 'rclone cat | ssh cat';
    const AWS = 'aws s3 cp + scp -r';
    const FLOOR = 'ssh cat < local file (floor)';
    const HASH = 'sha256sum of the same bytes';
    const pullAction = (name: string, pullVia: string) =>
      once(name, async (target) => {
        const m = await syncModels({
          direction: 'pull',
          target: `ssh://${host.user}@${host.host}:${host.port}${target}`,
          'ssh-private-key': host.privateKey,
          'host-key-fingerprints': host.hostKeyFingerprint,
          'pull-via': pullVia,
        });
        if (
          m.outputs.downloaded !== String(Object.keys(files).length) ||
          m.outputs.bytes !== String(total)
        )
          throw new Error(`sync-models pull (${pullVia}) gave ${JSON.stringify(m.outputs)}`);
        return { ...m, parts: {} };
      });
    const all: Contender<Sample>[] = [
      { name: BUNDLE, run: pullAction(BUNDLE, 'runner') },
      // The host's curl GETs from the emulator itself (the fixture host is this machine).
      { name: VIA_HOST, run: pullAction(VIA_HOST, 'host') },
      { name: RCLONE, run: once(RCLONE, twoSteps('fetch-rclone')) },
      { name: STREAM, run: once(STREAM, oneStep('stream-rclone-ssh')) },
      { name: AWS, run: once(AWS, twoSteps('fetch-aws')) },
      { name: FLOOR, run: once(FLOOR, oneStep('floor-ssh-cat')) },
      // Not a pipeline: what the action's check on the host costs here (the host is this machine).
      {
        name: HASH,
        run: async () => ({
          ...(await timed(
            'sha256sum',
            Object.keys(files).map((f) => path.join(data, f)),
            baseEnv,
          )),
          parts: {},
        }),
      },
    ];

    const { contenders, samples } = await interleaved(all, RUNS);

    const medianMs = (name: string) => median((samples.get(name) ?? []).map((s) => s.ms));
    const others = [BUNDLE, RCLONE, STREAM, AWS, FLOOR].filter((o) =>
      contenders.some((c) => c.name === o),
    );
    const rows = contenders
      .filter((c) => c.name !== HASH)
      .map((c) => {
        const ss = samples.get(c.name) ?? [];
        const ms = median(ss.map((s) => s.ms));
        const rate = total / MiB / (ms / 1000);
        return [
          c.name,
          `${(ms / 1000).toFixed(2)} s`,
          rate.toFixed(0),
          ...others.map((o) => (o === c.name ? '-' : `${(medianMs(o) / ms).toFixed(2)}×`)),
          formatBytes(median(ss.map((s) => s.rssKiB)) * 1024),
          `${((VAULT_GIB * GiB) / MiB / rate / 60).toFixed(1)} min`,
        ];
      });
    const parts = contenders
      .filter((c) => (samples.get(c.name) ?? []).some((s) => Object.keys(s.parts).length > 0))
      .map((c) => {
        const ss = samples.get(c.name) ?? [];
        return [
          c.name,
          ...['R2 → runner disk', 'runner disk → host'].map(
            (p) => `${median(ss.map((s) => s.parts[p] ?? NaN)).toFixed(2)} s`,
          ),
        ];
      });

    const hashMs = medianMs(HASH);
    const bundleMs = medianMs(BUNDLE);
    const hashLine = Number.isNaN(hashMs)
      ? []
      : [
          `The action’s own check, \`sha256sum\` of the same ${formatBytes(total)} on this machine: ${(hashMs / 1000).toFixed(2)} s median` +
            (Number.isNaN(bundleMs)
              ? '.'
              : ` (${((hashMs / bundleMs) * 100).toFixed(0)} % of the action’s time). The action hashes on the host while it writes (\`tee\` into \`sha256sum\`, on another core of the host), so on a host with a core to spare this costs little wall time; a resumed file is hashed whole once more.`),
          '',
        ];
    const minutes = (Date.now() - areaStarted) / 60_000;
    const envLine = `${SMALL ? 'BENCH_SCALE=small ' : ''}BENCH_RUNS=${RUNS}`;
    return [
      `## pull: the model vault back onto a rebuilt host (${formatBytes(total)}: 1 × ${formatBytes(big)} + 4 × ${formatBytes(small)}), ${RUNS} runs each, interleaved, medians`,
      '',
      `Command: \`${envLine} npm run bench -- pull\` (the action is the committed bundle, \`node ${path.relative(repoRoot, bundle)}\`, ` +
        'with direction=pull, target=ssh://user@127.0.0.1:PORT/dir, the pinned host key and action.yml’s defaults: concurrency 4; pull-via runner, and host for the presigned-URL row). ' +
        'R2 is the emulator (s3rver behind the R2 rules) in the bench process; the GPU host is the real OpenSSH sshd fixture on loopback; all on the same 2 cores. ' +
        `Every run writes into a fresh directory on the host; sizes and owner are checked after every run, sha256 after each contender’s first. Area time: ${minutes.toFixed(1)} min.`,
      '',
      tableToMarkdown({
        headers: [
          'contender',
          'time',
          'MiB/s',
          ...others.map((o) => `vs ${o}`),
          'peak RSS (median)',
          `${VAULT_GIB} GiB vault at this rate`,
        ],
        rows,
      }),
      'Ratios are speed-ups of the row over the named contender (its time ÷ this row’s time). ' +
        'Peak RSS from /usr/bin/time: the bundle’s node process; for a script, its largest process (for two steps, the larger step).',
      '',
      ...hashLine,
      ...(parts.length > 0
        ? [
            'The two-step pipelines, step by step (medians):',
            '',
            tableToMarkdown({
              headers: ['contender', 'R2 → runner disk', 'runner disk → host'],
              rows: parts,
            }),
          ]
        : []),
      'What each verifies: the action checks every file’s size and sha256 (from models-manifest.json) with `sha256sum` on the host (taken while writing) before renaming `.partial` into place, and resumes with a Range after a cut. ' +
        'By hand: rclone checks sizes, and MD5 only where an ETag is a plain MD5 (not on multipart objects such as the big one); aws-cli (checksums when_required, as R2 needs) checks sizes; scp and ssh cat only SSH’s own MAC in transit. ' +
        'To match the action they would add `sha256sum -c` on the host, one more read of every byte there.',
      '',
      `The ${VAULT_GIB} GiB estimate is the client’s own ceiling on this 2-core machine: loopback has no real network, and the R2 emulator and sshd share the cores with the client. ` +
        'A real rebuild is bounded by R2 → Verda bandwidth (and, with pull-via runner, by the runner’s link, since the action relays the bytes through the runner; with pull-via host the runner only signs and the host’s curl fetches from R2).',
      '',
      'The pipelines by hand (bash; values from the environment: KEY, KNOWN_HOSTS, HOST, PORT, HOST_USER, BUCKET, PREFIX, R2_ENDPOINT, SRC, STAGE, TARGET; rclone’s remote `r2:` and aws from RCLONE_CONFIG_R2_* / AWS_*):',
      '',
      ...Object.entries(SCRIPTS).flatMap(([name, text]) => [
        `\`${name}.sh\`:`,
        '',
        '```bash',
        text.trimEnd(),
        '```',
        '',
      ]),
    ].join('\n');
  } finally {
    await emulator?.stop();
    await sshHost?.stop();
    await rm(work, { recursive: true, force: true });
  }
}
