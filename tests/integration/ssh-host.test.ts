// The fixture GPU host (real sshd) and the SSH library against it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { shellQuote } from '../../src/lib/shell.js';
import { connectSsh, type SshConnection } from '../../src/lib/ssh.js';
import {
  FIXTURE_TAILSCALE_IP,
  isRunning,
  netnsSupport,
  startSshHost,
  type SshHost,
} from '../../src/sandbox/ssh-host.js';
import { dropLink } from './ssh-drop.js';

// Real sshd and R2 emulator runs take seconds; set here as project-level testTimeout is not applied.
jest.setTimeout(120_000);

let host: SshHost;
let conn: SshConnection;

const connect = (h: SshHost, fingerprints = [h.hostKeyFingerprint]) =>
  connectSsh({
    host: h.host,
    port: h.port,
    username: h.user,
    privateKey: h.privateKey,
    fingerprints,
  });

beforeAll(async () => {
  host = await startSshHost();
  conn = await connect(host);
});
afterAll(async () => {
  await conn?.close();
  await host?.stop();
});

describe('pinned host keys', () => {
  it('refuses a wrong pin, showing presented and expected fingerprints', async () => {
    const wrong = 'SHA256:' + 'x'.repeat(43);
    await expect(connect(host, [wrong])).rejects.toThrow(
      new RegExp(
        `${host.host}:${host.port}.*presented ${host.hostKeyFingerprint.replace(/[+/]/g, '\\$&')}, expected ${wrong}`,
      ),
    );
  });
  it('accepts the key when it is one of several pins (rotation)', async () => {
    const c = await connect(host, ['SHA256:' + 'y'.repeat(43), host.hostKeyFingerprint]);
    expect(c.hostFingerprint).toBe(host.hostKeyFingerprint);
    await c.close();
  });
});

describe('exec', () => {
  it('runs commands as the test user with the tailscale stub on PATH', async () => {
    const r = await conn.run('id -un; tailscale ip -4');
    expect(r.stdout.split('\n').slice(0, 2)).toEqual([host.user, FIXTURE_TAILSCALE_IP]);
  });
  it('streams stdout byte for byte', async () => {
    const model = readdirSync(path.join(host.modelsDir, 'checkpoints'))[0] ?? '';
    const file = path.join(host.modelsDir, 'checkpoints', model);
    const handle = conn.exec(`cat ${shellQuote(file)}`);
    const hash = createHash('sha256');
    for await (const chunk of handle.stdout) hash.update(chunk as Buffer);
    await handle.done;
    expect(hash.digest('hex')).toBe(createHash('sha256').update(readFileSync(file)).digest('hex'));
  });
  it('rejects done on exit code 2 with the stderr tail, accepts allowed codes', async () => {
    await expect(conn.run('echo boom >&2; exit 2')).rejects.toThrow(
      /exited with code 2.*stderr: boom/,
    );
    await expect(conn.run('exit 1', { allowedExitCodes: [0, 1] })).resolves.toMatchObject({
      code: 1,
    });
  });
  it('rejects done when the command is killed by a signal', async () => {
    await expect(conn.run('kill -KILL $$')).rejects.toThrow(/signal (SIG)?KILL/);
  });
  it('rejects done and errors stdout when the connection drops mid-command', async () => {
    const before = new Set(host.sessionPids());
    const c = await connect(host);
    const handle = c.exec('echo started; sleep 30');
    await new Promise((resolve) => handle.stdout.once('data', resolve));
    const link = dropLink(host, before);
    expect(link.killed).toBeGreaterThan(0);
    await expect(handle.done).rejects.toThrow(/before it exited/);
    link.cleanup();
    expect(handle.stdout.destroyed).toBe(true);
    await c.close();
  });
});

