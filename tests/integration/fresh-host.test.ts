// The fresh GPU instance (src/sandbox/fresh-host.ts): a Debian 12 root booted with systemd in
// systemd-nspawn, reached over ssh, installing from the local APT repository with no network, its
// tailscale and docker.io stand-ins, its loop disks, a reboot, and a stop that leaves nothing.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { connectSsh } from '../../src/lib/ssh.js';
import {
  SEED_TAILSCALE_IP,
  freshHostSupport,
  startFreshHost,
  type FreshHost,
} from '../../src/sandbox/fresh-host.js';

jest.setTimeout(180_000);

const support = freshHostSupport();
if (!support.ok) console.log(`fresh-host tests skipped: ${support.reason}`);
const describeIf = support.ok ? describe : describe.skip;

let host: FreshHost;

/** Runs a command inside; fails the test with its output unless it exits 0. */
async function sh(command: string, input?: string): Promise<string> {
  const r = await host.exec(command, input === undefined ? {} : { input });
  if (r.code !== 0) {
    throw new Error(`exit ${r.code}: ${command}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r.stdout;
}

const APT = 'DEBIAN_FRONTEND=noninteractive apt-get -o Dpkg::Use-Pty=0 -qq';

function indexOfLine(lines: string[], re: RegExp, from = 0): number {
  const i = lines.slice(from).findIndex((l) => re.test(l));
  return i < 0 ? -1 : i + from;
}

describeIf('fresh host (systemd-nspawn)', () => {
  beforeAll(async () => {
    host = await startFreshHost();
    console.log(`fresh host ${host.name} at ${host.address}: ${JSON.stringify(host.timings)}`);
  }, 900_000);
  afterAll(async () => {
    await host?.stop();
  });

  it('takes an ssh login with the pinned host key and refuses a wrong one', async () => {
    const opts = {
      host: host.address,
      port: host.port,
      username: host.user,
      privateKey: host.privateKey,
    };
    const conn = await connectSsh({ ...opts, fingerprints: [host.hostKeyFingerprint] });
    try {
      const r = await conn.run('id -un; hostname; systemd-detect-virt || true');
      expect(r.stdout.split('\n').slice(0, 1)).toEqual(['root']);
      expect(r.stdout).toMatch(/systemd-nspawn/);
    } finally {
      await conn.close();
    }
    const wrong = `SHA256:${'A'.repeat(43)}`;
    await expect(connectSsh({ ...opts, fingerprints: [wrong] })).rejects.toThrow(
      host.hostKeyFingerprint,
    );
  });

  it('boots systemd to running (or degraded)', async () => {
    const r = await host.exec('systemctl is-system-running --wait');
    expect(r.stdout.trim()).toMatch(/^(running|degraded)$/);
    expect((await sh('cat /proc/1/comm')).trim()).toBe('systemd');
  });

  it('installs ufw, fail2ban and zsh from the local repository with no network', async () => {
    expect(await sh('ip route')).not.toMatch(/^default/m);
    expect(await sh('cat /etc/apt/sources.list.d/*.list')).toBe(
      'deb [trusted=yes] file:/repo ./\n',
    );
    await sh(`${APT} update && ${APT} install -y ufw fail2ban zsh >/tmp/apt.log 2>&1`);
    expect(await sh('dpkg-query -W -f "\\${Status}\\n" ufw fail2ban zsh')).toBe(
      'install ok installed\n'.repeat(3),
    );
    await sh('ufw allow 22/tcp && ufw --force enable');
    expect(await sh('ufw status')).toMatch(/^Status: active/m);
    // ssh still answers on a new connection (22 was allowed).
    const conn = await connectSsh({
      host: host.address,
      port: host.port,
      username: host.user,
      privateKey: host.privateKey,
      fingerprints: [host.hostKeyFingerprint],
    });
    await conn.close();
  });

  it('tailscale stand-in: a NEW identity at install, the restored one after a restart', async () => {
    await sh(`${APT} install -y tailscale >/tmp/apt-ts.log 2>&1`);
    expect(
      (await sh('systemctl is-enabled tailscaled; systemctl is-active tailscaled')).split('\n'),
    ).toEqual(['enabled', 'active', '']);
    const fresh = (await sh('tailscale ip -4')).trim();
    expect(fresh).toMatch(/^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.\d+\.\d+$/);
    expect(fresh).not.toBe(SEED_TAILSCALE_IP);
    expect((await host.exec('tailscale status')).code).toBe(1); // NeedsLogin

    await sh('systemctl stop tailscaled');
    expect((await host.exec('tailscale ip -4')).code).toBe(1); // no daemon
    await sh(
      'cat > /var/lib/tailscale/tailscaled.state',
      JSON.stringify({ ip: SEED_TAILSCALE_IP }),
    );
    await sh('systemctl start tailscaled');
    expect((await sh('tailscale ip -4')).trim()).toBe(SEED_TAILSCALE_IP);
    expect((await host.exec('tailscale status')).code).toBe(0);

    // A state replaced while tailscaled runs counts only from its next start.
    await sh('cp /var/lib/tailscale/tailscaled.state /tmp/ts.state');
    await sh('cat > /var/lib/tailscale/tailscaled.state', '{"ip":"100.100.1.1"}');
    expect((await sh('tailscale ip -4')).trim()).toBe(SEED_TAILSCALE_IP);
    await sh('cp /tmp/ts.state /var/lib/tailscale/tailscaled.state');

    await sh('tailscale up --ssh=false --authkey=tskey-test');
    const status = JSON.parse(await sh('tailscale status --json')) as {
      BackendState: string;
      Self: { TailscaleIPs: string[] };
      RunSSH: boolean;
    };
    expect(status.BackendState).toBe('Running');
    expect(status.Self.TailscaleIPs).toEqual([SEED_TAILSCALE_IP]);
    expect(status.RunSSH).toBe(false);

    const log = await host.readLog('tailscale');
    const created = indexOfLine(
      log,
      new RegExp(`tailscaled started with NEW identity ${fresh}\\b`),
    );
    const stopped = indexOfLine(log, /tailscaled stopped$/, created);
    const restored = indexOfLine(
      log,
      new RegExp(
        `tailscaled started with restored identity ${SEED_TAILSCALE_IP.replace(/\./g, '\\.')}\\b`,
      ),
      stopped,
    );
    const up = indexOfLine(log, /tailscale up --ssh=false --authkey=tskey-test$/, restored);
    expect([created >= 0, stopped > created, restored > stopped, up > restored]).toEqual([
      true,
      true,
      true,
      true,
    ]);
  });

  it('docker stand-in: compose up -d runs both services and the ComfyUI endpoint', async () => {
    await sh(`${APT} install -y docker.io curl >/tmp/apt-docker.log 2>&1`);
    expect(await sh('getent group docker')).toMatch(/^docker:/);
    expect(await sh('docker --version')).toMatch(/^Docker version /);
    expect(await sh('docker compose version')).toMatch(/^Docker Compose version v2/);
    const compose = [
      'services:',
      '  comfyui:',
      '    image: ghcr.io/comfyume/worker:latest',
      '    ports:',
      '      - "8188:8188"',
      '    restart: unless-stopped',
      '  redis-proxy:',
      '    image: redis:7',
      'volumes:',
      '  models: {}',
      '',
    ].join('\n');
    await sh('mkdir -p /opt/comfyume && cat > /opt/comfyume/docker-compose.yml', compose);
    await sh('docker compose -f /opt/comfyume/docker-compose.yml up -d');
    expect((await sh("docker ps --format '{{.Names}}'")).split('\n').sort()).toEqual([
      '',
      'comfyume-comfyui-1',
      'comfyume-redis-proxy-1',
    ]);
    const stats = JSON.parse(await sh('curl -sf http://127.0.0.1:8188/system_stats')) as {
      system: { comfyui_version: string };
      devices: unknown[];
    };
    expect(stats.system.comfyui_version).toBe('standin');
    expect(stats.devices).toEqual([]);
    const { prompt_id: id } = JSON.parse(
      await sh(
        'curl -sf -X POST -H "Content-Type: application/json" --data-binary @- http://127.0.0.1:8188/prompt',
        JSON.stringify({ prompt: { '1': { class_type: 'Noop', inputs: {} } } }),
      ),
    ) as { prompt_id: string };
    const history = JSON.parse(await sh(`curl -sf http://127.0.0.1:8188/history/${id}`)) as Record<
      string,
      { status: { completed: boolean } }
    >;
    expect(history[id]?.status.completed).toBe(true);
    expect(await host.readLog('docker')).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/docker compose -f \/opt\/comfyume\/docker-compose.yml up -d$/),
        expect.stringMatching(/container comfyume-comfyui-1 started$/),
      ]),
    );
  });

  it('has two ext4 loop disks that mount inside', async () => {
    for (const [name, dev] of Object.entries(host.disks)) {
      expect(dev).toMatch(/^\/dev\/loop\d+$/);
      await sh(`mkdir -p /mnt/${name} && mount ${dev} /mnt/${name}`);
      expect((await sh(`findmnt -no FSTYPE /mnt/${name}`)).trim()).toBe('ext4');
      await sh(`echo ${name} > /mnt/${name}/marker && umount /mnt/${name}`);
    }
    // What was written is on the disk, not in the container's overlay.
    await sh(
      `mount ${host.disks.models} /mnt/models && cat /mnt/models/marker && umount /mnt/models`,
    );
  });

  it('reaches a service bound on outerAddress (a Redis "VPS")', async () => {
    if (!existsSync('/usr/bin/redis-server')) {
      console.log('redis-server not installed: skipping the VPS check');
      return;
    }
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, host.outerAddress, () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const redis = spawn(
      '/usr/bin/redis-server',
      // Without a password Redis answers non-loopback clients only with DENIED (protected mode).
      [
        '--bind',
        host.outerAddress,
        '--port',
        String(port),
        '--requirepass',
        'vps-secret',
        '--save',
        '',
        '--appendonly',
        'no',
      ],
      { stdio: 'ignore' },
    );
    try {
      await sh(`${APT} install -y redis-tools >/tmp/apt-redis.log 2>&1`);
      let pong = '';
      for (let i = 0; i < 50 && pong !== 'PONG'; i++) {
        pong = (
          await host.exec(
            `REDISCLI_AUTH=vps-secret redis-cli -h ${host.outerAddress} -p ${port} ping`,
          )
        ).stdout.trim();
        if (pong !== 'PONG') await new Promise((r) => setTimeout(r, 100));
      }
      expect(pong).toBe('PONG');
    } finally {
      redis.kill('SIGKILL');
    }
  });

  it('comes back from systemctl reboot with its state', async () => {
    const bootId = (await sh('cat /proc/sys/kernel/random/boot_id')).trim();
    expect(host.boots()).toBe(1);
    await host.reboot();
    expect(host.boots()).toBe(2);
    expect((await sh('cat /proc/sys/kernel/random/boot_id')).trim()).not.toBe(bootId);
    const state = await host.exec('systemctl is-system-running --wait');
    expect(state.stdout.trim()).toMatch(/^(running|degraded)$/);
    expect(await sh('ufw status')).toMatch(/^Status: active/m);
    expect((await sh('tailscale ip -4')).trim()).toBe(SEED_TAILSCALE_IP);
    expect((await sh("docker ps --format '{{.Names}}'")).trim().split('\n')).toHaveLength(2);
    expect(await sh('curl -sf http://127.0.0.1:8188/system_stats')).toMatch(/standin/);
  });

  it('stop() leaves no process, mount, loop device, netns, veth or directory', async () => {
    const { name, rootDir, disks } = host;
    const x = name.replace(/^cfyfh-/, '');
    await host.stop();
    expect(readdirSync('/run/netns').filter((n) => n === name)).toEqual([]);
    expect(existsSync(`/sys/class/net/cfyfo-${x}`)).toBe(false);
    expect(readFileSync('/proc/self/mounts', 'utf8')).not.toContain(rootDir);
    const loops = spawnSync('losetup', ['-a'], { encoding: 'utf8' }).stdout;
    for (const dev of Object.values(disks)) expect(loops).not.toMatch(new RegExp(`^${dev}:`, 'm'));
    expect(loops).not.toContain(rootDir.replace(/\/root$/, ''));
    const procs = readdirSync('/proc').filter((p) => {
      if (!/^\d+$/.test(p)) return false;
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(rootDir);
      } catch {
        return false;
      }
    });
    expect(procs).toEqual([]);
    expect(existsSync(rootDir.replace(/\/root$/, ''))).toBe(false);
  });
});
