// The worker for real, without Docker: the real entrypoint.sh, its supervisor and the real
// comfyume_health custom node, run by a Python ComfyUI stand-in (tests/fixtures/comfyui-stand-in)
// against the R2 emulator with real rclone. Readiness follows the models of a models list;
// finished outputs land in R2 (sha256 compared); SIGTERM drains: the running job finishes within
// the grace period, or is reported with an INCOMPLETE.json marker and a non-zero exit.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startR2Emulator, type R2Emulator } from '../../src/sandbox/r2.js';
import { closedPort } from '../helpers/closed-port.js';
import { findLeaks } from '../helpers/secrets.js';

const root = path.resolve(import.meta.dirname, '../..');
const workerDir = path.join(root, 'comfyui-worker');
const standIn = path.join(root, 'tests/fixtures/comfyui-stand-in/main.py');
const BUCKET = 'workshop-outputs';
const PREFIX = 'run-1/outputs';

const hasRclone = spawnSync('rclone', ['version']).status === 0;
if (!hasRclone) console.warn('worker-outputs: rclone is missing (apt-get install rclone): skipped');

let work: string;
let comfyDir: string;
let models: string;
let r2: R2Emulator;
const logs: string[] = [];

beforeAll(async () => {
  work = realpathSync(mkdtempSync(path.join(tmpdir(), 'worker-outputs-')));
  comfyDir = path.join(work, 'ComfyUI');
  models = path.join(work, 'models');
  // The image's layout: main.py in COMFYUI_DIR, the custom node under custom_nodes/.
  mkdirSync(path.join(comfyDir, 'custom_nodes'), { recursive: true });
  symlinkSync(standIn, path.join(comfyDir, 'main.py'));
  symlinkSync(
    path.join(workerDir, 'custom_nodes/comfyume_health'),
    path.join(comfyDir, 'custom_nodes/comfyume_health'),
  );
  mkdirSync(models);
  r2 = await startR2Emulator({ buckets: [BUCKET] });
});

afterAll(async () => {
  await r2?.stop();
  rmSync(work, { recursive: true, force: true });
});

afterAll(() => {
  // Whatever the runs printed, no R2 secret is in it.
  if (r2)
    expect(findLeaks([r2.secretAccessKey, r2.accessKeyId], { logs: logs.join('\n') })).toEqual([]);
});

type Worker = {
  child: ChildProcess;
  port: number;
  out: () => string;
  marker: string;
  url: (p: string) => string;
};

let runs = 0;

