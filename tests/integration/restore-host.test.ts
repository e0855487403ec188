// The restore-host bundle against a FRESH Debian 12 booted with systemd (src/sandbox/fresh-host.ts),
// as host-rebuild.test.ts does by hand: the fixture GPU host is backed up into the R2 emulator,
// then the action selects that backup, verifies it, streams it over SSH into the host's work
// directory, runs RESTORE.sh and removes the identity. Before that: a wrong pin and a tampered
// archive are refused with nothing left on the host; after it: a second run changes nothing, and
// a failing step is named with nothing left behind.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { Manifest } from '../../src/backup/manifest.js';
import { RESTORE_STEPS } from '../../src/backup/restore-steps.js';
import { fingerprintSha256 } from '../../src/lib/ssh.js';
import { startFreshHost, type FreshHost } from '../../src/sandbox/fresh-host.js';
import { FIXTURE_TAILSCALE_IP, TEST_USER } from '../../src/sandbox/ssh-host.js';
import { runAction, type ActionRun } from '../helpers/run-action.js';
import { BUCKET, PREFIX, sha256, startBackupWorld, type BackupWorld } from './backup-setup.js';
import {
  OHMYZSH_REPO,
  installOhMyZsh,
  rebuildSupport,
  startRedisStandin,
  writeRebuildConfig,
} from './rebuild-setup.js';

const maybe = rebuildSupport('restore-host') ? describe : describe.skip;

const WORK_DIR = '/root/comfyume-restore';
/** Exit code 0 when nothing of a run is left on the host. */
const NOTHING_LEFT = `test ! -e ${WORK_DIR}/identity && test ! -e ${WORK_DIR}`;

/**
 * A python3 program (fail2ban brings python3) run on the host: once the identity is there and
 * RESTORE.sh waits on its Redis ping (`timeout 10 redis-cli ...`, in the services step), kills the
 * sshd process that RESTORE.sh's wrapper (`bash -c SCRIPT restore-host WORK_DIR 0 identity ...`)
 * hangs off, by pid, and prints that pid.
 */
const KILL_SESSION = `'${[
  'import os, sys',
  'work = sys.argv[1].encode()',
  'if not os.path.exists(work + b"/identity"): sys.exit(0)',
  'procs = {}',
  'for p in filter(str.isdigit, os.listdir("/proc")):',
  '    try: procs[p] = open("/proc/%s/cmdline" % p, "rb").read().split(b"\\0")',
  '    except OSError: pass',
  'if not any(a[:3] == [b"timeout", b"10", b"redis-cli"] for a in procs.values()): sys.exit(0)',
  'for p, a in procs.items():',
  '    if a[:2] == [b"bash", b"-c"] and a[3:7] == [b"restore-host", work, b"0", b"identity"]:',
  '        ppid = int(open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()[1])',
  '        os.kill(ppid, 9); print(ppid); break',
].join('\n')}'`;

/** The pids of RESTORE.sh wrappers still running for WORK_DIR (python3, like KILL_SESSION). */
const LIST_WRAPPERS = `'${[
  'import os, sys',
  'work = sys.argv[1].encode()',
  'for p in filter(str.isdigit, os.listdir("/proc")):',
  '    try: a = open("/proc/%s/cmdline" % p, "rb").read().split(b"\\0")',
  '    except OSError: continue',
  '    if a[:2] == [b"bash", b"-c"] and a[3:5] == [b"restore-host", work]: print(p)',
].join('\n')}'`;

