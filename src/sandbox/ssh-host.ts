// A real GPU host for tests, the sandbox and benchmarks: a private Debian OpenSSH sshd (own config,
// own ed25519 host key, key-only login for a test user) serving a fixture tree of the seed's paths.
// Root-owned paths are readable only through `sudo -n` on a root-owned copy of the production read
// wrapper (scripts/host/comfyume-read) with a per-instance allowlist. See testing.md §1.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fingerprintSha256 } from '../lib/ssh.js';
import { sleep } from '../lib/retry.js';
import {
  buildFixtureTree,
  DEFAULT_MODELS,
  FIXTURE_PATHS,
  type FixtureModel,
} from './fixture-tree.js';

export const TEST_USER = 'comfyume-test';
export const SSHD = '/usr/sbin/sshd';
export const NETNS_HOST_ADDR = '10.200.0.1';
export const NETNS_ADDR = '10.200.0.2';
/** The address the `tailscale ip -4` stub prints (the seed's Tailscale IP). */
export const FIXTURE_TAILSCALE_IP = '100.89.38.43';

export interface SshHostOptions {
  /** Run sshd in its own network namespace at 10.200.0.2 (root and iproute2 needed). */
  netns?: boolean;
  /** Model files under data/models (relative paths); tiny defaults. */
  models?: FixtureModel[];
  /** Directory for the instance (fixture tree, sshd state); default the OS temp dir. */
  baseDir?: string;
}

export interface SshHost {
  host: string;
  port: number;
  user: string;
  privateKey: string;
  publicKey: string;
  hostKeyFingerprint: string;
  /** The fixture host's "/" (all seed paths live under it). */
  hostRoot: string;
  modelsDir: string;
  scratchDir: string;
  /** The root-owned read wrapper the test user may run with `sudo -n`. */
  readWrapper: string;
  /** Processes serving open sessions (children of the listener); tests kill them to drop a link. */
  sessionPids(): number[];
  /** How many TCP connections sshd has accepted so far (from its VERBOSE log). */
  connectionCount(): number;
  stop(): Promise<void>;
}

const here = path.dirname(fileURLToPath(import.meta.url));

function findRepoFile(rel: string): string {
  for (let dir = here; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, rel);
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`cannot find ${rel} above ${here}`);
  }
}

function sh(cmd: string, args: string[], opts: { input?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...opts });
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Whether the netns variant can run here, and why not. */
export function netnsSupport(): { ok: boolean; reason?: string } {
  if (!isRoot()) return { ok: false, reason: 'network namespaces need root' };
  try {
    sh('ip', ['netns', 'list']);
    return { ok: true };
  } catch (err) {
    return {
      ok: false,
      reason: `'ip netns' is unavailable: ${(err as Error).message.split('\n')[0]}`,
    };
  }
}

interface UserIds {
  uid: number;
  gid: number;
  home: string;
}

/** Creates the test user once (password field `*`: useradd's `!` makes sshd refuse key login). */
function ensureTestUser(): UserIds {
  const lookup = () => {
    try {
      return sh('getent', ['passwd', TEST_USER]).trim();
    } catch {
      return '';
    }
  };
  if (!lookup()) {
    try {
      sh('useradd', ['--create-home', '--shell', '/bin/bash', TEST_USER]);
    } catch (err) {
      if (!lookup()) throw err; // another instance may have created it meanwhile
    }
  }
  const shadow = sh('getent', ['shadow', TEST_USER]).split(':')[1] ?? '';
  if (shadow.startsWith('!')) sh('usermod', ['-p', '*', TEST_USER]);
  const [, , uid, gid, , home] = lookup().split(':');
  return { uid: Number(uid), gid: Number(gid), home: home ?? `/home/${TEST_USER}` };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Every process whose parent chain leads to `pid` (read from /proc before anything is killed). */
export function descendantPids(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(name), Number(fields[1]));
    } catch {
      // the process exited while we looked
    }
  }
  const out: number[] = [];
  for (const child of parent.keys()) {
    for (let p = parent.get(child); p !== undefined && p > 1; p = parent.get(p)) {
      if (p === pid) {
        out.push(child);
        break;
      }
    }
  }
  return out;
}

/** Running (a zombie waiting to be reaped counts as gone). */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function killAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

interface Netns {
  name: string;
  vethHost: string;
}

