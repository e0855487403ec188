// deploy-serverless through its bundle against APIs that never answer well: a closed port, a
// server that accepts and never answers, one that answers 503 to everything, and plain HTTP
// behind an https:// URL. Each run must fail within its api-deadline (plus generous slack for a
// busy runner) with one `::error::` that names the URL and the cause, and with one retry layer:
// requests are counted against the policy's attempts, never attempts × attempts.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import http from 'node:http';
import type net from 'node:net';
import { runAction, type ActionRun } from '../helpers/run-action.js';
import { closedPort } from '../helpers/closed-port.js';

// The default deadline is 60 s: the run that uses it needs room above it.
jest.setTimeout(120_000);

interface Stub {
  port: number;
  connections: number;
  requests: string[];
  stop(): Promise<void>;
}

/** An HTTP server on loopback that answers every request with `answer`, or never (undefined). */
async function stub(answer?: { status: number; body: unknown }): Promise<Stub> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0, requests: [] as string[] };
  const server = http.createServer((req, res) => {
    state.requests.push(`${req.method} ${req.url}`);
    if (!answer) return; // accepted, read, and never answered
    res.writeHead(answer.status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(answer.body));
  });
  server.on('connection', (socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return state.connections;
    },
    get requests() {
      return state.requests;
    },
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

let stubs: Stub[] = [];
afterEach(async () => {
  await Promise.all(stubs.map((s) => s.stop()));
  stubs = [];
});
const started = async (answer?: { status: number; body: unknown }) => {
  const s = await stub(answer);
  stubs.push(s);
  return s;
};

async function status(
  apiUrl: string,
  extra: Record<string, string> = {},
): Promise<{ run: ActionRun; seconds: number }> {
  const begin = Date.now();
  const run = await runAction('deploy-serverless', {
    inputs: {
      command: 'status',
      'api-url': apiUrl,
      'verda-client-id': 'client-id-network-test',
      'verda-client-secret': 'client-secret-network-test',
      ...extra,
    },
    secrets: ['client-id-network-test', 'client-secret-network-test'],
  });
  return { run, seconds: (Date.now() - begin) / 1000 };
}

describe('deploy-serverless against an API that does not answer', () => {
  it('a closed port fails within the default deadline, naming the URL and "connection refused"', async () => {
    const port = await closedPort();
    const { run, seconds } = await status(`http://127.0.0.1:${port}/v1`);
    expect(run.code).toBe(1);
    expect(run.errors).toHaveLength(1);
    expect(run.errors[0]).toMatch(
      new RegExp(
        `^Verda API POST /oauth2/token got no answer from http://127\\.0\\.0\\.1:${port}/v1/oauth2/token: connection refused \\(ECONNREFUSED\\); gave up after [2-6] attempts in .* \\(deadline 1 m 0 s\\)$`,
      ),
    );
    expect(seconds).toBeLessThan(75);
  });

  it('a closed port with api-deadline 5s fails within it', async () => {
    const port = await closedPort();
    const { run, seconds } = await status(`http://127.0.0.1:${port}/v1`, { 'api-deadline': '5s' });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toContain(
      `got no answer from http://127.0.0.1:${port}/v1/oauth2/token: connection refused (ECONNREFUSED)`,
    );
    expect(run.errors[0]).toMatch(/\(deadline 5\.0 s\)$/);
    expect(seconds).toBeLessThan(20);
  });

  it('a server that accepts and never answers is cut at the deadline: "timed out"', async () => {
    const silent = await started();
    const { run, seconds } = await status(`http://127.0.0.1:${silent.port}/v1`, {
      'api-deadline': '5s',
    });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(
      new RegExp(
        `got no answer from http://127\\.0\\.0\\.1:${silent.port}/v1/oauth2/token: timed out \\(no answer within 5\\.0 s\\); gave up after 1 attempt in`,
      ),
    );
    expect(silent.requests).toEqual(['POST /v1/oauth2/token']);
    expect(seconds).toBeLessThan(20);
  });

  it('503 to everything: the token request is retried by the one retry layer only', async () => {
    const busy = await started({
      status: 503,
      body: { code: 'service_unavailable', message: 'try later' },
    });
    const { run, seconds } = await status(`http://127.0.0.1:${busy.port}/v1`, {
      'api-deadline': '2m',
    });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(
      /^Verda API POST \/oauth2\/token answered 503 service_unavailable: try later; gave up after 6 attempts in .* \(deadline 2 m 0 s\)$/,
    );
    // The policy's 6 attempts of the first call, each one token request: not 6 × 6 (or 5 × 6).
    expect(busy.requests).toEqual(Array(6).fill('POST /v1/oauth2/token'));
    expect(seconds).toBeLessThan(100);
  });

  it('plain HTTP behind an https:// URL fails at once as a TLS error, not retried', async () => {
    const plain = await started({ status: 200, body: {} });
    const { run, seconds } = await status(`https://127.0.0.1:${plain.port}/v1`);
    expect(run.code).toBe(1);
    expect(run.errors[0]).toBe(
      `Verda API POST /oauth2/token got no answer from https://127.0.0.1:${plain.port}/v1/oauth2/token: TLS error (ERR_SSL_WRONG_VERSION_NUMBER)`,
    );
    expect(plain.connections).toBe(1);
    expect(plain.requests).toEqual([]);
    expect(seconds).toBeLessThan(20);
  });

  it.each([
    ['api-deadline', '25d'],
    ['wait-timeout', '2147483.648'],
  ])('%s above 2^31-1 ms is refused before any request', async (input, value) => {
    const never = await started({ status: 200, body: {} });
    const { run } = await status(`http://127.0.0.1:${never.port}/v1`, { [input]: value });
    expect(run.code).toBe(1);
    expect(run.errors).toEqual([
      `Input '${input}' is invalid: got "${value}"; expected a duration such as 90s, 15m or 1h30m, at most 24d20h31m23s (2147483647 ms).`,
    ]);
    expect(never.connections).toBe(0);
  });
});
