// The worker entrypoint in its dry mode (--print-command / DRY_RUN): the exact exec line, the
// rendered extra_model_paths.yaml and every configuration error, without Python or ComfyUI.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

const root = path.resolve(import.meta.dirname, '../..');
const entrypoint = path.join(root, 'comfyui-worker/entrypoint.sh');

let work: string;
let models: string;
let runtime: string;

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'worker-entrypoint-'));
  models = path.join(work, 'models');
  runtime = path.join(work, 'run');
  for (const folder of ['checkpoints', 'text_encoders', 'latent_upscale_models', 'loras']) {
    mkdirSync(path.join(models, folder), { recursive: true });
  }
  writeFileSync(path.join(models, 'checkpoints/ltx-2-19b-dev-fp8.safetensors'), 'x'.repeat(64));
  writeFileSync(path.join(models, 'loras/a.safetensors'), 'a');
  writeFileSync(path.join(models, 'loras/b.safetensors'), 'b');
  writeFileSync(path.join(models, 'loras/notes.txt'), 'not a model');
  writeFileSync(
    path.join(work, 'models.json'),
    JSON.stringify({
      version: 1,
      models: [{ path: 'checkpoints/ltx-2-19b-dev-fp8.safetensors', size: 64, sha256: null }],
    }),
  );
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

type Run = { code: number | null; stdout: string; stderr: string };