maybe('restore-host restores a backup onto a fresh booted host', () => {
  let world: BackupWorld;
  let fresh: FreshHost;
  let redis: ChildProcess;
  let manifest: Manifest;
  let dir: string;
  let restoredFingerprint: string;
  let first: ActionRun;

  const restore = (inputs: Record<string, string> = {}) =>
    runAction('restore-host', {
      inputs: {
        bucket: BUCKET,
        prefix: PREFIX,
        'r2-endpoint': world.r2.endpoint,
        'r2-access-key-id': world.r2.accessKeyId,
        'r2-secret-access-key': world.r2.secretAccessKey,
        'r2-timeout': '20s',
        'age-identity': readFileSync(world.identityFile, 'utf8'),
        signers: world.signing.signersFile,
        host: fresh.address,
        port: String(fresh.port),
        user: 'root',
        'ssh-private-key': fresh.privateKey,
        'host-key-fingerprints': fresh.hostKeyFingerprint,
        'models-mount': `${fresh.disks.models} ext4`,
        'scratch-mount': `${fresh.disks.scratch} ext4`,
        'ohmyzsh-repo': OHMYZSH_REPO,
        ...inputs,
      },
      secrets: [...world.secrets, fresh.privateKey],
      timeoutMs: 600_000,
    });

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'restore-host-'));
    [world, fresh] = await Promise.all([startBackupWorld(), startFreshHost()]);
    redis = startRedisStandin(fresh);
    const backup = await world.run({ config: writeRebuildConfig(world, fresh) });
    expect(backup.code).toBe(0);
    manifest = JSON.parse(
      (await world.get(backup.outputs['manifest-key'] ?? '')).toString('utf8'),
    ) as Manifest;
    await installOhMyZsh(fresh);
    const pub = readFileSync(
      path.join(world.host.hostRoot, 'etc/ssh/ssh_host_ed25519_key.pub'),
      'utf8',
    );
    restoredFingerprint = fingerprintSha256(Buffer.from(pub.split(' ')[1] ?? '', 'base64'));
  }, 300_000);

  afterAll(async () => {
    redis?.kill();
    await fresh?.stop();
    await world?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a wrong host key pin is refused before anything is written on the host', async () => {
    const run = await restore({ 'host-key-fingerprints': world.host.hostKeyFingerprint });
    expect(run.code).not.toBe(0);
    expect(run.errors.join('\n')).toContain(
      `the server presented ${fresh.hostKeyFingerprint}, expected ${world.host.hostKeyFingerprint}`,
    );
    expect(run.outputs).toEqual({});
    expect((await fresh.exec(`test ! -e ${WORK_DIR}`)).code).toBe(0);
  });

  it('a tampered archive fails before RESTORE.sh runs anything and leaves no identity', async () => {
    // The last item: every other object is on the host by then, and must go too.
    const item = manifest.items[manifest.items.length - 1]!;
    const original = await world.get(item.key);
    const tampered = Buffer.from(original);
    const at = tampered.length >> 1;
    tampered[at] = (tampered[at] ?? 0) ^ 0x01;
    const put = (body: Buffer) =>
      world.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: item.key, Body: body }));
    await put(tampered);
    let run: ActionRun;
    try {
      run = await restore();
    } finally {
      await put(original);
    }
    expect(sha256(await world.get(item.key))).toBe(item.sha256);
    expect(run.code).not.toBe(0);
    expect(run.errors.join('\n')).toMatch(
      new RegExp(
        `${item.id} \\(${item.key}\\) does not match the signed manifest: sha256 ${sha256(tampered)}, recorded ${item.sha256}`,
      ),
    );
    // RESTORE.sh never started: no step header in the log, nothing installed, nothing left.
    expect(run.stdout).not.toMatch(/^== preflight/m);
    expect(run.stdout).toMatch(/Remove the identity from/);
    const host = await fresh.exec(
      `${NOTHING_LEFT} && test ! -e /var/log/comfyume-restore-apt.log && ! dpkg-query -W -f '\${db:Status-Status}' ufw 2>/dev/null | grep -qx installed`,
    );
    expect(host).toMatchObject({ code: 0 });
  });

  it('restores the backup: every step, changes, the backed-up Tailscale IP, nothing left behind', async () => {
    first = await restore();
    console.log(first.summary);
    expect(first.errors).toEqual([]);
    expect(first.code).toBe(0);
    expect(first.outputs['backup-id']).toBe(manifest.backupId);
    expect(Number(first.outputs.changes)).toBeGreaterThan(0);
    const steps = JSON.parse(first.outputs.steps ?? '[]') as {
      step: string;
      changes: number;
      seconds: number;
    }[];
    expect(steps.map((s) => s.step)).toEqual([...RESTORE_STEPS]);
    expect(steps.reduce((n, s) => n + s.changes, 0)).toBe(Number(first.outputs.changes));
    expect(Number(first.outputs['restore-seconds'])).toBeGreaterThan(0);
    // RESTORE.sh's output reached the log line by line, in order.
    expect(first.stdout).toMatch(/^== preflight: [\s\S]*^== verify: [\s\S]*^RESTORE\.sh: done, /m);
    expect(first.summary).toMatch(/\| security \| [1-9]\d* \| \d+\.\d \|/);
    expect(first.summary).toMatch(
      new RegExp(`\\| \\*\\*total\\*\\* \\| \\*\\*${first.outputs.changes}\\*\\* \\|`),
    );
    // The host now serves the backup's host keys: the output is the new pin.
    const pins = (first.outputs['restored-host-key-fingerprints'] ?? '').split(',');
    expect(pins).toContain(restoredFingerprint);
    expect(pins).not.toContain(fresh.hostKeyFingerprint);
    fresh.repin(restoredFingerprint);
    const ip = await fresh.exec('tailscale ip -4');
    expect(ip.stdout.trim()).toBe(FIXTURE_TAILSCALE_IP);
    const user = await fresh.exec(`getent passwd ${TEST_USER} | cut -d: -f7`);
    expect(user.stdout.trim()).toMatch(/\/zsh$/);
    expect(await fresh.exec(NOTHING_LEFT)).toMatchObject({ code: 0 });
  }, 600_000);

  it('a second run, pinned to the restored host keys, changes nothing; a read cut mid-way is sent again', async () => {
    // The largest archive's download is cut half-way once: it is sent again from its start.
    const largest = [...manifest.items].sort((a, b) => b.storedBytes - a.storedBytes)[0]!;
    world.r2.addFault({
      operation: 'GetObject',
      keyPattern: new RegExp(`${largest.key}$`),
      action: 'reset',
    });
    const run = await restore({
      'host-key-fingerprints': first.outputs['restored-host-key-fingerprints'] ?? '',
    });
    world.r2.clearFaults();
    expect(run.errors).toEqual([]);
    expect(run.stdout).toMatch(
      new RegExp(`${largest.id}: copy attempt 1 failed \\(.*\\); sending it again`),
    );
    expect(run.stdout).toContain(
      `${largest.id}: ${largest.storedBytes} bytes copied, sha256 matches the manifest`,
    );
    expect(run.outputs.changes).toBe('0');
    expect(run.stdout).toMatch(/^RESTORE\.sh: done, 0 change\(s\) in /m);
    expect(await fresh.exec(NOTHING_LEFT)).toMatchObject({ code: 0 });
  }, 600_000);

  it('a connection that drops while RESTORE.sh runs fails the run; the identity and the backup still go', async () => {
    // The VPS Redis stops answering: the services step waits on its ping (up to 10 s), a window
    // in which the SSH session running RESTORE.sh is killed on the host (its sshd process).
    redis.kill('SIGSTOP');
    let killed = '';
    let run: ActionRun;
    try {
      const running = restore({ 'host-key-fingerprints': restoredFingerprint });
      for (let i = 0; i < 600 && !killed; i++) {
        killed = (await fresh.exec(`python3 -c ${KILL_SESSION} ${WORK_DIR}`)).stdout.trim();
        if (!killed) await new Promise((r) => setTimeout(r, 100));
      }
      run = await running;
    } finally {
      redis.kill('SIGCONT');
    }
    expect(killed).toMatch(/^\d+$/);
    expect(run.code).not.toBe(0);
    expect(run.errors.join('\n')).toMatch(
      /^RESTORE\.sh did not finish \(in step services\): remote command failed: connection to \S+ closed before it exited; its last lines:\n[\s\S]*== services: /,
    );
    console.log(`dropped connection: ${run.errors.join('\n')}`);
    expect(run.stdout).toContain(`removed the identity and ${WORK_DIR} from the host`);
    expect(await fresh.exec(NOTHING_LEFT)).toMatchObject({ code: 0 });
    // RESTORE.sh, cut off from its output, ends too (SIGPIPE at its next line), then its trap.
    let lingering = 'x';
    for (let i = 0; i < 300 && lingering !== ''; i++) {
      lingering = (await fresh.exec(`python3 -c ${LIST_WRAPPERS} ${WORK_DIR}`)).stdout.trim();
      if (lingering) await new Promise((r) => setTimeout(r, 200));
    }
    expect(lingering).toBe('');
    expect(await fresh.exec(NOTHING_LEFT)).toMatchObject({ code: 0 });
  }, 300_000);

  it('a failing step fails the run naming it with its last lines; the identity goes, the kept backup stays', async () => {
    // A non-empty real directory where the storage step wants its link.
    const outputs = '/home/dev/comfy-multi/data/outputs';
    const broke = await fresh.exec(
      `rm ${outputs} && mkdir ${outputs} && touch ${outputs}/render.mp4`,
    );
    expect(broke.code).toBe(0);
    const run = await restore({
      'host-key-fingerprints': restoredFingerprint,
      'only-steps': 'storage',
      'keep-backup': 'true',
    });
    expect(run.code).not.toBe(0);
    expect(run.outputs).toEqual({});
    const error = run.errors.join('\n');
    expect(error).toMatch(/RESTORE\.sh failed in step storage \(exit code 1\); its last lines:/);
    expect(error).toContain(`${outputs} is a directory with files in it`);
    expect(error).not.toMatch(/\n\s+at /);
    const left = await fresh.exec(
      `test ! -e ${WORK_DIR}/identity && cd ${WORK_DIR} && ls RESTORE.sh signers backup | sort`,
    );
    expect(left.code).toBe(0);
    expect(left.stdout).toContain('manifest.json.sig');
    expect(left.stdout).toContain(path.posix.basename(manifest.items[0]!.key));
  }, 300_000);
});
