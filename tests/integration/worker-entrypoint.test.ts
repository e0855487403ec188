// The worker entrypoint for real: it execs the server (same PID, so Verda's SIGTERM reaches it), the
// server gets the exact ComfyUI arguments, the warm-up reads the model files in the background,
// and healthcheck.sh sees the server. A small Node HTTP server stands in for `python3 main.py`.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
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

// healthcheck.sh and smoke-test.sh use curl, as the image does; say so when it is missing here.
const hasCurl = spawnSync('curl', ['--version']).status === 0;
if (!hasCurl)
  console.warn('worker-entrypoint: curl is missing: healthcheck and smoke-test checks skipped');

// CommonJS on purpose (the temp directory's package.json says so). Like ComfyUI it
// logs the model folders it registers; STAND_IN_MODE=crash exits at once, ignore-term keeps
// running after SIGTERM.
const standIn = `#!/usr/bin/env node
const http = require('node:http');
const fs = require('node:fs');
const args = process.argv.slice(2);
const option = (name) => args[args.indexOf(name) + 1];
const mode = process.env.STAND_IN_MODE || 'ok';
if (process.env.STAND_IN_MARKER) fs.writeFileSync(process.env.STAND_IN_MARKER, String(process.pid));
if (mode === 'crash') {
  console.error('stand-in: crashing on purpose');
  process.exit(3);
}
const config = fs.readFileSync(option('--extra-model-paths-config'), 'utf8');
const base = /base_path: '(.*)'/.exec(config)[1];
for (const [, folder, sub] of config.matchAll(/^  (\\w+): (\\w+\\/)$/gm)) {
  console.log('Adding extra search path ' + folder + ' ' + base + '/' + sub);
}
const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  if (req.url === '/health' && mode === 'unhealthy') res.statusCode = 503;
  if (req.url === '/health') return res.end(JSON.stringify({ status: 'ok', queue_remaining: 0 }));
  res.end(JSON.stringify({ pid: process.pid, argv: args, cwd: process.cwd() }));
});
server.listen(Number(option('--port')), option('--listen'), () => console.log('stand-in: listening'));
process.on('SIGTERM', () => {
  console.log('stand-in: SIGTERM');
  if (mode === 'ignore-term') return;
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
`;

