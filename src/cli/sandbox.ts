// `npm run sandbox`: the embedded default. Starts the local stand-ins (a real sshd serving a
// fixture GPU host, s3rver behind the R2 rules, the Verda emulator), checks that each answers,
// then runs the pipelines against them with the actions' own code: the nightly backup with the
// model vault, a restore drill of it, a no-op re-sync, "start workshop (H100, max 40)" with its
// warm-up job, a 15-job load test with the replica curve, the fleet idle at zero after the
// scale-down delay, and "stop". Everything is stopped at the end, whatever happened.
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { makeSigningKey, type SigningKey } from '../sandbox/signing-key.js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createR2Client } from '../lib/r2.js';
import { connectSsh } from '../lib/ssh.js';
import { tableToText } from '../lib/summary.js';
import { startR2Emulator, type R2Emulator } from '../sandbox/r2.js';
import { startSshHost, type SshHost } from '../sandbox/ssh-host.js';
import { rebuildSupport } from '../sandbox/rebuild-standins.js';
import { freshHostBooter, type FreshHostBooter } from '../sandbox/verda-instance-boot.js';
import { startVerdaEmulator, type VerdaEmulator } from '../sandbox/verda.js';
import { runActionInProcess, type ActionName, type ActionResult } from './action-runner.js';
import { runHostDied } from './sandbox-host-died.js';

export interface SandboxServices {
  ssh: SshHost;
  r2: R2Emulator;
  verda: VerdaEmulator;
  /** Boots a fresh Debian 12 per Verda instance; absent where that cannot run (not root, no nspawn). */
  booter: FreshHostBooter | undefined;
  /** Why there is no booter. */
  noBooter: string | undefined;
}

const BACKUP_BUCKET = 'comfyume-cache-backups';
const MODELS_BUCKET = 'comfyume-model-vault-backups';
const MiB = 2 ** 20;
const packageRoot = path.resolve(import.meta.dirname, '../..');
const say = (line: string) => process.stdout.write(`${line}\n`);

async function checkServices({ ssh, r2, verda }: SandboxServices): Promise<string[][]> {
  const conn = await connectSsh({
    host: ssh.host,
    port: ssh.port,
    username: ssh.user,
    privateKey: ssh.privateKey,
    fingerprints: [ssh.hostKeyFingerprint],
  });
  const who = (await conn.run('id -un')).stdout.trim();
  conn.close();
  const client = createR2Client(r2);
  const listed = await client.send(new ListObjectsV2Command({ Bucket: BACKUP_BUCKET }));
  client.destroy();
  // A real OAuth client-credentials round trip over HTTP.
  const token = await verda.token();
  return [
    [
      'GPU host (OpenSSH)',
      `${ssh.user}@${ssh.host}:${ssh.port}`,
      `login as ${who}, host key ${ssh.hostKeyFingerprint}`,
    ],
    [
      'R2 (s3rver + R2 rules)',
      r2.endpoint,
      `bucket ${BACKUP_BUCKET} listed (${listed.KeyCount ?? 0} objects)`,
    ],
    ['Verda API emulator', verda.apiUrl, `OAuth bearer token issued (${token.length} chars)`],
  ];
}

export async function startSandboxServices(): Promise<SandboxServices> {
  const support = rebuildSupport();
  const booter = support.ok ? freshHostBooter() : undefined;
  const [ssh, r2, verda] = await Promise.all([
    // A small model vault in the seed's layout (the real one is 45 GB).
    startSshHost({
      models: [
        { path: 'checkpoints/ltx-2-19b-dev-fp8.safetensors', size: 24 * MiB },
        { path: 'text_encoders/gemma_3_12B_it.safetensors', size: 12 * MiB },
        { path: 'loras/ltx-2-19b-distilled-lora-384.safetensors', size: 3 * MiB },
      ],
    }),
    startR2Emulator({ buckets: [BACKUP_BUCKET, MODELS_BUCKET] }),
    // 40× emulated time: a 30 s cold start takes under a second here.
    startVerdaEmulator({
      timeScale: 40,
      // What config/workshop.yml refers to and an account would already hold.
      secrets: [
        'hf-token',
        'r2-outputs-access-key-id',
        'r2-outputs-secret-access-key',
        'r2-outputs-endpoint',
      ],
      registryCredentials: ['ghcr-ahelme'],
      ...(booter ? { instances: { bootHost: booter.bootHost } } : {}),
    }),
  ]);
  return { ssh, r2, verda, booter, noBooter: support.reason };
}

interface Step {
  title: string;
  action: ActionName;
  inputs: Record<string, string>;
  /** The outputs worth showing in the final table. */
  show: string[];
  /** Done just before the step runs (e.g. emulated time moved on). */
  before?: () => void;
}

