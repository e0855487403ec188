// An emulated Verda instance that boots for real: the emulator's boot hook is freshHostBooter, so
// the instance reaching `running` is a fresh Debian 12 host (systemd-nspawn) whose root accepts
// the SSH key registered through the API and which ran the startup script created through the API
// once at first boot. The script installs a bootstrap host key generated here, so the first SSH
// connection is pinned (no trust on first use): the client waits until the host presents it.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sleep } from '../../src/lib/retry.js';
import { shellQuote } from '../../src/lib/shell.js';
import { connectSsh, fingerprintSha256, type SshConnection } from '../../src/lib/ssh.js';
import { freshHostSupport } from '../../src/sandbox/fresh-host.js';
import { freshHostBooter, type FreshHostBooter } from '../../src/sandbox/verda-instance-boot.js';
import { startVerdaEmulator, type VerdaEmulator } from '../../src/sandbox/verda.js';

jest.setTimeout(300_000);

const support = freshHostSupport();
if (!support.ok) console.log(`verda instance boot tests skipped: ${support.reason}`);
const maybe = support.ok ? describe : describe.skip;

/** A fresh ed25519 key pair from ssh-keygen: the private key, the .pub line, its fingerprint. */
function keygen(dir: string, name: string) {
  const file = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
  const pub = readFileSync(`${file}.pub`, 'utf8').trim();
  return {
    privateKey: readFileSync(file, 'utf8'),
    publicKey: pub,
    fingerprint: fingerprintSha256(Buffer.from(pub.split(/\s+/)[1] ?? '', 'base64')),
  };
}