function setupNetns(id: string): Netns {
  const ns: Netns = { name: `cfy-${id}`, vethHost: `cfyh${id.slice(0, 8)}` };
  const vethNs = `cfyn${id.slice(0, 8)}`;
  const before = (() => {
    try {
      return sh('ip', ['route', 'get', NETNS_ADDR]);
    } catch {
      return '';
    }
  })();
  const busy = /dev (cfyh\w+)/.exec(before);
  if (busy)
    throw new Error(
      `${NETNS_ADDR} is already routed to ${busy[1]} (another netns host is running)`,
    );
  try {
    sh('ip', ['netns', 'add', ns.name]);
    sh('ip', ['link', 'add', ns.vethHost, 'type', 'veth', 'peer', 'name', vethNs]);
    sh('ip', ['link', 'set', vethNs, 'netns', ns.name]);
    sh('ip', ['addr', 'add', `${NETNS_HOST_ADDR}/24`, 'dev', ns.vethHost]);
    sh('ip', ['link', 'set', ns.vethHost, 'up']);
    const inNs = (...args: string[]) => sh('ip', ['netns', 'exec', ns.name, 'ip', ...args]);
    inNs('addr', 'add', `${NETNS_ADDR}/24`, 'dev', vethNs);
    inNs('link', 'set', vethNs, 'up');
    inNs('link', 'set', 'lo', 'up');
    const route = sh('ip', ['route', 'get', NETNS_ADDR]);
    if (!route.includes(`dev ${ns.vethHost}`)) {
      throw new Error(`ip route get ${NETNS_ADDR} does not name ${ns.vethHost}: ${route.trim()}`);
    }
    return ns;
  } catch (err) {
    teardownNetns(ns);
    throw err;
  }
}

function teardownNetns(ns: Netns): void {
  for (const args of [
    ['netns', 'del', ns.name],
    ['link', 'del', ns.vethHost],
  ]) {
    try {
      sh('ip', args);
    } catch {
      // already gone
    }
  }
}

