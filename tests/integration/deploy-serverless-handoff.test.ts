// The endpoint handed to the queue-manager, through the bundle: a GitHub REST stand-in for the
// Actions variable (requests counted, bodies and the token checked) and the sshd fixture as the
// VPS (the .env's other bytes kept by sha256, the file replaced by rename with its mode and
// owner, the restart seen by a logging systemctl/docker on the fixture's PATH), the Verda
// emulator behind. start publishes after the warm-up; stop marks down; a refusal fails the run
// after the summary; no token or key shows anywhere (run-action's leak check).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { runAction, type ActionRun } from '../helpers/run-action.js';
import { WORKSHOP_SECRETS } from '../helpers/workshop-secrets.js';
import { startSshHost, type SshHost } from '../../src/sandbox/ssh-host.js';
import { startVerdaEmulator, type VerdaEmulator } from '../../src/sandbox/verda.js';

jest.setTimeout(120_000);

const token = 'github_pat_fakeTokenForTheStandIn0123456789abcdef';
const name = 'comfyume-workers';

interface SeenRequest {
  method: string;
  path: string;
  auth: string;
  body: Record<string, string>;
}

/** GitHub's Actions variables REST API for acme/ops, on loopback; `refuse` answers 403. */
class GitHubStandIn {
  readonly seen: SeenRequest[] = [];
  /** scope key ('repo' or 'env:<name>') → variable name → value. */
  readonly vars = new Map<string, Map<string, string>>();
  refuse = false;
  url = '';
  private server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => this.handle(req, raw, res));
  });

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }

  private handle(req: http.IncomingMessage, raw: string, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const body = raw ? (JSON.parse(raw) as Record<string, string>) : {};
    this.seen.push({
      method: req.method ?? '',
      path: url.pathname,
      auth: req.headers.authorization ?? '',
      body,
    });
    const send = (status: number, data?: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(data === undefined ? '' : JSON.stringify(data));
    };
    if (this.refuse)
      return send(403, { message: 'Resource not accessible by personal access token' });
    const m =
      /^\/repos\/acme\/ops\/(?:actions|environments\/([^/]+))\/variables(?:\/([A-Za-z0-9_]+))?$/.exec(
        url.pathname,
      );
    if (!m) return send(404, { message: 'Not Found' });
    const scope = m[1] ? `env:${decodeURIComponent(m[1])}` : 'repo';
    const vars = this.vars.get(scope) ?? new Map<string, string>();
    this.vars.set(scope, vars);
    const varName = m[2];
    if (req.method === 'POST' && !varName) {
      if (!body.name || !body.value) return send(422, { message: 'name and value are required' });
      if (vars.has(body.name)) return send(409, { message: 'Already exists' });
      vars.set(body.name, body.value);
      return send(201, {});
    }
    if (!varName) return send(405, { message: 'Method Not Allowed' });
    if (!vars.has(varName)) return send(404, { message: 'Not Found' });
    if (req.method === 'PATCH') {
      if (!body.value) return send(422, { message: 'value is required' });
      vars.set(varName, body.value);
      return send(204);
    }
    if (req.method === 'DELETE') {
      vars.delete(varName);
      return send(204);
    }
    return send(405, { message: 'Method Not Allowed' });
  }
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

// A .env as people write them: comments, a CRLF line, an `export`, a byte that is not UTF-8,
// `$` and quotes, and no newline at the end.
const ENV_HEAD = Buffer.concat([
  Buffer.from(
    '# queue-manager settings\nREDIS_HOST=100.99.216.71\r\nexport WORKSHOP_ENDPOINT=',
    'latin1',
  ),
]);
const ENV_TAIL = Buffer.concat([
  Buffer.from('\nGREETING="caf', 'latin1'),
  Buffer.from([0xe9]),
  Buffer.from(" $HOME 'x'\"\n\n# end, no newline after this\nLAST=1", 'latin1'),
]);
const envWith = (value: string) =>
  Buffer.concat([ENV_HEAD, Buffer.from(value, 'latin1'), ENV_TAIL]);

