// The worker entrypoint for real: it execs the server (same PID, so Verda's SIGTERM reaches it), the
// server gets the exact ComfyUI arguments, the warm-up reads the model files in the background,
// and healthcheck.sh sees the server. A small Node HTTP server stands in for `python3 main.py`.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');
const workerDir = path.join(root, 'comfyui-worker');

// CommonJS on purpose: the temp directory has no package.json saying "module".
const standIn = `#!/usr/bin/env node
const http = require('node:http');
const fs = require('node:fs');
const args = process.argv.slice(2);
const option = (name) => args[args.indexOf(name) + 1];
fs.writeFileSync(process.env.STAND_IN_MARKER, String(process.pid));
const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  if (req.url === '/health') return res.end(JSON.stringify({ status: 'ok' }));
  res.end(JSON.stringify({ pid: process.pid, argv: args, cwd: process.cwd() }));
});
server.listen(Number(option('--port')), option('--listen'), () => console.log('stand-in: listening'));
process.on('SIGTERM', () => {
  console.log('stand-in: SIGTERM');
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
`;

let work: string;
let comfyDir: string;
let models: string;
let pythonStandIn: string;
const warmupSizes = {
  'checkpoints/big.safetensors': 3 * 1024 * 1024 + 123,
  'loras/l.safetensors': 1000,
};

beforeAll(() => {
  work = realpathSync(mkdtempSync(path.join(tmpdir(), 'worker-exec-')));
  comfyDir = path.join(work, 'ComfyUI');
  models = path.join(work, 'models');
  mkdirSync(comfyDir);
  writeFileSync(path.join(comfyDir, 'main.py'), '# stand-in: never run\n');
  for (const [file, size] of Object.entries(warmupSizes)) {
    mkdirSync(path.dirname(path.join(models, file)), { recursive: true });
    writeFileSync(path.join(models, file), randomBytes(size));
  }
  pythonStandIn = path.join(work, 'python3-stand-in');
  writeFileSync(pythonStandIn, standIn);
  chmodSync(pythonStandIn, 0o755);
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

type Started = { child: ChildProcess; stdout: () => string; stderr: () => string };

function start(env: Record<string, string>): Started {
  let out = '';
  let err = '';
  const child = spawn('bash', [path.join(workerDir, 'entrypoint.sh')], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      PYTHON: pythonStandIn,
      COMFYUI_DIR: comfyDir,
      MODELS_DIR: models,
      LISTEN: '127.0.0.1',
      WORKER_RUNTIME_DIR: path.join(work, 'run'),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return { child, stdout: () => out, stderr: () => err };
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Resolves with the exit code, or rejects if the process outlives `ms` (Verda kills at 30 s). */
function exited(child: ChildProcess, ms: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => reject(new Error(`still running ${ms} ms after SIGTERM`)), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  tries = 200,
): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe('worker entrypoint, exec and signals', () => {
  it('execs the server with the ComfyUI arguments; SIGTERM reaches it and it exits cleanly', async () => {
    const port = await freePort();
    const marker = path.join(work, 'started-1');
    const run = start({
      PORT: String(port),
      STAND_IN_MARKER: marker,
      WARMUP_FILES: Object.keys(warmupSizes).join(','),
    });
    try {
      const seen = await until('the stand-in server', async () => {
        if (run.child.exitCode !== null) throw new Error(`exited early: ${run.stderr()}`);
        const res = await fetch(`http://127.0.0.1:${port}/`);
        return (await res.json()) as { pid: number; argv: string[]; cwd: string };
      });
      // Same PID: the entrypoint replaced itself (exec), so no shell sits between the signal and
      // the server.
      expect(seen.pid).toBe(run.child.pid);
      expect(seen.cwd).toBe(comfyDir);
      expect(seen.argv).toEqual([
        'main.py',
        '--listen',
        '127.0.0.1',
        '--port',
        String(port),
        '--extra-model-paths-config',
        path.join(work, 'run/extra_model_paths.yaml'),
      ]);

      // The detached warm-up read every byte of both files.
      const total = Object.values(warmupSizes).reduce((a, b) => a + b, 0);
      await until('the warm-up report', async () =>
        run.stderr().includes('warm-up: read') ? true : undefined,
      );
      expect(run.stderr()).toMatch(
        new RegExp(`warm-up: read ${total} bytes from 2 file\\(s\\) in \\d+ s`),
      );

      // The image's HEALTHCHECK script agrees the server is up.
      const health = await new Promise<number>((resolve) =>
        execFile(
          'bash',
          [path.join(workerDir, 'healthcheck.sh')],
          { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORT: String(port) } },
          (error) => resolve(error ? Number(error.code ?? 1) : 0),
        ),
      );
      expect(health).toBe(0);

      run.child.kill('SIGTERM');
      expect(await exited(run.child, 10_000)).toBe(0);
      expect(run.stdout()).toContain('stand-in: SIGTERM');
    } finally {
      // On a failure, stop both the entrypoint and (if it was not exec'd) the orphaned stand-in.
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
      if (existsSync(marker)) killQuietly(Number(readFileSync(marker, 'utf8')));
    }
  });

  it('a bad configuration stops before the server is started', async () => {
    const marker = path.join(work, 'started-2');
    const run = start({ PORT: '99999', STAND_IN_MARKER: marker });
    expect(await exited(run.child, 10_000)).toBe(64);
    expect(run.stderr()).toBe(
      "[comfyui-worker] error: PORT must be a number from 1 to 65535, got '99999'\n",
    );
    expect(existsSync(marker)).toBe(false);
  });
});
