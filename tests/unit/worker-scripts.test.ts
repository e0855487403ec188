// The worker's scripts: shellcheck-clean, the HEALTHCHECK script against a real HTTP server, and the
// /health custom node loaded by Python with ComfyUI's two imports (server, aiohttp) stubbed.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');
const workerDir = path.join(root, 'comfyui-worker');
const scripts = readdirSync(workerDir)
  .filter((f) => f.endsWith('.sh'))
  .sort();

const shellcheck = '/usr/bin/shellcheck';
const onPath = (tool: string) => spawnSync(tool, ['--version']).status === 0;
const python = onPath('python3') ? 'python3' : undefined;
const curl = onPath('curl');

function skipBecause(reason: string): void {
  // Printed so a skipped check is visible in the test log, not silently green.
  console.warn(`worker-scripts: skipped: ${reason}`);
}

describe('worker scripts', () => {
  it('include the entrypoint, the healthcheck, the custom-nodes installer and the smoke test', () => {
    expect(scripts).toEqual([
      'entrypoint.sh',
      'healthcheck.sh',
      'install-custom-nodes.sh',
      'smoke-test.sh',
    ]);
  });

  it.each(scripts)('%s is shellcheck-clean (all severities)', (script) => {
    if (!existsSync(shellcheck)) {
      skipBecause(`${shellcheck} is missing (apt-get install shellcheck)`);
      return;
    }
    const result = spawnSync(shellcheck, ['--severity=style', '--shell=bash', script], {
      cwd: workerDir,
      encoding: 'utf8',
    });
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
  });
});

describe('healthcheck.sh', () => {
  let server: Server;
  let port: number;
  let status = 200;
  const paths: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      paths.push(req.url ?? '');
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: status === 200 ? 'ok' : 'unhealthy' }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** Runs the script asynchronously: the server answers from this same event loop. */
  const check = (env: Record<string, string>) =>
    new Promise<number>((resolve) => {
      execFile(
        'bash',
        [path.join(workerDir, 'healthcheck.sh')],
        { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } },
        (error) => resolve(error ? Number(error.code ?? 1) : 0),
      );
    });

  it('is healthy when the health path answers 200, and asks that path', async () => {
    if (!curl) return skipBecause('curl is missing');
    status = 200;
    paths.length = 0;
    expect(await check({ PORT: String(port) })).toBe(0);
    expect(paths).toEqual(['/health']);
    expect(await check({ PORT: String(port), HEALTH_PATH: 'system_stats' })).toBe(0);
    expect(paths).toEqual(['/health', '/system_stats']);
  });

  it('is unhealthy on a 503 (curl --fail exit 22)', async () => {
    if (!curl) return skipBecause('curl is missing');
    status = 503;
    expect(await check({ PORT: String(port) })).toBe(22);
    status = 200;
  });

  it('is unhealthy when nothing listens (curl exit 7)', async () => {
    if (!curl) return skipBecause('curl is missing');
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const unused = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    expect(await check({ PORT: String(unused) })).toBe(7);
  });
});