/** Runs the entrypoint with a clean environment: only PATH plus what the test sets. */
function run(env: Record<string, string>, args: string[] = ['--print-command']): Run {
  const result = spawnSync('bash', [entrypoint, ...args], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      MODELS_DIR: models,
      MODELS_LIST: path.join(work, 'models.json'),
      ...env,
    },
    encoding: 'utf8',
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const config = () => path.join(runtime, 'extra_model_paths.yaml');
const baseCommand = (port = '8188') =>
  `cd /opt/ComfyUI && exec python3 main.py --listen 0.0.0.0 --port ${port} --extra-model-paths-config ${config()}`;

describe('worker entrypoint, dry mode', () => {
  it('prints the exact exec line and renders the model paths under MODELS_DIR', () => {
    const r = run({ WORKER_RUNTIME_DIR: runtime });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${baseCommand()}\n`);
    const rendered = parseYaml(readFileSync(config(), 'utf8')) as Record<string, unknown>;
    expect(rendered).toEqual({
      comfyume: {
        base_path: models,
        is_default: true,
        checkpoints: 'checkpoints/',
        text_encoders: 'text_encoders/',
        latent_upscale_models: 'latent_upscale_models/',
        loras: 'loras/',
      },
    });
    expect(r.stderr).toContain('models: checkpoints/ has 1 .safetensors file(s)');
    expect(r.stderr).toContain('models: loras/ has 2 .safetensors file(s)');
    expect(r.stderr).toContain('[comfyui-worker] models: 1 of 1 required model(s) in place\n');
    expect(r.stderr).not.toContain('warning');
  });

  it('DRY_RUN=true is the same as --print-command', () => {
    const r = run({ WORKER_RUNTIME_DIR: runtime, DRY_RUN: 'true' }, []);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${baseCommand()}\n`);
  });

  it('applies PORT, LISTEN, CPU_ONLY and appends extra ComfyUI arguments last', () => {
    const r = run(
      { WORKER_RUNTIME_DIR: runtime, PORT: '09000', LISTEN: '127.0.0.1', CPU_ONLY: 'yes' },
      ['--print-command', '--preview-method', 'auto'],
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `cd /opt/ComfyUI && exec python3 main.py --listen 127.0.0.1 --port 9000 --extra-model-paths-config ${config()} --cpu --preview-method auto\n`,
    );
  });

  it('runs a command of its own as given, after the same checks', () => {
    const r = run({ WORKER_RUNTIME_DIR: runtime }, ['--print-command', 'bash', '-c', 'echo hi']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('cd /opt/ComfyUI && exec bash -c echo\\ hi\n');
    expect(existsSync(config())).toBe(true);
  });

  it.each([
    ['abc', "PORT must be a number from 1 to 65535, got 'abc'"],
    ['0', "PORT must be a number from 1 to 65535, got '0'"],
    ['65536', "PORT must be a number from 1 to 65535, got '65536'"],
    ['-1', "PORT must be a number from 1 to 65535, got '-1'"],
    ['80 80', "PORT must be a number from 1 to 65535, got '80 80'"],
    ['8188x', "PORT must be a number from 1 to 65535, got '8188x'"],
  ])('refuses PORT=%s before writing anything', (port, message) => {
    const fresh = path.join(work, `bad-port-${port.replace(/\W/g, '_')}`);
    const r = run({ WORKER_RUNTIME_DIR: fresh, PORT: port });
    expect(r.code).toBe(64);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`[comfyui-worker] error: ${message}\n`);
    expect(existsSync(fresh)).toBe(false);
  });

  it.each([
    ['CPU_ONLY', 'maybe'],
    ['REQUIRE_MODELS', 'sometimes'],
    ['DRY_RUN', '2'],
  ])('refuses %s=%s (true or false only)', (name, value) => {
    const fresh = path.join(work, `bad-flag-${name}`);
    // No --print-command: it would set DRY_RUN itself. Validation fails before any exec.
    const r = run({ WORKER_RUNTIME_DIR: fresh, [name]: value }, []);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      `[comfyui-worker] error: ${name} must be true or false, got '${value}'\n`,
    );
    expect(existsSync(fresh)).toBe(false);
  });

  it('warns about a missing models directory and still starts ComfyUI', () => {
    const missing = path.join(work, 'not-mounted');
    const r = run({ WORKER_RUNTIME_DIR: runtime, MODELS_DIR: missing });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      `[comfyui-worker] warning: MODELS_DIR ${missing} does not exist (is the shared filesystem mounted?): ComfyUI starts with no models\n`,
    );
    expect(r.stdout).toBe(`${baseCommand()}\n`);
  });

  it('fails on a missing models directory when REQUIRE_MODELS=true', () => {
    const missing = path.join(work, 'not-mounted');
    const r = run({ WORKER_RUNTIME_DIR: runtime, MODELS_DIR: missing, REQUIRE_MODELS: 'true' });
    expect(r.code).toBe(64);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `[comfyui-worker] error: MODELS_DIR ${missing} does not exist (is the shared filesystem mounted?)\n`,
    );
  });

  it('names each missing model folder', () => {
    const partial = path.join(work, 'partial');
    mkdirSync(path.join(partial, 'checkpoints'), { recursive: true });
    const r = run({ WORKER_RUNTIME_DIR: runtime, MODELS_DIR: partial });
    expect(r.code).toBe(0);
    for (const folder of ['text_encoders', 'latent_upscale_models', 'loras']) {
      expect(r.stderr).toContain(`warning: models: ${partial}/${folder} is missing`);
    }
    expect(r.stderr).toContain('models: checkpoints/ has 0 .safetensors file(s)');
  });

  it('starts anyway when listing the models hangs (a stuck network mount)', () => {
    const slow = path.join(work, 'slow');
    mkdirSync(path.join(slow, 'checkpoints'), { recursive: true });
    // A `find` that hangs, first on PATH.
    const bin = path.join(work, 'hanging-find');
    mkdirSync(bin, { recursive: true });
    writeFileSync(path.join(bin, 'find'), '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
    const r = run({
      WORKER_RUNTIME_DIR: runtime,
      MODELS_DIR: slow,
      MODELS_SCAN_TIMEOUT: '1',
      PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      `[comfyui-worker] warning: models: could not list ${slow}/checkpoints within 1s\n`,
    );
    expect(r.stdout).toBe(`${baseCommand()}\n`);
  });

  it('refuses a MODELS_SCAN_TIMEOUT that is not a number of seconds', () => {
    const r = run({ WORKER_RUNTIME_DIR: runtime, MODELS_SCAN_TIMEOUT: '1m' });
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      "[comfyui-worker] error: MODELS_SCAN_TIMEOUT must be a number of seconds from 1 to 9999, got '1m'\n",
    );
  });

  it('refuses a relative MODELS_DIR', () => {
    const r = run({ WORKER_RUNTIME_DIR: runtime, MODELS_DIR: 'models' });
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      "[comfyui-worker] error: MODELS_DIR must be an absolute path, got 'models'\n",
    );
  });

  it('quotes any MODELS_DIR safely in the YAML (quote, ampersand, spaces, ${})', () => {
    const odd = path.join(work, "it's & a ${HOME} path");
    mkdirSync(odd, { recursive: true });
    const r = run({ WORKER_RUNTIME_DIR: runtime, MODELS_DIR: odd });
    expect(r.code).toBe(0);
    const rendered = parseYaml(readFileSync(config(), 'utf8')) as {
      comfyume: { base_path: string };
    };
    expect(rendered.comfyume.base_path).toBe(odd);
  });

  it('uses EXTRA_MODEL_PATHS_CONFIG as is when it names a file', () => {
    const own = path.join(work, 'own.yaml');
    writeFileSync(own, 'mine:\n  base_path: /elsewhere\n  checkpoints: ckpt/\n');
    const fresh = path.join(work, 'unused-runtime');
    const r = run({ WORKER_RUNTIME_DIR: fresh, EXTRA_MODEL_PATHS_CONFIG: own });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `cd /opt/ComfyUI && exec python3 main.py --listen 0.0.0.0 --port 8188 --extra-model-paths-config ${own}\n`,
    );
    expect(existsSync(fresh)).toBe(false);
  });

  it('fails when EXTRA_MODEL_PATHS_CONFIG names no file', () => {
    const absent = path.join(work, 'absent.yaml');
    const r = run({ WORKER_RUNTIME_DIR: runtime, EXTRA_MODEL_PATHS_CONFIG: absent });
    expect(r.code).toBe(64);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(
      `[comfyui-worker] error: EXTRA_MODEL_PATHS_CONFIG ${absent} is not a file\n`,
    );
  });

  it('plans the warm-up only for files under MODELS_DIR', () => {
    const r = run({
      WORKER_RUNTIME_DIR: runtime,
      WARMUP_FILES:
        'checkpoints/ltx-2-19b-dev-fp8.safetensors, loras/a.safetensors,,/etc/passwd ../secret loras/none.safetensors',
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('[comfyui-worker] warm-up: would read 2 file(s)\n');
    expect(r.stderr).toContain(
      "warning: warm-up: skipping '/etc/passwd' (must be relative to MODELS_DIR, without ..)",
    );
    expect(r.stderr).toContain(
      "warning: warm-up: skipping '../secret' (must be relative to MODELS_DIR, without ..)",
    );
    expect(r.stderr).toContain(
      `warning: warm-up: skipping 'loras/none.safetensors' (no such file under ${models})`,
    );
    expect(r.stdout).toBe(`${baseCommand()}\n`);
  });

  it('outside dry mode, refuses a COMFYUI_DIR without main.py instead of exec-ing blindly', () => {
    const empty = path.join(work, 'no-comfyui');
    mkdirSync(empty, { recursive: true });
    const r = run({ WORKER_RUNTIME_DIR: runtime, COMFYUI_DIR: empty }, []);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain(`[comfyui-worker] error: COMFYUI_DIR ${empty} has no main.py\n`);
  });
});