// Just enough of the docker CLI for smoke-test.sh: `run` starts the real entrypoint.sh (with the
// Node stand-in as python3) on the published host port; `stop` sends SIGTERM and, after the
// --time grace, SIGKILL (exit 137), as Docker does; the health status comes from the real
// healthcheck.sh.
const fakeDocker = `#!/usr/bin/env bash
set -euo pipefail
state=$FAKE_DOCKER_STATE
command=$1
shift
case $command in
  run)
    envs=()
    while [ $# -gt 0 ]; do
      case $1 in
        --detach) shift ;;
        --name) name=$2; shift 2 ;;
        --env) envs+=("$2"); shift 2 ;;
        --volume) shift 2 ;;
        --publish) port=$(printf '%s' "$2" | cut -d: -f2); shift 2 ;;
        *) shift ;;
      esac
    done
    dir=$state/$name
    mkdir -p "$dir"
    echo "$port" > "$dir/port"
    (
      env "\${envs[@]}" PORT="$port" LISTEN=127.0.0.1 WORKER_RUNTIME_DIR="$dir/run" \\
        bash "$WORKER_DIR/entrypoint.sh" > "$dir/log" 2>&1 < /dev/null &
      echo $! > "$dir/pid"
      set +e
      wait $!
      echo $? > "$dir/exit"
    ) > /dev/null 2>&1 &
    until [ -s "$dir/pid" ]; do sleep 0.05; done
    echo fake-container-id
    ;;
  inspect)
    dir=$state/$3
    running=false
    [ -e "$dir/exit" ] || running=true
    case $2 in
      *Running*) echo "$running" ;;
      *ExitCode*) if [ -e "$dir/exit" ]; then cat "$dir/exit"; else echo 0; fi ;;
      *Health.Status*)
        if $running && PORT=$(cat "$dir/port") bash "$WORKER_DIR/healthcheck.sh"; then
          echo healthy
        else
          echo unhealthy
        fi ;;
    esac
    ;;
  exec)
    # exec NAME id -u | exec NAME cat PATH (a file of the image, from FAKE_IMAGE_ROOT)
    if [ "$2" = cat ]; then cat "\${FAKE_IMAGE_ROOT:-/nonexistent}$3"; else echo "$FAKE_UID"; fi ;;
  logs) cat "$state/$1/log" ;;
  stop)
    dir=$state/$3
    [ -e "$dir/exit" ] || kill -TERM "$(cat "$dir/pid")"
    for ((tick = 0; tick < $2 * 10; tick++)); do [ -e "$dir/exit" ] && break; sleep 0.1; done
    [ -e "$dir/exit" ] || kill -KILL "$(cat "$dir/pid")"
    until [ -e "$dir/exit" ]; do sleep 0.05; done
    echo "$3"
    ;;
  rm)
    dir=$state/$2
    if [ -e "$dir/pid" ] && [ ! -e "$dir/exit" ]; then kill -KILL "$(cat "$dir/pid")"; fi
    ;;
  *) echo "fake docker: $command is not emulated" >&2; exit 1 ;;
esac
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
  // Pinned here: a stray package.json saying "module" in a parent (/tmp) would make it ESM.
  writeFileSync(path.join(work, 'package.json'), '{ "type": "commonjs" }\n');
  writeFileSync(pythonStandIn, standIn);
  chmodSync(pythonStandIn, 0o755);
  mkdirSync(path.join(work, 'bin'));
  writeFileSync(path.join(work, 'bin/docker'), fakeDocker);
  chmodSync(path.join(work, 'bin/docker'), 0o755);
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
      // Not 'warm-up: reading …' (its start): the line that reports what was read.
      await until('the warm-up report', async () =>
        /warm-up: read \d+ bytes/.test(run.stderr()) ? true : undefined,
      );
      expect(run.stderr()).toMatch(
        new RegExp(`warm-up: read ${total} bytes from 2 file\\(s\\) in \\d+ s`),
      );

      // The image's HEALTHCHECK script agrees the server is up.
      if (hasCurl) {
        const health = await new Promise<number>((resolve) =>
          execFile(
            'bash',
            [path.join(workerDir, 'healthcheck.sh')],
            { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORT: String(port) } },
            (error) => resolve(error ? Number(error.code ?? 1) : 0),
          ),
        );
        expect(health).toBe(0);
      }

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

(hasCurl ? describe : describe.skip)(
  'smoke-test.sh, the gate before a push (against a fake docker CLI)',
  () => {
    type Smoke = { code: number | null; stdout: string; stderr: string };

    async function smoke(env: Record<string, string>): Promise<Smoke> {
      const state = mkdtempSync(path.join(work, 'docker-'));
      const port = await freePort();
      return new Promise((resolve) => {
        execFile(
          'bash',
          [path.join(workerDir, 'smoke-test.sh'), 'comfyui-worker:smoke'],
          {
            env: {
              PATH: `${path.join(work, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`,
              FAKE_DOCKER_STATE: state,
              WORKER_DIR: workerDir,
              PYTHON: pythonStandIn,
              COMFYUI_DIR: comfyDir,
              FAKE_UID: '1000',
              SMOKE_PORT: String(port),
              SMOKE_POLL_SECONDS: '0.2',
              ...env,
            },
          },
          (error, stdout, stderr) =>
            resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
        );
      });
    }

    it('passes a worker that answers /health, registers the SFS folders and stops on SIGTERM', async () => {
      const r = await smoke({});
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('[smoke] runs as uid 1000');
      expect(r.stdout).toContain('[smoke] model folders registered from /mnt/sfs/models');
      expect(r.stdout).toContain('[smoke] Docker HEALTHCHECK: healthy');
      expect(r.stdout).toContain('[smoke] custom nodes at their pinned commits: 0');
      expect(r.stdout).toContain('[smoke] stopped on SIGTERM (exit 0)');
      expect(r.stdout.trim().split('\n').at(-1)).toBe('[smoke] passed');
    });

    it('checks each pinned custom node of the list is in the image at its commit', async () => {
      const list = path.join(work, 'nodes.txt');
      const sha = 'a'.repeat(40);
      writeFileSync(list, `# pinned\nhttps://example.invalid/o/NodeA.git ${sha}\n`);
      const image = path.join(work, 'image-root');
      mkdirSync(path.join(image, 'opt/ComfyUI/custom_nodes/NodeA'), { recursive: true });
      const pin = path.join(image, 'opt/ComfyUI/custom_nodes/NodeA/.comfyume-pin');
      writeFileSync(pin, `https://example.invalid/o/NodeA.git ${sha}\n`);
      const good = await smoke({ SMOKE_CUSTOM_NODES: list, FAKE_IMAGE_ROOT: image });
      expect(good.code).toBe(0);
      expect(good.stdout).toContain('[smoke] custom nodes at their pinned commits: 1');

      writeFileSync(pin, `https://example.invalid/o/NodeA.git ${'b'.repeat(40)}\n`);
      const moved = await smoke({ SMOKE_CUSTOM_NODES: list, FAKE_IMAGE_ROOT: image });
      expect(moved.code).toBe(1);
      expect(moved.stderr).toContain(
        `[smoke] FAILED: custom node NodeA is 'https://example.invalid/o/NodeA.git ${'b'.repeat(40)}', expected 'https://example.invalid/o/NodeA.git ${sha}'`,
      );
      rmSync(pin);
      const absent = await smoke({ SMOKE_CUSTOM_NODES: list, FAKE_IMAGE_ROOT: image });
      expect(absent.stderr).toContain(
        '[smoke] FAILED: custom node NodeA (https://example.invalid/o/NodeA.git) is not in the image',
      );
    });

    it.each([
      [
        'a worker that crashes at start',
        { STAND_IN_MODE: 'crash' },
        'the container exited (code 3) before /health answered',
      ],
      [
        'a worker whose /health never answers 200',
        // Long enough for the entrypoint's start-up lines on a loaded machine.
        { STAND_IN_MODE: 'unhealthy', SMOKE_TIMEOUT: '6' },
        '/health did not answer 200 within 6s',
      ],
      ['a worker running as root', { FAKE_UID: '0' }, 'the worker runs as root'],
      [
        'a worker that ignores SIGTERM',
        { STAND_IN_MODE: 'ignore-term', SMOKE_STOP_SECONDS: '1' },
        'the worker ignored SIGTERM and was killed (exit 137)',
      ],
    ])('fails %s, with the container logs', async (_what, env, message) => {
      const r = await smoke(env);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`[smoke] FAILED: ${message}`);
      expect(r.stdout).toContain('[smoke] container logs:');
      expect(r.stdout).toContain('[comfyui-worker] model paths:');
    });
  },
);