let emu: VerdaEmulator;
let gh: GitHubStandIn;
let vps: SshHost;
let qmDir: string;
let envFile: string;
let restartLog: string;
let uid: number;
let gid: number;

beforeAll(async () => {
  [emu, vps] = await Promise.all([
    startVerdaEmulator({
      timeScale: 0,
      tickPerRequestMs: 1_000,
      delays: { initializingMs: 2_000, imagePullingMs: 8_000, coldStartMs: 20_000 },
      secrets: WORKSHOP_SECRETS,
      registryCredentials: ['ghcr-ahelme'],
    }),
    startSshHost(),
  ]);
  gh = new GitHubStandIn();
  await gh.start();
  uid = Number(execFileSync('id', ['-u', vps.user], { encoding: 'utf8' }).trim());
  gid = Number(execFileSync('id', ['-g', vps.user], { encoding: 'utf8' }).trim());
  qmDir = await mkdtemp(path.join(os.tmpdir(), 'queue-manager-'));
  chmodSync(qmDir, 0o755);
  chownSync(qmDir, uid, gid);
  envFile = path.join(qmDir, '.env');
  restartLog = path.join(qmDir, 'restarts.log');
  writeFileSync(restartLog, '');
  chownSync(restartLog, uid, gid);
  // Logging stand-ins first on the VPS sessions' PATH (the fixture's bin directory): the restart
  // command is observed as the VPS would run it.
  const bin = path.dirname(vps.readWrapper);
  const logger = (tool: string) => `#!/bin/sh\nprintf '%s\\n' "${tool} $*" >> ${restartLog}\n`;
  writeFileSync(
    path.join(bin, 'systemctl'),
    `${logger('systemctl')}case "$*" in *broken*) echo 'Failed to restart broken.service: Unit broken.service not found.' >&2; exit 5;; esac\n`,
    { mode: 0o755 },
  );
  writeFileSync(path.join(bin, 'docker'), logger('docker'), { mode: 0o755 });
  // sudo -n as a NOPASSWD rule would run it: logged, then the command itself.
  writeFileSync(
    path.join(bin, 'sudo'),
    `#!/bin/sh\nprintf '%s\\n' "sudo $*" >> ${restartLog}\n[ "$1" = -n ] && shift\nexec "$@"\n`,
    { mode: 0o755 },
  );
});
afterAll(async () => {
  await Promise.all([emu?.stop(), vps?.stop(), gh?.stop()]);
  if (qmDir) await rm(qmDir, { recursive: true, force: true });
});

function writeEnv(content: Buffer, mode = 0o640): void {
  writeFileSync(envFile, content);
  chmodSync(envFile, mode);
  chownSync(envFile, uid, gid);
}

const restarts = () => readFileSync(restartLog, 'utf8').split('\n').filter(Boolean);

function deploy(inputs: Record<string, string | number>): Promise<ActionRun> {
  return runAction('deploy-serverless', {
    inputs: {
      'api-url': emu.apiUrl,
      'verda-client-id': emu.clientId,
      'verda-client-secret': emu.clientSecret,
      'inference-api-key': emu.inferenceKey,
      'poll-interval': '20ms',
      'wait-timeout': '60s',
      'image-tag': 'sha-0123abc',
      'publish-variable': 'WORKSHOP_ENDPOINT',
      'github-token': token,
      'vps-host': vps.host,
      'vps-port': vps.port,
      'vps-user': vps.user,
      'vps-ssh-private-key': vps.privateKey,
      'vps-host-key-fingerprints': vps.hostKeyFingerprint,
      'vps-env-file': envFile,
      'vps-restart': 'systemd:queue-manager.service',
      ...inputs,
    },
    env: { GITHUB_API_URL: gh.url, GITHUB_REPOSITORY: 'acme/ops' },
    secrets: [emu.clientSecret, emu.inferenceKey, token, vps.privateKey],
  });
}