// Loads custom_nodes/comfyume_health the way ComfyUI imports a custom node package, with stand-ins
// for `server.PromptServer` and `aiohttp.web`, then calls the registered handlers: /health, /ready
// (models, warm-up, draining) and the middleware that refuses new prompts while draining.
const harness = String.raw`
import asyncio, importlib.util, json, os, sys, types

node_dir, work = sys.argv[1], sys.argv[2]
routes = {}

class Routes:
    def get(self, path):
        def register(handler):
            routes[path] = handler
            return handler
        return register

class Queue:
    def __init__(self, remaining):
        self.remaining = remaining
    def get_tasks_remaining(self):
        if self.remaining is None:
            raise AttributeError("queue API changed")
        return self.remaining

class App:
    middlewares = []

class PromptServer:
    instance = None

PromptServer.instance = PromptServer()
PromptServer.instance.routes = Routes()
PromptServer.instance.app = App()
PromptServer.instance.prompt_queue = Queue(2)

class JsonResponse:
    def __init__(self, data, status=200):
        self.data = data
        self.status = status

def middleware(f):
    f.__middleware_version__ = 1
    return f

web = types.ModuleType("aiohttp.web")
web.json_response = JsonResponse
web.middleware = middleware
aiohttp = types.ModuleType("aiohttp")
aiohttp.web = web
server = types.ModuleType("server")
server.PromptServer = PromptServer
sys.modules.update({"aiohttp": aiohttp, "aiohttp.web": web, "server": server})

spec = importlib.util.spec_from_file_location(
    "comfyume_health", node_dir + "/__init__.py", submodule_search_locations=[node_dir])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

def call(path):
    r = asyncio.run(routes[path](None))
    return {"http": r.status, **r.data}

busy = call("/health")
PromptServer.instance.prompt_queue = Queue(None)
unknown = call("/health")

models, run = os.path.join(work, "models"), os.path.join(work, "run")
os.makedirs(os.path.join(models, "loras"))
os.makedirs(run)
with open(os.path.join(work, "list.json"), "w") as f:
    json.dump({"version": 1, "models": [{"path": "loras/a.safetensors", "size": 3, "sha256": None}]}, f)
os.environ.update(MODELS_LIST=os.path.join(work, "list.json"), MODELS_DIR=models, WORKER_RUNTIME_DIR=run)
ready = {"missing": call("/ready")}
with open(os.path.join(models, "loras/a.safetensors"), "w") as f:
    f.write("abc")
ready["present"] = call("/ready")
with open(os.path.join(run, "warmup.state"), "w") as f:
    f.write("running\n")
ready["warming"] = call("/ready")
with open(os.path.join(run, "warmup.state"), "w") as f:
    f.write("done 123\n")
ready["warmed"] = call("/ready")

class Request:
    def __init__(self, method, path):
        self.method, self.path = method, path

async def passed(_request):
    return JsonResponse({"passed": True})

def through(method, path):
    r = asyncio.run(PromptServer.instance.app.middlewares[0](Request(method, path), passed))
    return {"http": r.status, **r.data}

gate = {"before": through("POST", "/prompt")}
with open(os.path.join(run, "draining"), "w") as f:
    f.write("x")
gate["draining"] = through("POST", "/prompt")
gate["queue_get"] = through("GET", "/queue")
ready["draining"] = call("/ready")
print(json.dumps({"routes": sorted(routes), "nodes": module.NODE_CLASS_MAPPINGS,
                  "busy": busy, "unknown": unknown, "ready": ready, "gate": gate,
                  "middlewares": len(PromptServer.instance.app.middlewares)}))
`;

describe('comfyume_health custom node', () => {
  it('serves /health (liveness), /ready (models, warm-up, draining) and refuses new prompts while draining', () => {
    if (!python) return skipBecause('python3 is missing');
    const work = mkdtempSync(path.join(tmpdir(), 'health-node-'));
    try {
      const result = spawnSync(
        python,
        ['-B', '-c', harness, path.join(workerDir, 'custom_nodes/comfyume_health'), work],
        { encoding: 'utf8', env: { ...process.env, COMFYUME_WORKER_LIB: workerDir } },
      );
      expect(result.stderr).toBe('');
      const out = JSON.parse(result.stdout) as Record<string, Record<string, unknown>>;
      expect(out.routes).toEqual(['/health', '/ready']);
      expect(out.nodes).toEqual({});
      expect(out.busy).toEqual({ http: 200, status: 'ok', queue_remaining: 2 });
      // The probe still answers when ComfyUI's queue API is not what we expect.
      expect(out.unknown).toEqual({ http: 200, status: 'ok', queue_remaining: null });
      const ready = out.ready as Record<string, Record<string, unknown>>;
      expect(ready.missing).toMatchObject({
        http: 503,
        status: 'not-ready',
        missing: [{ path: 'loras/a.safetensors', reason: 'no such file' }],
        reason: 'missing: loras/a.safetensors',
      });
      expect(ready.present).toMatchObject({
        http: 200,
        status: 'ready',
        required: 1,
        missing: [],
        wrong_size: [],
      });
      expect(ready.warming).toMatchObject({
        http: 503,
        warm_up: 'running',
        reason: 'the model warm-up is still reading',
      });
      expect(ready.warmed).toMatchObject({ http: 200, status: 'ready', warm_up: 'done' });
      expect(ready.draining).toMatchObject({ http: 503, status: 'draining' });
      const gate = out.gate as Record<string, Record<string, unknown>>;
      expect(gate.before).toEqual({ http: 200, passed: true });
      expect(gate.draining).toMatchObject({ http: 503, error: { type: 'worker_draining' } });
      expect(gate.queue_get).toEqual({ http: 200, passed: true });
      expect(out.middlewares).toBe(1);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