describe('install-custom-nodes.sh, the pinned custom nodes of the image', () => {
  const installer = path.join(workerDir, 'install-custom-nodes.sh');
  const git = (cwd: string, ...args: string[]) => {
    const r = spawnSync(
      'git',
      ['-c', 'user.email=t@example.invalid', '-c', 'user.name=t', ...args],
      {
        cwd,
        encoding: 'utf8',
      },
    );
    if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const install = (list: string, dest: string) =>
    spawnSync('bash', [installer, list, dest], { encoding: 'utf8' });

  let repo: string;
  let first: string;

  beforeAll(() => {
    repo = path.join(work, 'src/ComfyUI-Pinned');
    mkdirSync(repo, { recursive: true });
    git(repo, 'init', '-q');
    writeFileSync(path.join(repo, '__init__.py'), 'VERSION = 1\n');
    git(repo, 'add', '.');
    git(repo, 'commit', '-qm', 'one');
    first = git(repo, 'rev-parse', 'HEAD');
    writeFileSync(path.join(repo, '__init__.py'), 'VERSION = 2\n');
    git(repo, 'commit', '-qam', 'two');
  });

  it('installs a node at its pinned commit (not the branch tip), without .git, stamped', () => {
    const list = path.join(work, 'pinned.txt');
    writeFileSync(list, `# a comment\n\nfile://${repo} ${first}  # the first release\n`);
    const dest = path.join(work, 'installed');
    const r = install(list, dest);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(readFileSync(path.join(dest, 'ComfyUI-Pinned/__init__.py'), 'utf8')).toBe(
      'VERSION = 1\n',
    );
    expect(existsSync(path.join(dest, 'ComfyUI-Pinned/.git'))).toBe(false);
    expect(readFileSync(path.join(dest, 'ComfyUI-Pinned/.comfyume-pin'), 'utf8')).toBe(
      `file://${repo} ${first}\n`,
    );
    expect(r.stdout).toContain('[custom-nodes] 1 node(s) installed');
  });

  it.each([
    [
      'a tag',
      (u: string) => `${u} v1.0`,
      "commit 'v1.0' must be a full 40-hex commit (a tag or branch can move)",
    ],
    [
      'a short commit',
      (u: string) => `${u} abc1234`,
      "commit 'abc1234' must be a full 40-hex commit (a tag or branch can move)",
    ],
    [
      'no commit',
      (u: string) => u,
      "commit '' must be a full 40-hex commit (a tag or branch can move)",
    ],
    [
      'an ssh URL',
      () => `git@github.com:o/n.git ${'a'.repeat(40)}`,
      "repository 'git@github.com:o/n.git' must be an https:// (or file://) URL",
    ],
    [
      'extra text',
      (u: string) => `${u} ${'a'.repeat(40)} main`,
      "expected '<repository URL> <commit>', got extra text 'main'",
    ],
  ])('refuses %s, naming the line, before fetching anything', (_what, line, message) => {
    const list = path.join(work, 'bad.txt');
    writeFileSync(list, `# ok\n${line(`file://${repo}`)}\n`);
    const dest = path.join(work, 'not-installed');
    const r = install(list, dest);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`[custom-nodes] error: ${list} line 2: ${message}\n`);
    expect(existsSync(dest)).toBe(false);
  });

  it('refuses a commit the repository does not have', () => {
    const list = path.join(work, 'unknown.txt');
    writeFileSync(list, `file://${repo} ${'0'.repeat(40)}\n`);
    const r = install(list, path.join(work, 'unknown-dest'));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      `[custom-nodes] error: file://${repo} has no commit ${'0'.repeat(40)}`,
    );
  });

  it('the image list (comfyui-worker/custom-nodes.txt) is valid and installs', () => {
    const r = install(path.join(workerDir, 'custom-nodes.txt'), path.join(work, 'image-nodes'));
    expect(r.status).toBe(0);
  });
});
