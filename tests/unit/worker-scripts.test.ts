// The worker's scripts: shellcheck-clean, the HEALTHCHECK script against a real HTTP server, and the
// /health custom node loaded by Python with ComfyUI's two imports (server, aiohttp) stubbed.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
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
  it('include the entrypoint, the healthcheck and the smoke test', () => {
    expect(scripts).toEqual(['entrypoint.sh', 'healthcheck.sh', 'smoke-test.sh']);
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
// for `server.PromptServer` and `aiohttp.web`, then calls the registered /health handler.
const harness = String.raw`
import asyncio, importlib.util, json, sys, types

node_dir = sys.argv[1]
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

class PromptServer:
    instance = None

PromptServer.instance = PromptServer()
PromptServer.instance.routes = Routes()
PromptServer.instance.prompt_queue = Queue(2)

class JsonResponse:
    def __init__(self, data):
        self.data = data

web = types.ModuleType("aiohttp.web")
web.json_response = JsonResponse
aiohttp = types.ModuleType("aiohttp")
aiohttp.web = web
server = types.ModuleType("server")
server.PromptServer = PromptServer
sys.modules.update({"aiohttp": aiohttp, "aiohttp.web": web, "server": server})

spec = importlib.util.spec_from_file_location(
    "comfyume_health", node_dir + "/__init__.py", submodule_search_locations=[node_dir])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

busy = asyncio.run(routes["/health"](None)).data
PromptServer.instance.prompt_queue = Queue(None)
unknown = asyncio.run(routes["/health"](None)).data
print(json.dumps({"routes": sorted(routes), "nodes": module.NODE_CLASS_MAPPINGS,
                  "busy": busy, "unknown": unknown}))
`;

describe('comfyume_health custom node', () => {
  it('registers GET /health answering {"status":"ok"} with the queue length, and no nodes', () => {
    if (!python) return skipBecause('python3 is missing');
    const result = spawnSync(
      python,
      ['-B', '-c', harness, path.join(workerDir, 'custom_nodes/comfyume_health')],
      { encoding: 'utf8' },
    );
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toEqual({
      routes: ['/health'],
      nodes: {},
      busy: { status: 'ok', queue_remaining: 2 },
      // The probe still answers when ComfyUI's queue API is not what we expect.
      unknown: { status: 'ok', queue_remaining: null },
    });
  });
});
