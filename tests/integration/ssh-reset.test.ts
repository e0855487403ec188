// A peer that resets the TCP connection while the SSH connection is being set up must never
// crash an action: through the bundles, backup-verda and sync-models each run 20 times against a
// loopback server that resets at once, after its SSH banner, or mid key exchange. Every run is a
// clear failure (exit 1, one `::error::` naming the host and the cause, no stack trace), and each
// failed backup still opens its "Nightly backup failing" issue. A key that is not a private key
// is refused before anything connects.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { makeSigningKey } from '../../src/sandbox/signing-key.js';
import type { ActionRun } from '../helpers/run-action.js';
import { startBackupWorld, type BackupWorld } from './backup-setup.js';
import { startSyncWorld, type SyncWorld } from './sync-models-setup.js';

const RUNS = 20;
const AT_ONCE = 4;
const PIN = `SHA256:${'A'.repeat(43)}`;

type Variant = 'reset on accept' | 'reset after the banner' | 'reset mid key exchange';
const VARIANTS: Variant[] = ['reset on accept', 'reset after the banner', 'reset mid key exchange'];

interface ResetServer {
  port: number;
  connections: number;
  close(): Promise<void>;
}

/** Accepts TCP connections and resets each one (RST, not FIN) at the point the variant names. */
async function startResetServer(variant: Variant): Promise<ResetServer> {
  const server = net.createServer((socket) => {
    state.connections++;
    socket.on('error', () => {});
    if (variant === 'reset on accept') return void socket.resetAndDestroy();
    socket.write('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n');
    if (variant === 'reset after the banner')
      return void setImmediate(() => socket.resetAndDestroy());
    // The client's banner and the start of its KEXINIT: reset once the key exchange is under way.
    let read = 0;
    socket.on('data', (d: Buffer) => {
      read += d.length;
      if (read > 64) socket.resetAndDestroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const state: ResetServer = {
    port: (server.address() as AddressInfo).port,
    connections: 0,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
  return state;
}

/** Runs `count` runs, `AT_ONCE` at a time (each ends at once: the reset is immediate). */
async function runMany(
  count: number,
  one: (i: number) => Promise<ActionRun>,
): Promise<ActionRun[]> {
  const runs: ActionRun[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      runs[i] = await one(i);
    }
  };
  await Promise.all(Array.from({ length: AT_ONCE }, worker));
  return runs;
}

/**
 * What keeps a run from being a clear failure (exit 1, one `::error::` naming where and why, no
 * stack trace anywhere); empty when it is one. A crash shows as its first lines.
 */
function problems(run: ActionRun, port: number, variant: Variant): string[] {
  const output = `${run.stdout}\n${run.stderr}`;
  const found: string[] = [];
  if (run.code !== 1) found.push(`exit code ${run.code}`);
  const lines = output.split('\n');
  const stackAt = lines.findIndex((l) => /^\s+at /.test(l));
  if (stackAt >= 0)
    found.push(
      `a stack trace after: ${lines.slice(Math.max(0, stackAt - 3), stackAt).join(' | ')}`,
    );
  else if (/Unhandled|Uncaught|node:events/.test(output)) found.push('an unhandled error');
  if (run.errors.length !== 1) found.push(`${run.errors.length} ::error:: lines`);
  else if (
    !run.errors[0]!.includes(`127.0.0.1:${port}`) ||
    !/connection reset|closed the connection/.test(run.errors[0]!)
  )
    found.push(`the error names no host or cause: ${run.errors[0]}`);
  return found.map((p) => `${variant}: ${p}`);
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'ssh-reset-'));
const keyFile = path.join(dir, 'id_ed25519');
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyFile]);
const privateKey = readFileSync(keyFile, 'utf8');
const publicKey = readFileSync(`${keyFile}.pub`, 'utf8');

const servers = new Map<Variant, ResetServer>();
let backup: BackupWorld;
let sync: SyncWorld;
let signingKey: string;

// The few GitHub REST calls of the alert: no open issue is listed, so each failure creates one.
const created: { title: string; body: string }[] = [];
let github: http.Server;
let githubUrl = '';
const token = 'ghs_resetTestToken0123456789abcdef';

beforeAll(async () => {
  for (const v of VARIANTS) servers.set(v, await startResetServer(v));
  [backup, sync, signingKey] = await Promise.all([
    startBackupWorld(),
    startSyncWorld(),
    makeSigningKey(dir).then((k) => k.privateKey),
  ]);
  github = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      res.setHeader('content-type', 'application/json');
      if (url.pathname !== '/repos/acme/ops/issues') return void res.writeHead(404).end('{}');
      if (req.method === 'GET') return void res.end('[]');
      const issue = JSON.parse(body) as { title: string; body: string };
      created.push(issue);
      res.writeHead(201).end(JSON.stringify({ number: created.length, ...issue }));
    });
  });
  await new Promise<void>((r) => github.listen(0, '127.0.0.1', r));
  githubUrl = `http://127.0.0.1:${(github.address() as AddressInfo).port}`;
}, 90_000);

