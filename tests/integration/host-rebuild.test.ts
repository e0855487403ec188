// Phase 11 for real: the fixture GPU host is backed up (the backup-verda bundle, R2 emulator),
// then a FRESH Debian 12 root booted with systemd (src/sandbox/fresh-host.ts: systemd-nspawn, its
// own sshd, network namespace, two ext4 disks, a local apt repository with tailscale and docker
// stand-ins) is rebuilt by that backup's RESTORE.sh, and the verify-host bundle checks it. A
// second RESTORE.sh run changes nothing; breaking the host makes verify-host name what broke.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Manifest } from '../../src/backup/manifest.js';
import { fingerprintSha256 } from '../../src/lib/ssh.js';
import { startFreshHost, type FreshHost } from '../../src/sandbox/fresh-host.js';
import { FIXTURE_TAILSCALE_IP, TEST_USER } from '../../src/sandbox/ssh-host.js';
import { runAction } from '../helpers/run-action.js';
import { startBackupWorld, type BackupWorld } from './backup-setup.js';
import {
  OHMYZSH_REPO,
  installOhMyZsh,
  rebuildSupport,
  startRedisStandin,
  writeRebuildConfig,
} from './rebuild-setup.js';
import { MiB, startSyncWorld, type SyncWorld } from './sync-models-setup.js';

const maybe = rebuildSupport('host rebuild') ? describe : describe.skip;

const STEP_LINE = /^STEP\t(\w+)\t(\d+)\t(\d+)$/gm;