describe('start publishes the endpoint, stop marks it down', () => {
  let endpoint = '';
  beforeEach(() => {
    gh.seen.length = 0;
  });

  it('start: variable created, the .env line replaced by rename, the queue-manager restarted', async () => {
    writeEnv(envWith('http://old.example/stale'));
    const inodeBefore = statSync(envFile).ino;
    const run = await deploy({ command: 'start' });
    expect(run.errors).toEqual([]);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    endpoint = run.outputs['endpoint-url'] ?? '';
    expect(endpoint).toBe(`${emu.inferenceBaseUrl}/${name}`);
    expect(run.outputs.handoff).toBe('set');
    // Published only after the warm-up rendered: its output was fetched first.
    expect(run.outputs['first-job-seconds']).not.toBe('');

    // GitHub: PATCH (absent: 404), then POST with the name and the value; the token every time.
    expect(gh.seen.map((r) => `${r.method} ${r.path}`)).toEqual([
      'PATCH /repos/acme/ops/actions/variables/WORKSHOP_ENDPOINT',
      'POST /repos/acme/ops/actions/variables',
    ]);
    expect(gh.seen[1]?.body).toEqual({ name: 'WORKSHOP_ENDPOINT', value: endpoint });
    expect(gh.seen.every((r) => r.auth === `token ${token}`)).toBe(true);
    expect(gh.vars.get('repo')?.get('WORKSHOP_ENDPOINT')).toBe(endpoint);

    // The VPS: exactly the expected bytes (every other line kept, CRLF and the last line
    // without newline included), a new inode (renamed into place), same mode and owner.
    const after = readFileSync(envFile);
    expect(sha256(after)).toBe(sha256(envWith(endpoint)));
    expect(sha256(after.subarray(0, ENV_HEAD.length))).toBe(sha256(ENV_HEAD));
    expect(sha256(after.subarray(after.length - ENV_TAIL.length))).toBe(sha256(ENV_TAIL));
    const st = statSync(envFile);
    expect(st.ino).not.toBe(inodeBefore);
    expect({ mode: st.mode & 0o7777, uid: st.uid, gid: st.gid }).toEqual({ mode: 0o640, uid, gid });
    expect(restarts()).toEqual([
      'sudo -n systemctl restart queue-manager.service',
      'systemctl restart queue-manager.service',
    ]);
    // No temp file left beside it.
    expect(execFileSync('ls', ['-A', qmDir], { encoding: 'utf8' }).split('\n').sort()).toEqual([
      '',
      '.env',
      'restarts.log',
    ]);
    expect(run.summary).toContain('Endpoint handed to the queue-manager');
    expect(run.summary).toMatch(
      /\| VPS .* \| WORKSHOP_ENDPOINT=http:\/\/127\.0\.0\.1:\d+\/comfyume-workers \| replaced 1 line\(s\)/,
    );
  });

  it('a second start updates the variable (one PATCH), leaves the .env as it is and restarts', async () => {
    const before = readFileSync(envFile);
    const inode = statSync(envFile).ino;
    const logged = restarts().length;
    const run = await deploy({ command: 'start' });
    expect(run.errors).toEqual([]);
    expect(gh.seen.map((r) => `${r.method} ${r.path}`)).toEqual([
      'PATCH /repos/acme/ops/actions/variables/WORKSHOP_ENDPOINT',
    ]);
    expect(gh.seen[0]?.body).toEqual({ value: endpoint });
    expect(sha256(readFileSync(envFile))).toBe(sha256(before));
    expect(statSync(envFile).ino).toBe(inode);
    // Restarted all the same: a run whose restart failed would otherwise be stuck on the old value.
    expect(restarts().slice(logged)).toEqual([
      'sudo -n systemctl restart queue-manager.service',
      'systemctl restart queue-manager.service',
    ]);
    expect(run.summary).toContain(
      'already so: not written; systemctl restart queue-manager.service',
    );
  });

  it('stop deletes the variable and empties the line, then restarts', async () => {
    const logged = restarts().length;
    const run = await deploy({ command: 'stop' });
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.outputs).toMatchObject({ status: 'paused', handoff: 'down' });
    expect(gh.seen.map((r) => `${r.method} ${r.path}`)).toEqual([
      'DELETE /repos/acme/ops/actions/variables/WORKSHOP_ENDPOINT',
    ]);
    expect(gh.vars.get('repo')?.has('WORKSHOP_ENDPOINT')).toBe(false);
    expect(sha256(readFileSync(envFile))).toBe(sha256(envWith('')));
    expect(restarts().slice(logged)).toEqual([
      'sudo -n systemctl restart queue-manager.service',
      'systemctl restart queue-manager.service',
    ]);
    // Marked down before the fleet was paused: the hand-off's log group comes first.
    expect(run.stdout.indexOf('Mark the endpoint down')).toBeLessThan(run.stdout.indexOf('pause'));
  });

  it('an environment variable and a docker compose queue-manager, appended when the line is absent', async () => {
    const plain = Buffer.from('REDIS_HOST=100.99.216.71\nQUEUE=default', 'latin1');
    writeEnv(plain, 0o600);
    gh.vars.set('env:workshop', new Map([['WORKSHOP_ENDPOINT', 'http://old']]));
    const logged = restarts().length;
    const run = await deploy({
      command: 'start',
      'variable-scope': 'environment',
      'variable-environment': 'workshop',
      'vps-restart': 'compose:/home/dev/comfy-multi:queue-manager',
    });
    expect(run.errors).toEqual([]);
    expect(gh.seen.map((r) => `${r.method} ${r.path}`)).toEqual([
      'PATCH /repos/acme/ops/environments/workshop/variables/WORKSHOP_ENDPOINT',
    ]);
    expect(gh.vars.get('env:workshop')?.get('WORKSHOP_ENDPOINT')).toBe(endpoint);
    expect(readFileSync(envFile).toString('latin1')).toBe(
      `REDIS_HOST=100.99.216.71\nQUEUE=default\nWORKSHOP_ENDPOINT=${endpoint}\n`,
    );
    expect(statSync(envFile).mode & 0o7777).toBe(0o600);
    expect(restarts().slice(logged)).toEqual([
      'docker compose --project-directory /home/dev/comfy-multi up -d --no-deps --force-recreate queue-manager',
    ]);
  });
});