afterAll(async () => {
  await Promise.all([...servers.values()].map((s) => s.close()));
  await new Promise<void>((r) => (github ? github.close(() => r()) : r()));
  await Promise.all([backup?.stop(), sync?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

const variantOf = (i: number): Variant => VARIANTS[i % VARIANTS.length]!;
const serverOf = (v: Variant): ResetServer => servers.get(v)!;

const runBackup = (port: number, overrides: Record<string, string> = {}) =>
  backup.run(
    {
      host: '127.0.0.1',
      port: String(port),
      'ssh-private-key': privateKey,
      'host-key-fingerprints': PIN,
      'signing-key': signingKey,
      'github-token': token,
      ...overrides,
    },
    {
      GITHUB_API_URL: githubUrl,
      GITHUB_REPOSITORY: 'acme/ops',
      GITHUB_SERVER_URL: 'https://github.example',
      GITHUB_RUN_ID: '77',
    },
    [privateKey, signingKey, token],
  );

const runSync = (port: number, overrides: Record<string, string> = {}) =>
  sync.run(
    {
      direction: 'push',
      source: `ssh://root@127.0.0.1:${port}/models`,
      'ssh-private-key': privateKey,
      'host-key-fingerprints': PIN,
      ...overrides,
    },
    [privateKey],
  );

describe('a TCP reset during the SSH connect', () => {
  it(`fails backup-verda clearly ${RUNS} times out of ${RUNS}, and each failure opens its alert`, async () => {
    const before = created.length;
    const runs = await runMany(RUNS, (i) => runBackup(serverOf(variantOf(i)).port));
    const found = runs.flatMap((run, i) =>
      problems(run, serverOf(variantOf(i)).port, variantOf(i)),
    );
    expect(found).toEqual([]);
    const alerts = created.slice(before);
    expect(alerts).toHaveLength(RUNS);
    for (const alert of alerts) {
      expect(alert.title).toBe('Nightly backup failing');
      expect(alert.body).toMatch(/127\.0\.0\.1:\d+.*(connection reset|closed the connection)/);
      expect(alert.body).not.toContain(privateKey.split('\n')[1]);
    }
  });

  it(`fails sync-models clearly ${RUNS} times out of ${RUNS}`, async () => {
    const runs = await runMany(RUNS, (i) => runSync(serverOf(variantOf(i)).port));
    const found = runs.flatMap((run, i) =>
      problems(run, serverOf(variantOf(i)).port, variantOf(i)),
    );
    expect(found).toEqual([]);
  });
});

describe('ssh-private-key that is not a private key', () => {
  const notPrivate: [string, string][] = [
    ['a public key line', publicKey],
    ['a bare public key blob', publicKey.split(' ')[1]!],
    ['garbage', 'not a key at all'],
    ['a PEM certificate', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'],
  ];
  const counter = () => serverOf('reset on accept');

  it.each(notPrivate)('is refused up front by both actions: %s', async (_what, value) => {
    const before = counter().connections;
    const runs = [
      await runBackup(counter().port, { 'ssh-private-key': value }),
      await runSync(counter().port, { 'ssh-private-key': value }),
    ];
    for (const run of runs) {
      expect(run.code).toBe(1);
      expect(run.errors).toHaveLength(1);
      expect(run.errors[0]).toMatch(
        /^Input 'ssh-private-key' is invalid: got "<redacted>"; expected .*OpenSSH private key.*-----BEGIN OPENSSH PRIVATE KEY-----/,
      );
      // The value itself is never echoed (it may be a secret of another kind); it is only
      // handed to the runner's masking, which is what ::add-mask:: lines are.
      const output = `${run.stdout}\n${run.stderr}`
        .split('\n')
        .filter((line) => !line.startsWith('::add-mask::'))
        .join('\n');
      // (The PEM armour words are in the expected-format text itself.)
      const parts = value
        .split(/\s+/)
        .filter((p) => p.length >= 8 && !/^-----(BEGIN|END)$/.test(p));
      for (const part of parts) expect(output).not.toContain(part);
    }
    expect(counter().connections).toBe(before);
  });
});