maybe('RESTORE.sh rebuilds a fresh booted host; verify-host proves it', () => {
  let world: BackupWorld;
  let vault: SyncWorld;
  let fresh: FreshHost;
  let redis: ChildProcess;
  let manifest: Manifest;
  let dir: string;
  let restoredFingerprint: string;
  let firstRun: string;
  let dryRun: string;
  let untouched: { stdout: string; stderr: string; code: number };
  let uidTaken: number;
  const restoreArgs = () =>
    [
      'bash /root/restore/RESTORE.sh --signers /root/restore/signers --identity /root/restore/identity',
      `--from /root/restore/backup --ohmyzsh-repo ${OHMYZSH_REPO}`,
      `--models-mount '${fresh.disks.models} ext4' --scratch-mount '${fresh.disks.scratch} ext4'`,
    ].join(' ');

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'host-rebuild-'));
    [world, fresh, vault] = await Promise.all([
      startBackupWorld(),
      startFreshHost(),
      startSyncWorld(),
    ]);
    redis = startRedisStandin(fresh);
    // The host the rebuild aims at: the fixture's user, paths and services.
    const config = writeRebuildConfig(world, fresh);
    const backup = await world.run({ config });
    expect(backup.code).toBe(0);
    manifest = JSON.parse(
      (await world.get(backup.outputs['manifest-key'] ?? '')).toString('utf8'),
    ) as Manifest;
    uidTaken = manifest.facts.user?.uid ?? -1;

    // What the admin copies to the fresh host: the backup, the signers, the identity.
    const files: [string, Buffer][] = [
      ['RESTORE.sh', await world.get(manifest.restoreScript.key)],
      ['signers', readFileSync(world.signing.signersFile)],
      ['identity', readFileSync(world.identityFile)],
      ['backup/manifest.json', await world.get(backup.outputs['manifest-key'] ?? '')],
      ['backup/manifest.json.sig', await world.get(`${backup.outputs['manifest-key']}.sig`)],
      ...(await Promise.all(
        manifest.items.map(async (i) => [`backup/${path.basename(i.key)}`, await world.get(i.key)]),
      )),
    ] as [string, Buffer][];
    for (const [name, data] of files) {
      const put = await fresh.exec(
        `mkdir -p "$(dirname /root/restore/${name})" && base64 -d > /root/restore/${name}`,
        { input: data.toString('base64') },
      );
      expect(put.code).toBe(0);
    }
    // oh-my-zsh from a local git repository (the host has no network).
    await installOhMyZsh(fresh);
    // The dev user's backed-up uid is taken on this fresh host: files must follow by name.
    const squat = await fresh.exec(`useradd -M -u ${uidTaken} squatter`);
    expect(squat.code).toBe(0);

    const pub = readFileSync(
      path.join(world.host.hostRoot, 'etc/ssh/ssh_host_ed25519_key.pub'),
      'utf8',
    );
    restoredFingerprint = fingerprintSha256(Buffer.from(pub.split(' ')[1] ?? '', 'base64'));

    // An image that already has zsh (Ubuntu's often do), but not the dev user.
    const zsh = await fresh.exec(
      'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zsh >/dev/null',
      { timeoutMs: 300_000 },
    );
    expect(zsh.code).toBe(0);
    // --dry-run first: it says what every step would change and changes nothing.
    const dry = await fresh.exec(`${restoreArgs()} --dry-run`, { timeoutMs: 300_000 });
    dryRun = dry.stdout + dry.stderr;
    console.log(`RESTORE.sh --dry-run on the fresh host:\n${dryRun}`);
    expect(dry.code).toBe(0);
    untouched = await fresh.exec(
      [
        `for p in ufw fail2ban tailscale age; do echo "$(dpkg-query -W -f '\${db:Status-Status}' $p 2>/dev/null) $p"; done`,
        `getent passwd ${TEST_USER}; grep -c /mnt /etc/fstab; ls /var/lib/tailscale 2>&1; ls /mnt`,
      ].join('; '),
    );
    const run = await fresh.exec(restoreArgs(), { timeoutMs: 600_000 });
    firstRun = run.stdout + run.stderr;
    console.log(`RESTORE.sh, first run:\n${firstRun}`);
    expect(run.code).toBe(0);
    // sshd now serves the backed-up host keys: from here on the pin is the backup's own.
    fresh.repin(restoredFingerprint);
  }, 900_000);

  afterAll(async () => {
    redis?.kill();
    await fresh?.stop();
    await world?.stop();
    await vault?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs every step in order, timed, and verifies the host', () => {
    const steps = [...firstRun.matchAll(STEP_LINE)].map((m) => m[1]);
    expect(steps).toEqual([
      'preflight',
      'packages',
      'tailscale',
      'security',
      'user',
      'project',
      'storage',
      'models',
      'services',
      'verify',
    ]);
    // The distribution's packages first, then the vendor's (tailscale): curl is there for it.
    expect(firstRun).toMatch(
      /changed: install fail2ban ufw .*curl.*docker\.io\n\s+changed: install tailscale\n/,
    );
    expect(firstRun).toMatch(/ok +ufw +active; deny incoming; SSH and Tailscale allowed/);
    expect(firstRun).not.toMatch(/FAIL /);
  });

  it('--dry-run says what each step would change and changes nothing', () => {
    expect(dryRun).toMatch(/would: install fail2ban ufw/);
    expect(dryRun).toMatch(
      /would: the rest of this step, once the packages step installed tailscale/,
    );
    expect(dryRun).toMatch(/RESTORE\.sh: done, [1-9]\d* change\(s\) that would be made in /);
    // The user step goes on without the user it would create.
    expect(dryRun).toContain(`would: create user ${TEST_USER}`);
    expect(dryRun).toMatch(new RegExp(`would: login shell of ${TEST_USER}: none -> /usr/bin/zsh`));
    expect(dryRun).not.toMatch(/changed:/);
    // No package, no user, no fstab line, no identity, no mount point.
    expect(untouched.stdout).toMatch(/ ufw\n/);
    expect(untouched.stdout).not.toMatch(/^installed /m);
    expect(untouched.stdout).not.toContain(`${TEST_USER}:`);
    expect(untouched.stdout).toMatch(/^0$/m);
    expect(untouched.stdout).toMatch(/cannot access '\/var\/lib\/tailscale'/);
    expect(untouched.stdout).not.toMatch(/models|scratch/);
  });

  it('brings the backed-up Tailscale identity up only after stopping the new one', async () => {
    const log = await fresh.readLog('tailscale');
    const at = (re: RegExp) => log.findIndex((l) => re.test(l));
    const created = at(/tailscaled started with NEW identity/);
    const stopped = at(/tailscaled stopped/);
    const restored = at(new RegExp(`started with restored identity ${FIXTURE_TAILSCALE_IP}`));
    const up = at(/tailscale up --ssh=false/);
    console.log(`tailscale calls:\n${log.join('\n')}`);
    expect(created).toBeGreaterThanOrEqual(0);
    expect([stopped > created, restored > stopped, up > restored]).toEqual([true, true, true]);
    const ip = await fresh.exec('tailscale ip -4');
    expect(ip.stdout.trim()).toBe(FIXTURE_TAILSCALE_IP);
  });

  it('gives the dev user its files by name when its uid is taken, with zsh', async () => {
    const who = await fresh.exec(
      `id -u ${TEST_USER}; stat -c '%U %a' /home/dev/.zshrc /home/dev/comfy-multi/.env; getent passwd ${TEST_USER} | cut -d: -f7`,
    );
    const [uid, zshrc, env, shell] = who.stdout.trim().split('\n');
    expect(Number(uid)).not.toBe(uidTaken);
    expect(zshrc).toBe(`${TEST_USER} 644`);
    expect(env).toBe(`${TEST_USER} 600`);
    expect(shell).toMatch(/\/zsh$/);
  });

  it('models: the vault is pulled onto the models mount over SSH, sha256-checked, through the project link', async () => {
    const tree = await vault.makeTree('vault', {
      'checkpoints/ltx.safetensors': 3 * MiB + 7,
      'loras/dolly.safetensors': 200 * 1024,
    });
    expect((await vault.run({ source: tree.root })).outputs.uploaded).toBe('2');
    const pull = await vault.run(
      {
        direction: 'pull',
        target: `ssh://root@${fresh.address}:22/home/dev/comfy-multi/data/models`,
        'ssh-private-key': fresh.privateKey,
        'host-key-fingerprints': restoredFingerprint,
      },
      [fresh.privateKey],
    );
    expect(pull.errors).toEqual([]);
    expect(pull.outputs.downloaded).toBe('2');
    const sums = await fresh.exec('cd /mnt/models && sha256sum checkpoints/* loras/*');
    expect(sums.stdout.trim().split('\n').sort()).toEqual(
      Object.entries(tree.sha)
        .map(([rel, sha]) => `${sha}  ${rel}`)
        .sort(),
    );
  }, 120_000);

  it('a second run changes nothing and installs nothing', async () => {
    const run = await fresh.exec(restoreArgs(), { timeoutMs: 600_000 });
    const out = run.stdout + run.stderr;
    console.log(`RESTORE.sh, second run:\n${out}`);
    expect(run.code).toBe(0);
    expect(out).toMatch(/RESTORE\.sh: done, 0 change\(s\) in /);
    expect(out).not.toMatch(/changed:/);
    expect(out).toMatch(/all \d+ packages installed/);
    expect(out).toContain('2 model file(s) on /mnt/models');
  }, 600_000);

  const verify = () =>
    runAction('verify-host', {
      inputs: {
        host: fresh.address,
        user: 'root',
        'ssh-private-key': fresh.privateKey,
        'host-key-fingerprints': restoredFingerprint,
        config: path.resolve('config/verify.yml'),
        'backup-config': path.join(world.dir, 'rebuild.yml'),
      },
      secrets: [fresh.privateKey],
      timeoutMs: 120_000,
    });

  it('verify-host: every required check passes, with the restored host key pinned', async () => {
    const run = await verify();
    console.log(run.summary);
    expect(run.code).toBe(0);
    expect(run.outputs.passed).toBe('true');
    expect(run.outputs.failed).toBe('');
    expect(run.summary).toMatch(
      /\| ✓ \| Tailscale IP as backed up \(tailscale-ip\) \| 100\.89\.38\.43 \| 100\.89\.38\.43 \|/,
    );
    expect((run.summary.match(/\| ✓ \|/g) ?? []).length).toBe(12);
    expect(run.summary).toMatch(
      /\| ✓ \| A test workflow runs .*\| prompt [0-9a-f-]+ succeeded after/,
    );
  });

  it('verify-host names what broke: ufw disabled, shell changed, scratch unmounted, the project stopped', async () => {
    const broke = await fresh.exec(
      `ufw disable && chsh -s /bin/bash ${TEST_USER} && umount /mnt/scratch && docker compose --project-directory /home/dev/comfy-multi down`,
    );
    expect(broke.code).toBe(0);
    const run = await verify();
    expect(run.code).not.toBe(0);
    expect(run.outputs.passed).toBe('false');
    // The links into scratch dangle once it is unmounted: that is named too.
    expect(run.outputs.failed).toBe('ufw,shell,mounts,links,comfyui');
    // Optional checks fail as warnings, never as the reason.
    expect(run.outputs.warnings).toBe('containers,test-workflow');
    expect(run.errors.join('\n')).toMatch(/5 required check\(s\) failed .*ufw: inactive/);
    expect(run.summary).toMatch(
      /\| ✗ \| .*\(shell\) \| comfyume-test: zsh \| comfyume-test: \/bin\/bash \|/,
    );
    expect(run.summary).toMatch(/\| ⚠ \| A test workflow runs .*\| POST \/prompt refused/);
  });
});