describe('root-owned paths through the read wrapper', () => {
  const read = (...paths: string[]) =>
    `sudo -n ${host.readWrapper} -C ${shellQuote(host.hostRoot)} ${paths.map((p) => shellQuote(host.hostRoot + p)).join(' ')}`;

  it('reads allowlisted root-only files (modes kept) but the user cannot read them directly', async () => {
    await expect(
      conn.run(`cat ${shellQuote(host.hostRoot + '/var/lib/tailscale/tailscaled.state')}`),
    ).rejects.toThrow(/Permission denied/);
    const r = await conn.run(
      `${read('/var/lib/tailscale', '/etc/ssh/ssh_host_ed25519_key')} | tar -tvf -`,
    );
    expect(r.stdout).toMatch(/^-rw------- 0\/0 .* var\/lib\/tailscale\/tailscaled\.state$/m);
    expect(r.stdout).toMatch(/etc\/ssh\/ssh_host_ed25519_key$/m);
  });
  it('refuses a path outside the allowlist', async () => {
    await expect(conn.run(read('/etc/passwd'))).rejects.toThrow(/code 77.*not in the allowlist/);
  });
  it("refuses a '..' path", async () => {
    await expect(conn.run(read('/var/lib/tailscale/../../../etc/shadow'))).rejects.toThrow(
      /code 77.*'\.\.'/,
    );
  });
  it('refuses a symlink that escapes the allowlist', async () => {
    symlinkSync('/etc', path.join(host.hostRoot, 'etc/ufw/escape'));
    await expect(conn.run(read('/etc/ufw/escape/shadow'))).rejects.toThrow(
      /code 77.*resolves outside/,
    );
  });
  it('grants nothing else through sudo (tar as root is refused)', async () => {
    await expect(conn.run('sudo -n /usr/bin/tar -cf - /etc/shadow')).rejects.toThrow(
      /exited with code 1/,
    );
  });
});

describe('teardown', () => {
  it('leaves no sshd, no session, no sudoers drop-in, no key file', async () => {
    const h = await startSshHost({ models: [{ path: 'checkpoints/x.safetensors', size: 10 }] });
    const c = await connect(h);
    const sleeper = c.exec('sleep 60');
    await new Promise((r) => setTimeout(r, 200));
    const pids = h.sessionPids();
    // This host's own drop-in (the one naming its read wrapper): other hosts may come and go.
    const dropIns = readdirSync('/etc/sudoers.d').map((f) => path.join('/etc/sudoers.d', f));
    const own = dropIns.filter((f) => readFileSync(f, 'utf8').includes(h.readWrapper));
    expect(own).toHaveLength(1);
    const configPid = Number(
      readFileSync(path.join(path.dirname(h.hostRoot), 'sshd', 'sshd.pid'), 'utf8'),
    );
    expect(pids.length).toBeGreaterThan(0);
    await h.stop();
    await expect(sleeper.done).rejects.toThrow();
    for (const pid of [configPid, ...pids]) expect(isRunning(pid)).toBe(false);
    expect(own.filter((f) => existsSync(f))).toEqual([]);
    expect(existsSync(path.dirname(h.hostRoot))).toBe(false);
    const keyFiles = readdirSync('/home/comfyume-test/.ssh').map((f) =>
      path.join('/home/comfyume-test/.ssh', f),
    );
    expect(keyFiles.filter((f) => readFileSync(f, 'utf8').includes(h.publicKey))).toEqual([]);
    await c.close();
  });
});

describe('network namespace host', () => {
  const support = netnsSupport();
  const maybe = support.ok ? it : it.skip;
  if (!support.ok) console.log(`skipping the netns host test: ${support.reason}`);
  maybe('serves the same host at 10.200.0.2 over a veth pair, torn down on stop', async () => {
    const h = await startSshHost({ netns: true });
    try {
      expect(h.host).toBe('10.200.0.2');
      const route = execFileSync('ip', ['route', 'get', '10.200.0.2'], { encoding: 'utf8' });
      expect(route).toMatch(/dev cfyh/);
      const c = await connect(h);
      expect((await c.run('tailscale ip -4')).stdout.trim()).toBe(FIXTURE_TAILSCALE_IP);
      await c.close();
    } finally {
      await h.stop();
    }
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toMatch(/cfy-/);
  });
});