describe('a hand-off that fails fails the run, after the summary', () => {
  beforeEach(() => {
    gh.seen.length = 0;
    gh.refuse = false;
  });

  it('GitHub refusing the token: the VPS is still written, the run fails naming the permission', async () => {
    writeEnv(envWith('x'));
    gh.refuse = true;
    const run = await deploy({ command: 'start' });
    expect(run.code).toBe(1);
    expect(run.outputs.handoff).toBe('failed');
    expect(run.errors.join('\n')).toContain(
      'the endpoint was not handed to the queue-manager: publishing the repository variable WORKSHOP_ENDPOINT of acme/ops failed (HTTP 403)',
    );
    expect(run.errors.join('\n')).toContain('the token needs write access to Variables');
    expect(gh.seen).toHaveLength(1);
    expect(run.summary).toMatch(
      /\| GitHub repository variable WORKSHOP_ENDPOINT of acme\/ops \| .* \| FAILED \|/,
    );
    expect(sha256(readFileSync(envFile))).toBe(sha256(envWith(run.outputs['endpoint-url'] ?? '')));
  });

  it('a VPS presenting another host key: nothing written there, the run fails naming both keys', async () => {
    writeEnv(envWith('x'));
    const before = sha256(readFileSync(envFile));
    const logged = restarts().length;
    const wrongPin = `SHA256:${'A'.repeat(43)}`;
    const run = await deploy({ command: 'stop', 'vps-host-key-fingerprints': wrongPin });
    expect(run.code).toBe(1);
    // The stop itself ran: billing ended even though the VPS could not be told.
    expect(run.outputs.status).toBe('paused');
    const error = run.errors.join('\n');
    expect(error).toContain(`handing the endpoint to ${vps.user}@${vps.host}:${envFile} failed`);
    expect(error).toContain(vps.hostKeyFingerprint);
    expect(error).toContain(wrongPin);
    expect(sha256(readFileSync(envFile))).toBe(before);
    expect(restarts()).toHaveLength(logged);
    expect(run.summary).toContain('| FAILED |');
  });

  it('a restart that fails fails the run; the next run restarts though the file is right', async () => {
    writeEnv(envWith('x'));
    const failed = await deploy({ command: 'stop', 'vps-restart': 'systemd:broken.service' });
    expect(failed.code).toBe(1);
    expect(failed.outputs.handoff).toBe('failed');
    expect(failed.errors.join('\n')).toContain(
      'the line was written, but restarting the queue-manager (systemctl restart broken.service) failed',
    );
    expect(failed.errors.join('\n')).toContain('Unit broken.service not found');
    expect(sha256(readFileSync(envFile))).toBe(sha256(envWith('')));
    const logged = restarts().length;
    const again = await deploy({ command: 'stop' });
    expect(again.errors).toEqual([]);
    expect(again.outputs.handoff).toBe('down');
    expect(restarts().slice(logged)).toEqual([
      'sudo -n systemctl restart queue-manager.service',
      'systemctl restart queue-manager.service',
    ]);
  });

  it('an env file that does not exist is refused, not created', async () => {
    const run = await deploy({ command: 'stop', 'vps-env-file': path.join(qmDir, 'missing.env') });
    expect(run.code).toBe(1);
    expect(run.errors.join('\n')).toContain('missing.env does not exist');
    expect(execFileSync('ls', ['-A', qmDir], { encoding: 'utf8' })).not.toContain('missing');
  });
});