describe('worker entrypoint, the models the workshop needs (MODELS_LIST)', () => {
  const list = (entries: unknown[]) => {
    const file = path.join(work, `list-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify({ version: 1, models: entries }));
    return file;
  };

  it('by default checks the baked list (comfyui-worker/models.json), naming each missing model', () => {
    const r = run({ WORKER_RUNTIME_DIR: runtime, MODELS_LIST: '' });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      `[comfyui-worker] warning: model missing: text_encoders/gemma_3_12B_it.safetensors (no such file under ${models})\n`,
    );
    expect(r.stderr).toContain(
      '[comfyui-worker] models: 1 of 4 required model(s) in place (1 without a recorded size: presence checked)\n',
    );
  });

  it('names a wrong-sized model and still starts without REQUIRE_MODELS', () => {
    const file = list([
      { path: 'checkpoints/ltx-2-19b-dev-fp8.safetensors', size: 65, sha256: null },
      { path: 'loras/a.safetensors', size: 1, sha256: 'a'.repeat(64) },
    ]);
    const r = run({ WORKER_RUNTIME_DIR: runtime, MODELS_LIST: file });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      '[comfyui-worker] warning: model wrong size: checkpoints/ltx-2-19b-dev-fp8.safetensors is 64 bytes, expected 65\n',
    );
    expect(r.stderr).toContain('[comfyui-worker] models: 1 of 2 required model(s) in place\n');
    expect(r.stdout).toBe(`${baseCommand()}\n`);
  });

  it('REQUIRE_MODELS=true stops with exit 66 and the list, before printing or running anything', () => {
    const file = list([
      { path: 'checkpoints/ltx-2-19b-dev-fp8.safetensors', size: 65, sha256: null },
      { path: 'loras/gone.safetensors', size: 5, sha256: null },
      { path: 'loras/a.safetensors', size: 1, sha256: null },
    ]);
    const r = run({ WORKER_RUNTIME_DIR: runtime, MODELS_LIST: file, REQUIRE_MODELS: 'true' });
    expect(r.code).toBe(66);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(
      '[comfyui-worker] error: REQUIRE_MODELS is set and 2 required model(s) are missing or wrong-sized: ' +
        'loras/gone.safetensors (missing), checkpoints/ltx-2-19b-dev-fp8.safetensors (64 bytes, expected 65)\n',
    );
  });

  it.each([
    [
      [{ path: '../etc/passwd', size: 1, sha256: null }],
      'models[0].path "../etc/passwd" is refused: it has a \'..\' segment',
    ],
    [
      [{ path: 'a.safetensors', size: -1, sha256: null }],
      'models[0].size: expected a byte count or null, got -1',
    ],
    [
      [{ path: 'a.safetensors', size: 1, sha256: 'XYZ' }],
      'models[0].sha256: expected 64 lowercase hex characters or null, got "XYZ"',
    ],
    [
      [
        { path: 'a', size: 1, sha256: null },
        { path: 'a', size: 1, sha256: null },
      ],
      'models[1].path: duplicate path "a"',
    ],
  ])(
    'refuses a models list with a bad entry (exit 64, naming the file and the entry)',
    (entries, message) => {
      const file = list(entries);
      const r = run({ WORKER_RUNTIME_DIR: runtime, MODELS_LIST: file });
      expect(r.code).toBe(64);
      expect(r.stderr).toContain(`[comfyui-worker] error: models list ${file}: ${message}`);
    },
  );

  it('refuses a models list that is missing', () => {
    const file = path.join(work, 'no-list.json');
    const r = run({ WORKER_RUNTIME_DIR: runtime, MODELS_LIST: file });
    expect(r.code).toBe(64);
    expect(r.stderr).toContain(
      `[comfyui-worker] error: models list ${file} cannot be read: No such file or directory\n`,
    );
  });
});

describe('worker entrypoint, outputs to R2 (OUTPUT_BUCKET)', () => {
  const keys = {
    RCLONE_CONFIG_R2_ACCESS_KEY_ID: 'test-access-key',
    RCLONE_CONFIG_R2_SECRET_ACCESS_KEY: 'test-secret-key-not-real',
    RCLONE_CONFIG_R2_ENDPOINT: 'http://127.0.0.1:9',
  };

  it('without OUTPUT_BUCKET, execs ComfyUI itself and says outputs stay on the replica', () => {
    const r = run({ WORKER_RUNTIME_DIR: runtime });
    expect(r.stdout).toBe(`${baseCommand()}\n`);
    expect(r.stderr).toContain(
      '[comfyui-worker] outputs: OUTPUT_BUCKET is not set: outputs stay on this replica (lost on scale-down)\n',
    );
  });

  it('with OUTPUT_BUCKET, execs the supervisor with the ComfyUI command after --, no key on the line', () => {
    const r = run({ WORKER_RUNTIME_DIR: runtime, OUTPUT_BUCKET: 'workshop-outputs', ...keys });
    expect(r.code).toBe(0);
    const worker = path.join(root, 'comfyui-worker/worker.py');
    expect(r.stdout).toBe(
      `cd /opt/ComfyUI && exec python3 -B ${worker} supervise -- python3 main.py --listen 0.0.0.0 --port 8188 --extra-model-paths-config ${config()}\n`,
    );
    expect(r.stdout + r.stderr).not.toContain('test-secret-key-not-real');
    expect(r.stdout + r.stderr).not.toContain('test-access-key');
  });

  it.each([
    [
      { OUTPUT_BUCKET: 'Bad_Bucket' },
      "OUTPUT_BUCKET must be a bucket name (3-63 of a-z, 0-9, '.', '-'), got 'Bad_Bucket'",
    ],
    [{ OUTPUT_PREFIX: 'a/../b' }, 'OUTPUT_PREFIX "a/../b" is refused: it has a \'..\' segment'],
    [
      { OUTPUT_REMOTE: 'r2 x' },
      "OUTPUT_REMOTE must be an rclone remote name (a letter, then letters, digits, '_'), got 'r2 x'",
    ],
    [
      { SHUTDOWN_GRACE_SECONDS: '30s' },
      "SHUTDOWN_GRACE_SECONDS must be a whole number of seconds from 0 to 3600, got '30s'",
    ],
    [
      { OUTPUT_POLL_SECONDS: '0' },
      "OUTPUT_POLL_SECONDS must be a number of seconds from 0.05 to 60, got '0'",
    ],
    [
      { RCLONE_CONFIG_R2_ENDPOINT: '' },
      "OUTPUT_BUCKET is set but the R2 remote 'r2' is not configured: set RCLONE_CONFIG_R2_ENDPOINT",
    ],
  ])('refuses %j before anything runs (exit 64)', (bad, message) => {
    const r = run({
      WORKER_RUNTIME_DIR: runtime,
      OUTPUT_BUCKET: 'workshop-outputs',
      ...keys,
      ...bad,
    });
    expect(r.code).toBe(64);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`[comfyui-worker] error: ${message}`);
    expect(r.stderr).not.toContain('test-secret-key-not-real');
  });
});