/** Starts a private sshd serving a fresh fixture host tree; stop() removes every trace. */
export async function startSshHost(opts: SshHostOptions = {}): Promise<SshHost> {
  if (!isRoot()) {
    throw new Error(
      'startSshHost needs root (it creates a test user, a sudoers drop-in and runs sshd)',
    );
  }
  if (!existsSync(SSHD)) throw new Error(`${SSHD} is missing: apt-get install -y openssh-server`);

  const user = ensureTestUser();
  const id = randomBytes(5).toString('hex');
  const baseDir = opts.baseDir ?? os.tmpdir();
  await mkdir(baseDir, { recursive: true });
  const dir = await mkdtemp(path.join(baseDir, 'comfyume-ssh-host-'));
  await chmod(dir, 0o755);
  const stateDir = path.join(dir, 'sshd');
  const binDir = path.join(dir, 'bin');
  const hostRoot = path.join(dir, 'host');
  await mkdir(stateDir, { mode: 0o700 });
  await mkdir(binDir, { mode: 0o755 });
  const authorizedKeys = path.join(user.home, '.ssh', `authorized_keys.comfyume-${id}`);
  const sudoersFile = `/etc/sudoers.d/comfyume-test-${id}`;
  let netns: Netns | undefined;
  let pid: number | undefined;
  let stopped = false;

  const cleanupSync = () => {
    if (stopped) return;
    stopped = true;
    if (pid !== undefined) {
      const pids = [pid, ...descendantPids(pid)];
      killAll(pids, 'SIGKILL');
    }
    for (const file of [sudoersFile, authorizedKeys]) {
      try {
        unlinkSync(file);
      } catch {
        // not created yet
      }
    }
    if (netns) teardownNetns(netns);
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = () => cleanupSync();
  process.once('exit', onExit);

  try {
    const tree = await buildFixtureTree(hostRoot, user, opts.models ?? DEFAULT_MODELS);

    // Read wrapper: a root-owned copy of the production script with this instance's allowlist.
    const wrapperSource = await readFile(findRepoFile('scripts/host/comfyume-read'), 'utf8');
    const allowlist = path.join(dir, 'read-allowlist');
    const readWrapper = path.join(binDir, 'comfyume-read');
    const baked = wrapperSource.replace(
      /^readonly ALLOWLIST=.*$/m,
      `readonly ALLOWLIST=${allowlist}`,
    );
    if (baked === wrapperSource) throw new Error('comfyume-read has no ALLOWLIST line to bake');
    await writeFile(readWrapper, baked, { mode: 0o755 });
    const allowed = [
      '/var/lib/tailscale',
      '/etc/ssh/ssh_host_*',
      '/etc/ubuntu-advantage',
      '/etc/fail2ban',
      '/etc/ufw',
    ];
    await writeFile(allowlist, allowed.map((p) => `${hostRoot}${p}\n`).join(''), { mode: 0o644 });

    // `tailscale ip -4` on the host, like the real one on the GPU box.
    await writeFile(
      path.join(binDir, 'tailscale'),
      `#!/bin/sh\nif [ "$1" = ip ] && [ "$2" = -4 ]; then echo ${FIXTURE_TAILSCALE_IP}; exit 0; fi\necho "tailscale stub: unsupported: $*" >&2\nexit 1\n`,
      { mode: 0o755 },
    );

    const sudoers = `Defaults:${TEST_USER} !requiretty\n${TEST_USER} ALL=(root) NOPASSWD: ${readWrapper}\n`;
    const sudoersTmp = path.join(stateDir, 'sudoers');
    await writeFile(sudoersTmp, sudoers, { mode: 0o440 });
    sh('visudo', ['-cqf', sudoersTmp]);
    await writeFile(sudoersFile, sudoers, { mode: 0o440 });

    // Keys: a fresh ed25519 host key and client key per instance.
    const hostKey = path.join(stateDir, 'ssh_host_ed25519_key');
    const clientKey = path.join(stateDir, 'client_key');
    const keygen = (file: string, comment: string) =>
      sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
    keygen(hostKey, 'comfyume-fixture-host');
    keygen(clientKey, 'comfyume-fixture-client');
    const privateKey = await readFile(clientKey, 'utf8');
    const publicKey = (await readFile(`${clientKey}.pub`, 'utf8')).trim();
    const hostPub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/)[1] ?? '';
    const hostKeyFingerprint = fingerprintSha256(Buffer.from(hostPub, 'base64'));

    // StrictModes: home 755, .ssh 700, all owned by the user.
    const sshDir = path.join(user.home, '.ssh');
    await mkdir(sshDir, { recursive: true, mode: 0o700 });
    await chmod(user.home, 0o755);
    await chown(user.home, user.uid, user.gid);
    await chmod(sshDir, 0o700);
    await chown(sshDir, user.uid, user.gid);
    await writeFile(authorizedKeys, `${publicKey}\n`, { mode: 0o600 });
    await chown(authorizedKeys, user.uid, user.gid);

    await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    if (opts.netns) netns = setupNetns(id);
    const listenHost = netns ? NETNS_ADDR : '127.0.0.1';
    const pidFile = path.join(stateDir, 'sshd.pid');
    const logFile = path.join(stateDir, 'sshd.log');
    const configFile = path.join(stateDir, 'sshd_config');

    let port = 0;
    for (let attempt = 1; pid === undefined; attempt++) {
      port = netns ? 22 : await freePort();
      await writeFile(
        configFile,
        [
          `Port ${port}`,
          `ListenAddress ${listenHost}`,
          `HostKey ${hostKey}`,
          `PidFile ${pidFile}`,
          `AuthorizedKeysFile ${authorizedKeys}`,
          'PubkeyAuthentication yes',
          'PasswordAuthentication no',
          'KbdInteractiveAuthentication no',
          'UsePAM no',
          'PermitRootLogin no',
          'StrictModes yes',
          `AllowUsers ${TEST_USER}`,
          'Subsystem sftp internal-sftp',
          `SetEnv PATH=${binDir}:/usr/local/bin:/usr/bin:/bin`,
          'PrintMotd no',
          'MaxStartups 100:30:200',
          'MaxSessions 100',
          'LogLevel VERBOSE',
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      const cmd = netns ? 'ip' : SSHD;
      const args = [
        ...(netns ? ['netns', 'exec', netns.name, SSHD] : []),
        '-D',
        '-e',
        '-f',
        configFile,
      ];
      const { openSync, closeSync } = await import('node:fs');
      const logFd = openSync(logFile, 'a');
      const child = spawn(cmd, args, { detached: true, stdio: ['ignore', logFd, logFd] });
      closeSync(logFd);
      child.unref();
      let exited = false;
      child.once('exit', () => (exited = true));
      for (let waited = 0; waited < 10_000 && !exited; waited += 25) {
        if (existsSync(pidFile)) {
          const text = readFileSync(pidFile, 'utf8').trim();
          if (/^\d+$/.test(text)) {
            pid = Number(text);
            break;
          }
        }
        await sleep(25);
      }
      if (pid !== undefined) break;
      if (!exited && child.pid) killAll([child.pid], 'SIGKILL');
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      if (attempt >= 3 || !/Address already in use|Bind to port/i.test(log)) {
        throw new Error(
          `sshd did not start (${exited ? 'exited' : 'no PidFile after 10 s'}): ${log.trim().slice(-1500)}`,
        );
      }
    }

    const listener = pid;
    const stop = async () => {
      if (stopped) return;
      // Sessions call setsid: collect them before the listener dies and they are reparented.
      const pids = [listener, ...descendantPids(listener)];
      killAll(pids, 'SIGTERM');
      for (let waited = 0; waited < 3000 && pids.some(isRunning); waited += 50) await sleep(50);
      killAll(pids.filter(isRunning), 'SIGKILL');
      cleanupSync();
      process.removeListener('exit', onExit);
      await rm(dir, { recursive: true, force: true });
    };

    return {
      host: listenHost,
      port,
      user: TEST_USER,
      privateKey,
      publicKey,
      hostKeyFingerprint,
      hostRoot,
      modelsDir: tree.modelsDir,
      scratchDir: tree.scratchDir,
      readWrapper,
      sessionPids: () => descendantPids(listener),
      connectionCount: () =>
        (readFileSync(logFile, 'utf8').match(/^Connection from /gm) ?? []).length,
      stop,
    };
  } catch (err) {
    cleanupSync();
    process.removeListener('exit', onExit);
    throw err;
  }
}

export { FIXTURE_PATHS };