/** Starts entrypoint.sh in a process group of its own, as tini -g sees it in the image. */
async function startWorker(env: Record<string, string>): Promise<Worker> {
  const port = await closedPort();
  const marker = path.join(work, `stand-in-${++runs}.pid`);
  let text = '';
  const child = spawn('bash', [path.join(workerDir, 'entrypoint.sh')], {
    detached: true,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: work,
      PYTHONDONTWRITEBYTECODE: '1',
      PYTHON: 'python3',
      COMFYUI_DIR: comfyDir,
      MODELS_DIR: models,
      LISTEN: '127.0.0.1',
      PORT: String(port),
      WORKER_RUNTIME_DIR: path.join(work, `run-${runs}`),
      STAND_IN_MARKER: marker,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  child.once('exit', () => logs.push(text));
  return { child, port, out: () => text, marker, url: (p) => `http://127.0.0.1:${port}${p}` };
}

function stop(w: Worker): void {
  for (const pid of [
    w.child.pid,
    existsSync(w.marker) ? Number(readFileSync(w.marker, 'utf8')) : 0,
  ])
    if (pid)
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
}

function exited(child: ChildProcess, ms: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  tries = 300,
): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function up(w: Worker): Promise<void> {
  await until('the worker to answer /health', async () => {
    if (w.child.exitCode !== null) throw new Error(`exited early:\n${w.out()}`);
    return (await fetch(w.url('/health'))).ok ? true : undefined;
  });
}

/** A prompt of StandInSave nodes: each sleeps `seconds`, then writes `bytes` random bytes. */
async function submit(
  w: Worker,
  saves: { seconds: number; bytes: number; prefix: string; subfolder?: string }[],
): Promise<{ status: number; id: string }> {
  const prompt = Object.fromEntries(
    saves.map((s, i) => [
      String(i + 1),
      {
        class_type: 'StandInSave',
        inputs: {
          seconds: s.seconds,
          bytes: s.bytes,
          filename_prefix: s.prefix,
          subfolder: s.subfolder ?? '',
        },
      },
    ]),
  );
  const res = await fetch(w.url('/prompt'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt }),
  });
  const body = (await res.json()) as { prompt_id?: string };
  return { status: res.status, id: body.prompt_id ?? '' };
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const inR2 = (key: string) => existsSync(r2.objectPath(BUCKET, key));
const r2Bytes = (key: string) => readFileSync(r2.objectPath(BUCKET, key));
const r2Json = (key: string) =>
  JSON.parse(r2Bytes(key).toString('utf8')) as Record<string, unknown>;

function outputEnv(extra: Record<string, string> = {}): Record<string, string> {
  writeFileSync(path.join(work, 'empty-list.json'), '{"version":1,"models":[]}\n');
  return {
    MODELS_LIST: path.join(work, 'empty-list.json'),
    OUTPUT_BUCKET: BUCKET,
    OUTPUT_PREFIX: PREFIX,
    OUTPUT_POLL_SECONDS: '0.1',
    RCLONE_CONFIG_R2_ACCESS_KEY_ID: r2.accessKeyId,
    RCLONE_CONFIG_R2_SECRET_ACCESS_KEY: r2.secretAccessKey,
    RCLONE_CONFIG_R2_ENDPOINT: r2.endpoint,
    ...extra,
  };
}

describe('worker readiness by models', () => {
  const list = {
    version: 1,
    models: [
      { path: 'checkpoints/main.safetensors', size: 4096, sha256: null },
      { path: 'loras/style.safetensors', size: 300, sha256: null },
      { path: 'text_encoders/te.safetensors', size: 128, sha256: null },
    ],
  };

  beforeAll(() => {
    writeFileSync(path.join(work, 'models.json'), JSON.stringify(list));
    mkdirSync(path.join(models, 'checkpoints'), { recursive: true });
    mkdirSync(path.join(models, 'loras'), { recursive: true });
    writeFileSync(path.join(models, 'checkpoints/main.safetensors'), randomBytes(4096));
    writeFileSync(path.join(models, 'loras/style.safetensors'), randomBytes(299));
  });

  it('/ready is 503 naming the missing and the wrong-sized model, then 200 once they are right; /health stays 200', async () => {
    const w = await startWorker({ MODELS_LIST: path.join(work, 'models.json') });
    try {
      await up(w);
      // The entrypoint named both at start.
      expect(w.out()).toContain(
        `[comfyui-worker] warning: model missing: text_encoders/te.safetensors (no such file under ${models})`,
      );
      expect(w.out()).toContain(
        '[comfyui-worker] warning: model wrong size: loras/style.safetensors is 299 bytes, expected 300',
      );
      expect(w.out()).toContain('[comfyui-worker] models: 1 of 3 required model(s) in place');

      const before = await getJson(w.url('/ready'));
      expect(before.status).toBe(503);
      expect(before.body).toMatchObject({
        status: 'not-ready',
        missing: [{ path: 'text_encoders/te.safetensors', reason: 'no such file' }],
        wrong_size: [{ path: 'loras/style.safetensors', actual: 299, expected: 300 }],
      });
      expect(String(before.body.reason)).toBe(
        'missing: text_encoders/te.safetensors; wrong size: loras/style.safetensors (299 bytes, expected 300)',
      );
      expect((await fetch(w.url('/health'))).status).toBe(200);

      // Only the size is wrong now: still 503, naming it alone.
      mkdirSync(path.join(models, 'text_encoders'), { recursive: true });
      writeFileSync(path.join(models, 'text_encoders/te.safetensors'), randomBytes(128));
      const sized = await getJson(w.url('/ready'));
      expect(sized.status).toBe(503);
      expect(sized.body).toMatchObject({
        missing: [],
        wrong_size: [{ path: 'loras/style.safetensors' }],
      });

      writeFileSync(path.join(models, 'loras/style.safetensors'), randomBytes(300));
      const after = await getJson(w.url('/ready'));
      expect(after.status).toBe(200);
      expect(after.body).toMatchObject({
        status: 'ready',
        required: 3,
        missing: [],
        wrong_size: [],
      });
    } finally {
      stop(w);
    }
  });

  it('REQUIRE_MODELS=1 stops at once with the list, before ComfyUI starts', async () => {
    writeFileSync(path.join(models, 'loras/style.safetensors'), randomBytes(10));
    rmSync(path.join(models, 'text_encoders/te.safetensors'), { force: true });
    const w = await startWorker({
      MODELS_LIST: path.join(work, 'models.json'),
      REQUIRE_MODELS: '1',
    });
    try {
      expect(await exited(w.child, 20_000)).toBe(66);
      expect(w.out()).toContain(
        '[comfyui-worker] error: REQUIRE_MODELS is set and 2 required model(s) are missing or wrong-sized: ' +
          'text_encoders/te.safetensors (missing), loras/style.safetensors (10 bytes, expected 300)\n',
      );
      expect(existsSync(w.marker)).toBe(false);
    } finally {
      stop(w);
    }
  });
});

(hasRclone ? describe : describe.skip)('worker outputs to R2 and SIGTERM', () => {
  it('a finished output lands in R2 under <prefix>/<prompt_id>/ (sha256 compared), with COMPLETE.json', async () => {
    const w = await startWorker(outputEnv());
    try {
      await up(w);
      const { status, id } = await submit(w, [
        { seconds: 0.2, bytes: 300_000, prefix: 'clip', subfolder: 'video' },
        { seconds: 0, bytes: 5000, prefix: 'still' },
      ]);
      expect(status).toBe(200);
      const complete = `${PREFIX}/${id}/COMPLETE.json`;
      await until('COMPLETE.json in R2', async () => (inR2(complete) ? true : undefined));
      for (const rel of ['video/clip_00001_.png', 'still_00001_.png']) {
        const local = readFileSync(path.join(comfyDir, 'output', rel));
        expect(sha256(r2Bytes(`${PREFIX}/${id}/${rel}`))).toBe(sha256(local));
      }
      const marker = r2Json(complete);
      expect(marker).toMatchObject({ prompt_id: id, status: 'success', problems: [] });
      expect(marker.files).toEqual(
        expect.arrayContaining([
          {
            key: `${PREFIX}/${id}/video/clip_00001_.png`,
            size: 300_000,
            sha256: sha256(readFileSync(path.join(comfyDir, 'output/video/clip_00001_.png'))),
          },
        ]),
      );
      // The supervisor logs the copy after COMPLETE.json is stored: wait for the line.
      const copied = `outputs: prompt ${id}: 2 file(s), 305000 bytes copied to ${BUCKET}/${PREFIX}/${id}/`;
      await until('the copy reported', async () => (w.out().includes(copied) ? true : undefined));
      expect(w.out()).toContain(copied);

      // Idle: SIGTERM ends it at once, cleanly.
      process.kill(-w.child.pid!, 'SIGTERM');
      expect(await exited(w.child, 20_000)).toBe(0);
    } finally {
      stop(w);
    }
  });

  it('SIGTERM mid-job: no new work, the job finishes within the grace period, its output is in R2, exit 0', async () => {
    const w = await startWorker(outputEnv({ SHUTDOWN_GRACE_SECONDS: '60' }));
    try {
      await up(w);
      const { id } = await submit(w, [{ seconds: 2, bytes: 70_000, prefix: 'drain' }]);
      await until('the job to run', async () =>
        w.out().includes(`stand-in: running prompt ${id}`) ? true : undefined,
      );
      // As tini -g does: the whole process group gets SIGTERM (ComfyUI is in a session of its own).
      process.kill(-w.child.pid!, 'SIGTERM');
      await until('the drain to start', async () =>
        w.out().includes('SIGTERM: draining') ? true : undefined,
      );

      const ready = await getJson(w.url('/ready'));
      expect(ready.status).toBe(503);
      expect(ready.body.status).toBe('draining');
      const refused = await submit(w, [{ seconds: 0, bytes: 10, prefix: 'late' }]);
      expect(refused.status).toBe(503);
      expect((await fetch(w.url('/health'))).status).toBe(200);

      expect(await exited(w.child, 60_000)).toBe(0);
      const local = readFileSync(path.join(comfyDir, 'output/drain_00001_.png'));
      expect(sha256(r2Bytes(`${PREFIX}/${id}/drain_00001_.png`))).toBe(sha256(local));
      expect(inR2(`${PREFIX}/${id}/COMPLETE.json`)).toBe(true);
      expect(inR2(`${PREFIX}/${id}/INCOMPLETE.json`)).toBe(false);
      expect(w.out()).toContain(`stand-in: prompt ${id} executed`);
      expect(w.out()).toContain('[comfyui-worker] shutdown: done (exit 0)');
    } finally {
      stop(w);
    }
  });

  it('SIGTERM with a job longer than the grace period: INCOMPLETE.json, a log line naming the prompt, exit 75', async () => {
    const w = await startWorker(outputEnv({ SHUTDOWN_GRACE_SECONDS: '1' }));
    try {
      await up(w);
      const long = await submit(w, [{ seconds: 600, bytes: 10, prefix: 'long' }]);
      const queued = await submit(w, [{ seconds: 0, bytes: 10, prefix: 'queued' }]);
      await until('the long job to run', async () =>
        w.out().includes(`stand-in: running prompt ${long.id}`) ? true : undefined,
      );
      process.kill(-w.child.pid!, 'SIGTERM');
      expect(await exited(w.child, 60_000)).toBe(75);

      expect(w.out()).toContain(
        `[comfyui-worker] error: prompt ${long.id} (running) did not finish: it was still running 1 s after SIGTERM (SHUTDOWN_GRACE_SECONDS); marker ${BUCKET}/${PREFIX}/${long.id}/INCOMPLETE.json`,
      );
      expect(w.out()).toContain(`prompt ${queued.id} (queued) did not finish`);
      expect(r2Json(`${PREFIX}/${long.id}/INCOMPLETE.json`)).toMatchObject({
        prompt_id: long.id,
        state: 'running',
        grace_seconds: 1,
      });
      expect(r2Json(`${PREFIX}/${queued.id}/INCOMPLETE.json`)).toMatchObject({ state: 'queued' });
      expect(inR2(`${PREFIX}/${long.id}/COMPLETE.json`)).toBe(false);
      // ComfyUI did not outlive the worker.
      const pid = Number(readFileSync(w.marker, 'utf8'));
      await until('ComfyUI to be gone', async () => {
        try {
          process.kill(pid, 0);
          return undefined;
        } catch {
          return true;
        }
      });
    } finally {
      stop(w);
    }
  });

  it('refuses an output configuration without the R2 keys, naming the variables and not starting ComfyUI', async () => {
    const env = outputEnv();
    delete env.RCLONE_CONFIG_R2_SECRET_ACCESS_KEY;
    const w = await startWorker(env);
    try {
      expect(await exited(w.child, 20_000)).toBe(64);
      expect(w.out()).toContain(
        "[comfyui-worker] error: OUTPUT_BUCKET is set but the R2 remote 'r2' is not configured: set RCLONE_CONFIG_R2_SECRET_ACCESS_KEY",
      );
      expect(existsSync(w.marker)).toBe(false);
    } finally {
      stop(w);
    }
  });
});
