// "The GPU host died", end to end through the bundles, as rebuild-host.yml runs them: the Verda
// emulator's instance API with a real boot hook (an instance that reaches `running` is a fresh
// Debian 12 booted with systemd), provision-host create (volumes, instance, the bootstrap host key
// pinned), restore-host (the last backup's RESTORE.sh over SSH), the model vault pulled, and
// verify-host pinned to the backup's own host key. Prints the recovery time per phase.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { newEd25519KeyPair } from '../../src/lib/ssh.js';
import type { FreshHost } from '../../src/sandbox/fresh-host.js';
import { freshHostBooter } from '../../src/sandbox/verda-instance-boot.js';
import { startVerdaEmulator, type VerdaEmulator } from '../../src/sandbox/verda.js';
import { BUCKET, PREFIX, startBackupWorld, type BackupWorld } from './backup-setup.js';
import {
  OHMYZSH_REPO,
  installOhMyZsh,
  rebuildSupport,
  startRedisStandin,
  writeRebuildConfig,
} from './rebuild-setup.js';
import { MiB, startSyncWorld, type SyncWorld } from './sync-models-setup.js';
import { repoRoot, runAction, type ActionRun } from '../helpers/run-action.js';

const maybe = rebuildSupport('rebuild-host.test.ts') ? describe : describe.skip;