/** The keys the sandbox's pipelines run with: made fresh for each run, never a real one. */
interface SandboxKeys {
  /** The age identity (the drill decrypts with it) and its recipient (the backup encrypts to it). */
  identity: string;
  recipient: string;
  signing: SigningKey;
}

function pipelineSteps(s: SandboxServices, configFile: string, keys: SandboxKeys): Step[] {
  const { identity, recipient, signing } = keys;
  const r2 = {
    'r2-endpoint': s.r2.endpoint,
    'r2-access-key-id': s.r2.accessKeyId,
    'r2-secret-access-key': s.r2.secretAccessKey,
  };
  const verda = {
    'api-url': s.verda.apiUrl,
    'verda-client-id': s.verda.clientId,
    'verda-client-secret': s.verda.clientSecret,
    'inference-api-key': s.verda.inferenceKey,
    'poll-interval': '25ms',
  };
  return [
    {
      title: 'Nightly backup of the GPU host, with the model vault',
      action: 'backup-verda',
      inputs: {
        host: s.ssh.host,
        port: String(s.ssh.port),
        user: s.ssh.user,
        'ssh-private-key': s.ssh.privateKey,
        'host-key-fingerprints': s.ssh.hostKeyFingerprint,
        config: configFile,
        bucket: BACKUP_BUCKET,
        'age-recipients': recipient,
        'signing-key': signing.privateKey,
        'with-models': 'true',
        'models-bucket': MODELS_BUCKET,
        ...r2,
      },
      show: ['backup-id', 'items', 'bytes', 'tailscale-ip', 'manifest-key'],
    },
    {
      title: 'Restore drill of that backup (signature checked, its own RESTORE.sh, compared)',
      action: 'restore-drill',
      inputs: {
        bucket: BACKUP_BUCKET,
        'age-identity': identity,
        signers: signing.signersFile,
        config: configFile,
        ...r2,
      },
      show: ['backup-id', 'items', 'restore-seconds'],
    },
    {
      title: 'Model vault re-sync (nothing changed: nothing moves)',
      action: 'sync-models',
      inputs: {
        direction: 'push',
        source: `ssh://${s.ssh.user}@${s.ssh.host}:${s.ssh.port}${s.ssh.modelsDir}`,
        'ssh-private-key': s.ssh.privateKey,
        'host-key-fingerprints': s.ssh.hostKeyFingerprint,
        bucket: MODELS_BUCKET,
        ...r2,
      },
      show: ['uploaded', 'skipped', 'bytes'],
    },
    {
      title: 'Start workshop: H100, max 40',
      action: 'deploy-serverless',
      inputs: {
        command: 'start',
        preset: 'h100',
        'max-replicas': '40',
        'image-tag': 'sha-5a1dbox',
        ...verda,
      },
      show: [
        'status',
        'endpoint-url',
        'cold-start-seconds',
        'first-job-seconds',
        'hourly-cost-max',
        'replicas',
      ],
    },
    {
      title: 'Load test: 15 jobs at once',
      action: 'deploy-serverless',
      inputs: { command: 'load-test', jobs: '15', ...verda },
      show: [
        'jobs-succeeded',
        'jobs-failed',
        'latency-p50-seconds',
        'latency-p95-seconds',
        'latency-max-seconds',
        'peak-replicas',
      ],
    },
    {
      title: 'Idle past the scale-down delay (min 0): the fleet is at zero',
      action: 'deploy-serverless',
      inputs: { command: 'status', ...verda },
      show: ['status', 'replicas'],
      // config/workshop.yml's scale_down_delay_seconds, and a second more, on the emulated clock.
      before: () => s.verda.advance(301_000),
    },
    {
      title: 'Stop workshop: scale to zero and pause',
      action: 'deploy-serverless',
      inputs: { command: 'stop', ...verda },
      show: ['status', 'replicas', 'changed'],
    },
  ];
}

/** Decrypts nothing, trusts nothing: reads back the manifest the backup says it wrote. */
async function manifestFacts(r2: R2Emulator, key: string): Promise<string> {
  const client = createR2Client(r2);
  try {
    const res = await client.send(new GetObjectCommand({ Bucket: BACKUP_BUCKET, Key: key }));
    const manifest = JSON.parse(await res.Body!.transformToString()) as { items?: unknown[] };
    const listed = await client.send(new ListObjectsV2Command({ Bucket: BACKUP_BUCKET }));
    return `manifest lists ${manifest.items?.length ?? 0} items; bucket holds ${listed.KeyCount ?? 0} objects`;
  } finally {
    client.destroy();
  }
}

/** The running sandbox's cleanup, for Ctrl-C: its stand-ins stopped and its files removed. */
let stopOnInterrupt: (() => Promise<unknown>) | undefined;