maybe('a Verda instance booted as a fresh host', () => {
  let dir: string;
  let emu: VerdaEmulator;
  let booter: FreshHostBooter;
  let token: string;
  let client: ReturnType<typeof keygen>;
  let bootstrap: ReturnType<typeof keygen>;
  let instanceId: string;
  let ip: string;
  let conn: SshConnection | undefined;
  let pinMisses = 0;
  let provisioningMs = 0;

  async function api(method: string, p: string, body?: unknown) {
    const res = await fetch(`${emu.apiUrl}${p}`, {
      method,
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (res.status >= 300) throw new Error(`${method} ${p}: ${res.status} ${text}`);
    return text;
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'verda-boot-'));
    client = keygen(dir, 'client');
    bootstrap = keygen(dir, 'bootstrap-host');
    booter = freshHostBooter();
    emu = await startVerdaEmulator({ timeScale: 0, instances: { bootHost: booter.bootHost } });
    token = await emu.token();

    const keyId = await api('POST', '/sshkeys', { name: 'runner', key: client.publicKey });
    const hostKey = bootstrap.privateKey.trimEnd();
    // The cloud's startup script: leave a mark, then install the bootstrap host key and restart sshd.
    const script = [
      '#!/bin/bash',
      'set -euo pipefail',
      'echo "startup ran as $(id -un)" > /root/startup-marker',
      "cat > /etc/ssh/ssh_host_ed25519_key <<'HOSTKEY'",
      hostKey,
      'HOSTKEY',
      'chmod 600 /etc/ssh/ssh_host_ed25519_key',
      `printf '%s\\n' ${shellQuote(bootstrap.publicKey)} > /etc/ssh/ssh_host_ed25519_key.pub`,
      'systemctl restart ssh',
      'echo done',
      '',
    ].join('\n');
    const scriptId = await api('POST', '/scripts', { name: 'bootstrap', script });
    instanceId = await api('POST', '/instances', {
      instance_type: '1V100.6V',
      image: 'ubuntu-24.04-cuda-12.8-open-docker',
      hostname: 'gpu-boot-test',
      description: 'boot hook test',
      location_code: 'FIN-01',
      ssh_key_ids: [keyId],
      startup_script_id: scriptId,
    });

    // Emulated time past ordered and provisioning; then real time until the host has booted.
    emu.advance(22_000);
    const started = Date.now();
    const deadline = started + 240_000;
    for (;;) {
      const inst = JSON.parse(await api('GET', `/instances/${instanceId}`)) as {
        status: string;
        ip: string | null;
      };
      if (inst.status === 'running' && inst.ip) {
        ip = inst.ip;
        break;
      }
      if (inst.status !== 'provisioning' || Date.now() > deadline)
        throw new Error(
          `instance ${instanceId} is ${inst.status}, expected running: ${emu.instances()[0]?.bootError ?? ''}`,
        );
      await sleep(250);
    }
    provisioningMs = Date.now() - started;

    // The pinned first connection: retried until the host presents the bootstrap key.
    const sshDeadline = Date.now() + 60_000;
    for (;;) {
      try {
        conn = await connectSsh({
          host: ip,
          port: 22,
          username: 'root',
          privateKey: client.privateKey,
          fingerprints: [bootstrap.fingerprint],
          readyTimeoutMs: 10_000,
        });
        break;
      } catch (err) {
        pinMisses += 1;
        if (Date.now() > sshDeadline) throw err;
        await sleep(250);
      }
    }
    console.log(
      `instance running after ${provisioningMs} ms of real time; pinned ssh after ${pinMisses} refused attempts`,
    );
  }, 400_000);

  afterAll(async () => {
    await conn?.close();
    await emu?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is running at the booted host address, with a booted host behind it', () => {
    expect(ip).toMatch(/^10\.222\.\d+\.2$/);
    const hosts = booter.bootedHosts();
    expect(hosts.map((h) => h.instanceId)).toEqual([instanceId]);
    expect(hosts[0]?.host.address).toBe(ip);
    expect(emu.instances()[0]).toMatchObject({ status: 'running', ip, bootCalls: 1 });
  });

  it('takes the registered key, presents the bootstrap host key, and ran the startup script as root once', async () => {
    if (!conn) throw new Error('no ssh connection');
    expect(conn.hostFingerprint).toBe(bootstrap.fingerprint);
    const marker = await conn.run('cat /root/startup-marker');
    expect(marker.stdout).toBe('startup ran as root\n');
    const state = await conn.run(
      'hostname; systemctl is-active comfyume-startup.service; cat /var/log/comfyume-startup.log; test -e /var/lib/comfyume-startup.done && echo marked',
    );
    expect(state.stdout).toBe('gpu-boot-test\nactive\ndone\nmarked\n');
    const keys = await conn.run('cat /root/.ssh/authorized_keys');
    expect(keys.stdout.split('\n')).toContain(client.publicKey);
    // Pinned, not trusted on first use: any other pin is refused.
    await expect(
      connectSsh({
        host: ip,
        port: 22,
        username: 'root',
        privateKey: client.privateKey,
        fingerprints: [client.fingerprint],
      }),
    ).rejects.toThrow(/is not pinned: the server presented/);
  });

  it("the harness's exec keeps working after the startup script replaced the host key", async () => {
    const host = booter.bootedHosts()[0]?.host;
    if (!host) throw new Error('no booted host');
    expect(host.hostKeyFingerprint).not.toBe(bootstrap.fingerprint);
    const r = await host.exec('cat /root/startup-marker');
    expect(r).toMatchObject({ code: 0, stdout: 'startup ran as root\n' });
  });

  it('delete stops the booted host and removes its namespace', async () => {
    const name = booter.bootedHosts()[0]?.host.name ?? '';
    expect(existsSync(`/run/netns/${name}`)).toBe(true);
    await conn?.close();
    conn = undefined;
    await api('PUT', '/instances', { action: 'delete', id: [instanceId], volume_ids: [] });
    expect(booter.bootedHosts()).toEqual([]);
    // The stop runs behind the reply; the emulator's stop waits for it.
    await emu.stop();
    expect(existsSync(`/run/netns/${name}`)).toBe(false);
  });
});