maybe('the GPU host died: provision, restore, verify, through the bundles', () => {
  const booter = freshHostBooter();
  let emu: VerdaEmulator;
  let world: BackupWorld;
  let vault: SyncWorld;
  let redis: ChildProcess | undefined;
  let dir: string;
  let hostConfig: string;
  const runner = newEd25519KeyPair('runner');
  const phases: [string, number][] = [];
  let created: ActionRun;
  let restored: ActionRun;
  let fresh: FreshHost;

  const provision = (inputs: Record<string, string>) =>
    runAction('provision-host', {
      inputs: {
        config: hostConfig,
        'api-url': emu.apiUrl,
        'verda-client-id': emu.clientId,
        'verda-client-secret': emu.clientSecret,
        'poll-interval': '200ms',
        'wait-timeout': '180s',
        ...inputs,
      },
      secrets: [emu.clientSecret, runner.private],
      timeoutMs: 300_000,
    });

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rebuild-host-'));
    [world, vault, emu] = await Promise.all([
      startBackupWorld(),
      startSyncWorld(),
      // 20x emulated time: the contract's ordered and provisioning delays pass in about a
      // second; the boot itself takes what it takes.
      startVerdaEmulator({ timeScale: 20, instances: { bootHost: booter.bootHost } }),
    ]);
    hostConfig = path.join(dir, 'host.yml');
    writeFileSync(hostConfig, readFileSync(path.join(repoRoot, 'config/host.yml'), 'utf8'));
    const res = await fetch(`${emu.apiUrl}/sshkeys`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${await emu.token()}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'comfyume-ops', key: runner.public }),
    });
    expect(res.ok).toBe(true);
  }, 300_000);

  afterAll(async () => {
    redis?.kill();
    await emu?.stop();
    await Promise.all([world?.stop(), vault?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('provision-host create: a running instance that answers SSH with the bootstrap host key', async () => {
    created = await provision({ command: 'create', 'ssh-private-key': runner.private });
    expect(created.errors).toEqual([]);
    expect(created.outputs.status).toBe('running');
    const booted = booter.bootedHosts();
    expect(booted).toHaveLength(1);
    fresh = booted[0]!.host;
    expect(created.outputs.ip).toBe(fresh.address);
    // The image's own host key is gone; the one served is the bootstrap key create pinned.
    const served = await fresh.exec('ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub');
    expect(served.stdout).toContain(created.outputs['bootstrap-host-key-fingerprint']);
    const others = await fresh.exec('ls /etc/ssh/ | grep -c "^ssh_host_.*_key$" || true');
    expect(others.stdout.trim()).toBe('1');
    expect(emu.scripts()).toEqual([]);
    phases.push(['provision (POST to running)', Number(created.outputs['provision-seconds'])]);
    phases.push(['SSH with the bootstrap key', Number(created.outputs['ssh-seconds'])]);
  }, 300_000);

  it('restore-host: the last backup rebuilt onto it over SSH, the first connection pinned to the bootstrap key', async () => {
    // The last nightly backup of the host that died. (Made now only because the fixture's VPS
    // Redis must be reachable from the new instance's network, known once it exists.)
    redis = startRedisStandin(fresh);
    const config = writeRebuildConfig(world, fresh);
    const backup = await world.run({ config });
    expect(backup.code).toBe(0);
    await installOhMyZsh(fresh);

    restored = await runAction('restore-host', {
      inputs: {
        bucket: BUCKET,
        prefix: PREFIX,
        'r2-endpoint': world.r2.endpoint,
        'r2-access-key-id': world.r2.accessKeyId,
        'r2-secret-access-key': world.r2.secretAccessKey,
        'age-identity': readFileSync(world.identityFile, 'utf8'),
        signers: world.signing.signersFile,
        host: created.outputs.ip ?? '',
        user: 'root',
        'ssh-private-key': runner.private,
        'host-key-fingerprints': created.outputs['bootstrap-host-key-fingerprint'] ?? '',
        'models-mount': `${fresh.disks.models} ext4`,
        'scratch-mount': `${fresh.disks.scratch} ext4`,
        'ohmyzsh-repo': OHMYZSH_REPO,
      },
      secrets: [...world.secrets, runner.private],
      timeoutMs: 600_000,
    });
    expect(restored.errors).toEqual([]);
    expect(Number(restored.outputs.changes)).toBeGreaterThan(20);
    // From now on the pin is the backup's own host key: the bootstrap key is gone.
    const pins = (restored.outputs['restored-host-key-fingerprints'] ?? '').split(',');
    expect(pins).not.toContain(created.outputs['bootstrap-host-key-fingerprint']);
    expect(pins.length).toBeGreaterThan(0);
    fresh.repin(pins[0] ?? '');
    const ip = await fresh.exec('tailscale ip -4');
    expect(ip.stdout.trim()).toBe('100.89.38.43');
    phases.push(['restore (RESTORE.sh)', Number(restored.outputs['restore-seconds'])]);
  }, 600_000);

  it('models: the vault pulled onto the models mount, pinned to the restored key', async () => {
    const tree = await vault.makeTree('vault', {
      'checkpoints/ltx.safetensors': 3 * MiB + 7,
      'loras/dolly.safetensors': 200 * 1024,
    });
    expect((await vault.run({ source: tree.root })).outputs.uploaded).toBe('2');
    const started = Date.now();
    const pull = await vault.run(
      {
        direction: 'pull',
        target: `ssh://root@${created.outputs.ip}:22/home/dev/comfy-multi/data/models`,
        'ssh-private-key': runner.private,
        'host-key-fingerprints': restored.outputs['restored-host-key-fingerprints'] ?? '',
      },
      [runner.private],
    );
    expect(pull.errors).toEqual([]);
    expect(pull.outputs.downloaded).toBe('2');
    phases.push(['models (sync-models pull)', (Date.now() - started) / 1000]);
  }, 120_000);

  it('verify-host: every required check passes with the backup host key pinned', async () => {
    const started = Date.now();
    const run = await runAction('verify-host', {
      inputs: {
        host: created.outputs.ip ?? '',
        user: 'root',
        'ssh-private-key': runner.private,
        'host-key-fingerprints': restored.outputs['restored-host-key-fingerprints'] ?? '',
        config: path.resolve('config/verify.yml'),
        'backup-config': path.join(world.dir, 'rebuild.yml'),
      },
      secrets: [runner.private],
      timeoutMs: 120_000,
    });
    expect(run.errors).toEqual([]);
    expect(run.outputs.passed).toBe('true');
    phases.push(['verify (checklist)', (Date.now() - started) / 1000]);
    const total = phases.reduce((sum, [, s]) => sum + s, 0);
    console.log(
      [
        'Recovery time of the sandboxed rebuild, per phase (s):',
        ...phases.map(([p, s]) => `  ${p.padEnd(30)} ${s.toFixed(1)}`),
        `  ${'total'.padEnd(30)} ${total.toFixed(1)}`,
      ].join('\n'),
    );
  }, 180_000);

  it('delete keeps the volumes and stops the booted host', async () => {
    const run = await provision({ command: 'delete', confirm: 'comfyume-gpu-test' });
    expect(run.errors).toEqual([]);
    expect(booter.bootedHosts()).toEqual([]);
    const kept = emu.volumes().filter((v) => !v.isOsVolume && v.status !== 'deleted');
    expect(kept.map((v) => v.name).sort()).toEqual(['Model Vault', 'Scratch Disk']);
  }, 120_000);
});