/** Stops what a running sandbox started (awaited), before the process exits on a signal. */
export async function stopSandbox(): Promise<void> {
  await stopOnInterrupt?.();
}

export async function runSandbox(_flags: Record<string, string>): Promise<boolean> {
  say(
    'Starting the sandbox: a private sshd with a fixture GPU host, s3rver behind the R2 rules, the Verda emulator…',
  );
  const services = await startSandboxServices();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'comfyume-sandbox-'));
  let stopped: Promise<unknown> | undefined;
  const stop = () =>
    (stopped ??= Promise.allSettled([
      services.ssh.stop(),
      services.r2.stop(),
      services.verda.stop(),
      rm(dir, { recursive: true, force: true }),
    ]));
  stopOnInterrupt = stop;
  const results: string[][] = [];
  let ok = true;
  try {
    say(
      tableToText({
        title: '\nSandbox services',
        headers: ['service', 'address', 'check'],
        rows: await checkServices(services),
      }),
    );

    // The repository's own backup plan, pointed at the fixture host's tree and read wrapper.
    const plan = (await readFile(path.join(packageRoot, 'config/backup.yml'), 'utf8'))
      .replace(/^host-root: .*$/m, `host-root: ${services.ssh.hostRoot}`)
      .replace(/^read-wrapper: .*$/m, `read-wrapper: ${services.ssh.readWrapper}`);
    const configFile = path.join(dir, 'backup.yml');
    await writeFile(configFile, plan);
    const identity = await generateX25519Identity();
    const recipient = await identityToRecipient(identity);
    const signing = await makeSigningKey(dir);

    const steps = pipelineSteps(services, configFile, { identity, recipient, signing });
    for (const step of steps) {
      say(`\n=== ${step.title} (actions/${step.action})`);
      step.before?.();
      const result: ActionResult = await runActionInProcess(step.action, step.inputs);
      // The load test's replica curve, as its job summary draws it.
      const curve = /Replicas over time[^\n]*\n\n```\n([^`]*)```/.exec(result.summary)?.[1];
      if (curve) say(`\nReplicas over time (# running, + starting):\n${curve}`);
      ok &&= result.ok;
      const shown = step.show
        .filter((name) => result.outputs[name] !== undefined)
        .map((name) => `${name}=${result.outputs[name]}`);
      if (step.action === 'backup-verda' && result.outputs['manifest-key']) {
        shown.push(await manifestFacts(services.r2, result.outputs['manifest-key']));
      }
      results.push([step.title, result.ok ? 'ok' : 'FAILED', shown.join('\n')]);
      if (!result.ok) break;
    }
    let recovery: [string, number][] = [];
    if (ok && services.booter) {
      const backup = steps.find((step) => step.action === 'backup-verda');
      const died = await runHostDied({
        verda: services.verda,
        booter: services.booter,
        r2: services.r2,
        backupBucket: BACKUP_BUCKET,
        modelsBucket: MODELS_BUCKET,
        backupConfig: configFile,
        backupInputs: backup?.inputs ?? {},
        identity,
        signing,
        dir,
        packageRoot,
        say,
      });
      for (const phase of died.phases) {
        ok &&= phase.ok;
        results.push([phase.title, phase.ok ? 'ok' : 'FAILED', phase.shown.join('\n')]);
      }
      recovery = died.times;
    } else if (ok) {
      results.push(['The GPU host died (a fresh booted host)', 'skipped', services.noBooter ?? '']);
    }
    const counts = services.r2.counts();
    say(
      tableToText({
        title: '\nSandbox run',
        headers: ['pipeline', 'result', 'outputs'],
        rows: results.flatMap(([t, r, o]) =>
          (o ?? '')
            .split('\n')
            .map((line, i) => (i === 0 ? [t ?? '', r ?? '', line] : ['', '', line])),
        ),
      }),
    );
    if (recovery.length > 0) {
      const total = recovery.reduce((sum, [, s]) => sum + s, 0);
      say(
        tableToText({
          title: '\nRecovery time of the GPU host (click to verified, this machine)',
          headers: ['phase', 'seconds'],
          rows: [
            ...recovery.map(([phase, s]) => [phase, s.toFixed(1)]),
            ['total', total.toFixed(1)],
          ],
        }),
      );
    }
    say(
      `R2 requests: ${counts.classA} Class A, ${counts.classB} Class B. Verda API requests: ${services.verda.requests().length}.`,
    );
    return ok;
  } finally {
    await stop();
    stopOnInterrupt = undefined;
    say(
      ok
        ? 'Sandbox stopped: every pipeline passed, no process left running.'
        : 'Sandbox stopped: a pipeline FAILED (see above).',
    );
  }
}