describe('hand-off inputs are checked before any request', () => {
  it.each([
    [{ 'vps-host-key-fingerprints': '' }, /Input 'vps-host-key-fingerprints' is invalid/],
    [
      { 'vps-restart': 'systemd:queue manager; reboot' },
      /Input 'vps-restart' is invalid: got "systemd:queue manager; reboot"; expected systemd:<unit>/,
    ],
    [{ 'vps-restart': 'compose:relative/dir:qm' }, /Input 'vps-restart' is invalid/],
    [{ 'vps-restart': '' }, /Input 'vps-restart' is invalid/],
    [
      { 'vps-env-file': '.env' },
      /Input 'vps-env-file' is invalid: got ".env"; expected an absolute file path/,
    ],
    [{ 'vps-env-file': '/home/dev/../etc/passwd' }, /Input 'vps-env-file' is invalid/],
    [{ 'publish-variable': 'GITHUB_ENDPOINT' }, /Input 'publish-variable' is invalid/],
    [{ 'github-token': '' }, /Input 'github-token' is invalid/],
    [{ 'variable-scope': 'environment' }, /Input 'variable-environment' is invalid/],
    [
      { 'vps-ssh-private-key': 'ssh-ed25519 AAAA… a public key' },
      /Input 'vps-ssh-private-key' is invalid: got "<redacted>"/,
    ],
    [
      { warmup: 'false' },
      /Input 'warmup' is invalid: got "false"; expected true when the endpoint is published/,
    ],
  ] as [Record<string, string>, RegExp][])('%j', async (inputs, expected) => {
    emu.clearRequests();
    gh.seen.length = 0;
    const logged = restarts().length;
    const run = await deploy({ command: 'start', ...inputs });
    expect(run.code).toBe(1);
    expect(run.errors.join('\n')).toMatch(expected);
    expect(emu.requests()).toEqual([]);
    expect(gh.seen).toEqual([]);
    expect(restarts()).toHaveLength(logged);
  });
});
