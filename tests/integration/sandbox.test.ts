// `npm run sandbox` is the README's first command: it must run every pipeline to the end.
import { describe, expect, it } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { rebuildSupport } from '../../src/sandbox/rebuild-standins.js';
import { repoRoot } from '../helpers/run-action.js';

const sandboxArgs = [
  '--openssl-legacy-provider',
  '--import',
  'tsx',
  path.join(repoRoot, 'src/cli/main.ts'),
  'sandbox',
];
const sudoersDropIns = () => readdirSync('/etc/sudoers.d').filter((f) => f.startsWith('comfyume-'));

/**
 * The sudoers drop-in of the sshd fixture a process started: found by the fixture directory on
 * its sshd's command line (other test files start fixtures of their own at the same time).
 */
function dropInOf(parent: number): string | undefined {
  const ps = spawnSync('ps', ['-eo', 'ppid=,args='], { encoding: 'utf8' }).stdout;
  const dir = ps
    .split('\n')
    .filter((l) => Number(l.trim().split(/\s+/)[0]) === parent)
    .map((l) => /(\/\S*comfyume-ssh-host-[^/\s]+)/.exec(l)?.[1])
    .find((d) => d !== undefined);
  if (!dir) return undefined;
  return sudoersDropIns()
    .map((f) => `/etc/sudoers.d/${f}`)
    .find((f) => readFileSync(f, 'utf8').includes(`${dir}/`));
}

describe('the embedded sandbox', () => {
  it('backs up the fixture host with models, re-syncs nothing, starts and stops the workshop', () => {
    const result = spawnSync(process.execPath, sandboxArgs, {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 110_000,
      killSignal: 'SIGINT', // lets the sandbox remove its sshd and sudoers drop-in on the way out
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    const out = result.stdout;
    // On a failure the diff shows the ends of both streams: what failed is usually on stderr.
    expect({
      code: result.status,
      tail: out.slice(-400),
      stderr: result.stderr.slice(-2000),
    }).toEqual({
      code: 0,
      tail: expect.stringContaining('every pipeline passed'),
      stderr: expect.any(String),
    });
    expect(out).toMatch(/items=9\b/);
    expect(out).toMatch(/tailscale-ip=100\.89\.38\.43/);
    expect(out).toMatch(/manifest lists 9 items/);
    expect(out).toMatch(
      /Restore drill of that backup[^\n]* ok +backup-id=\d{8}T\d{6}Z\n +items=9\n/,
    );
    expect(out).toMatch(/uploaded=0\s+\n?.*skipped=3/s);
    expect(out).toMatch(/hourly-cost-max=143\.20/);
    expect(out).toMatch(/first-job-seconds=\d+/);
    expect(out).toMatch(/jobs-succeeded=15\s+\n?.*jobs-failed=0/s);
    expect(out).toMatch(/Replicas over time \(# running, \+ starting\):\n\s*\d+ \|[#+ ]+\n/);
    expect(out).toMatch(/the fleet is at zero\s+ok\s+status=healthy\s+\n?\s*replicas=0/);
    expect(out).toMatch(/status=paused/);
    if (rebuildSupport().ok) {
      // The GPU host died: a fresh booted host provisioned, restored, given the vault, verified.
      expect(out).toMatch(/The GPU host died: provision[^\n]* ok +ip=10\.222\.\d+\.2\n/);
      expect(out).toMatch(/Restore the last backup[^\n]* ok +backup-id=\S+\n +changes=3\d\n/);
      expect(out).toMatch(/Pull the model vault[^\n]* ok +downloaded=3\n/);
      expect(out).toMatch(/Verify the rebuilt host[^\n]* ok +passed=true\n/);
      expect(out).toMatch(/Delete the test instance[^\n]* ok +status=deleted\n/);
      expect(out).toMatch(/Recovery time of the GPU host[^]*\ntotal +\d+\.\d\n/);
    } else {
      expect(out).toMatch(/The GPU host died \(a fresh booted host\) +skipped/);
    }
    expect(out).not.toMatch(/::add-mask::|BEGIN OPENSSH PRIVATE KEY|AGE-SECRET-KEY-/);
    expect(result.stderr + out).not.toMatch(/add-mask/);
  }, 120_000);

  it('stops its sshd and removes its sudoers drop-in when interrupted (Ctrl-C)', async () => {
    const ours = () =>
      readdirSync(os.tmpdir()).filter((f) => /^(comfyume-sandbox|r2-emulator)-/.test(f));
    const tempBefore = ours();
    const child = spawn(process.execPath, sandboxArgs, {
      cwd: repoRoot,
      env: { ...process.env, NODE_OPTIONS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    let out = '';
    let port = 0;
    let dropIn: string | undefined;
    try {
      // Interrupt once the services answered and the first pipeline began.
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          port = Number(/@127\.0\.0\.1:(\d+)/.exec(out)?.[1] ?? 0);
          if (port && out.includes('=== ')) resolve();
        });
        void closed.then(() => reject(new Error(`the sandbox ended first:\n${out}`)));
      });
      dropIn = child.pid === undefined ? undefined : dropInOf(child.pid);
      expect(dropIn).toMatch(/^\/etc\/sudoers\.d\/comfyume-test-/);
      child.kill('SIGINT');
      expect(await closed).toBe(130);
    } finally {
      child.kill('SIGKILL');
    }
    expect(existsSync(dropIn ?? '')).toBe(false);
    // Its temp tree and the R2 emulator's store (encrypted backups, models) went with it.
    expect(ours()).toEqual(tempBefore);
    const refused = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(false)));
      socket.once('error', () => resolve(true));
    });
    expect(refused).toBe(true);
  }, 120_000);
});
