// A real GPU host for tests, the sandbox and benchmarks: a private Debian OpenSSH sshd (own config,
// own ed25519 host key, key-only login for a test user) serving a fixture tree of the seed's paths.
// Root-owned paths are readable only through `sudo -n` on a root-owned copy of the production read
// wrapper (scripts/host/comfyume-read) with a per-instance allowlist. See testing.md §1.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
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
import { SSHD, descendantPids, isRunning, killAll, startSshd } from './sshd.js';

export const TEST_USER = 'comfyume-test';
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
  /**
   * Commands the host does not have (e.g. curl): the sessions' PATH is then the stubs and a
   * directory of links to every other command of /usr/local/bin, /usr/bin and /bin.
   */
  withoutCommands?: string[];
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
  /** First on the sessions' PATH: a test may put a wrapper of a command here. */
  binDir: string;
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
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, reason: `'ip netns' is unavailable: ${message.split('\n')[0]}` };
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

/** The files and directories of one instance. */
interface HostPaths {
  id: string;
  dir: string;
  /** sshd's config, keys, PidFile and log (0700). */
  stateDir: string;
  /** The host's stubs and the read wrapper, first on the sessions' PATH. */
  binDir: string;
  /** The fixture host's "/". */
  hostRoot: string;
  /** Outside `dir`: removed one by one. */
  authorizedKeys: string;
  sudoersFile: string;
}

async function makeInstanceDirs(baseDir: string, user: UserIds): Promise<HostPaths> {
  const id = randomBytes(5).toString('hex');
  await mkdir(baseDir, { recursive: true });
  const dir = await mkdtemp(path.join(baseDir, 'comfyume-ssh-host-'));
  await chmod(dir, 0o755);
  const paths: HostPaths = {
    id,
    dir,
    stateDir: path.join(dir, 'sshd'),
    binDir: path.join(dir, 'bin'),
    hostRoot: path.join(dir, 'host'),
    authorizedKeys: path.join(user.home, '.ssh', `authorized_keys.comfyume-${id}`),
    sudoersFile: `/etc/sudoers.d/comfyume-test-${id}`,
  };
  await mkdir(paths.stateDir, { mode: 0o700 });
  await mkdir(paths.binDir, { mode: 0o755 });
  return paths;
}

/** Read wrapper: a root-owned copy of the production script with this instance's allowlist. */
async function installReadWrapper({ dir, binDir, hostRoot }: HostPaths): Promise<string> {
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
  return readWrapper;
}

/** `tailscale ip -4` on the host, like the real one on the GPU box. */
async function installTailscaleStub(binDir: string): Promise<void> {
  await writeFile(
    path.join(binDir, 'tailscale'),
    `#!/bin/sh\nif [ "$1" = ip ] && [ "$2" = -4 ]; then echo ${FIXTURE_TAILSCALE_IP}; exit 0; fi\necho "tailscale stub: unsupported: $*" >&2\nexit 1\n`,
    { mode: 0o755 },
  );
}

/** The test user may run the read wrapper as root, and nothing else; visudo checks it first. */
async function installSudoers(
  { stateDir, sudoersFile }: HostPaths,
  readWrapper: string,
): Promise<void> {
  const sudoers = `Defaults:${TEST_USER} !requiretty\n${TEST_USER} ALL=(root) NOPASSWD: ${readWrapper}\n`;
  const sudoersTmp = path.join(stateDir, 'sudoers');
  await writeFile(sudoersTmp, sudoers, { mode: 0o440 });
  sh('visudo', ['-cqf', sudoersTmp]);
  await writeFile(sudoersFile, sudoers, { mode: 0o440 });
}

interface HostKeys {
  /** The host key's private file (sshd's HostKey). */
  hostKey: string;
  hostKeyFingerprint: string;
  privateKey: string;
  publicKey: string;
}

/** A fresh ed25519 host key and client key per instance. */
async function makeKeys(stateDir: string): Promise<HostKeys> {
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
  return { hostKey, hostKeyFingerprint, privateKey, publicKey };
}

/** Installs the client key; StrictModes wants home 755, .ssh 700, all owned by the user. */
async function authorizeClient(
  user: UserIds,
  authorizedKeys: string,
  publicKey: string,
): Promise<void> {
  const sshDir = path.join(user.home, '.ssh');
  await mkdir(sshDir, { recursive: true, mode: 0o700 });
  await chmod(user.home, 0o755);
  await chown(user.home, user.uid, user.gid);
  await chmod(sshDir, 0o700);
  await chown(sshDir, user.uid, user.gid);
  await writeFile(authorizedKeys, `${publicKey}\n`, { mode: 0o600 });
  await chown(authorizedKeys, user.uid, user.gid);
}

/** Everything an instance leaves behind, removed on stop(), on a failed start, or at exit. */
class HostTeardown {
  /** sshd's listener, once it runs. */
  pid: number | undefined;
  netns: Netns | undefined;
  private stopped = false;
  private readonly onExit = (): void => this.cleanupNow();

  constructor(private readonly paths: HostPaths) {
    process.once('exit', this.onExit);
  }

  /** Kills at once and removes every trace; synchronous, so that it can run at process exit. */
  cleanupNow(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.pid !== undefined) killAll([this.pid, ...descendantPids(this.pid)], 'SIGKILL');
    for (const file of [this.paths.sudoersFile, this.paths.authorizedKeys]) {
      try {
        unlinkSync(file);
      } catch {
        // not created yet
      }
    }
    if (this.netns) teardownNetns(this.netns);
    rmSync(this.paths.dir, { recursive: true, force: true });
  }

  /** cleanupNow, and the exit hook is not needed any more. */
  release(): void {
    this.cleanupNow();
    process.removeListener('exit', this.onExit);
  }

  /** SIGTERM to sshd and its sessions, SIGKILL to those left after 3 s, then every trace. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    const listener = this.pid;
    if (listener !== undefined) {
      // Sessions call setsid: collect them before the listener dies and they are reparented.
      const pids = [listener, ...descendantPids(listener)];
      killAll(pids, 'SIGTERM');
      for (let waited = 0; waited < 3000 && pids.some(isRunning); waited += 50) await sleep(50);
      killAll(pids.filter(isRunning), 'SIGKILL');
    }
    this.release();
    await rm(this.paths.dir, { recursive: true, force: true });
  }
}

/** A directory of links to every command of the system's bin directories but `missing`. */
async function linkCommandsExcept(dir: string, missing: string[]): Promise<string> {
  await mkdir(dir, { mode: 0o755 });
  for (const bin of ['/bin', '/usr/bin', '/usr/local/bin']) {
    for (const name of await readdir(bin).catch(() => [])) {
      if (missing.includes(name)) continue;
      await symlink(path.join(bin, name), path.join(dir, name)).catch(() => undefined);
    }
  }
  return dir;
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
  const paths = await makeInstanceDirs(opts.baseDir ?? os.tmpdir(), user);
  const teardown = new HostTeardown(paths);
  try {
    const tree = await buildFixtureTree(paths.hostRoot, user, opts.models ?? DEFAULT_MODELS);
    const readWrapper = await installReadWrapper(paths);
    await installTailscaleStub(paths.binDir);
    const systemPath = opts.withoutCommands
      ? await linkCommandsExcept(path.join(paths.dir, 'system-bin'), opts.withoutCommands)
      : undefined;
    await installSudoers(paths, readWrapper);
    const keys = await makeKeys(paths.stateDir);
    await authorizeClient(user, paths.authorizedKeys, keys.publicKey);

    await mkdir('/run/sshd', { recursive: true, mode: 0o755 }); // sshd as root needs it
    if (opts.netns) teardown.netns = setupNetns(paths.id);
    const listenHost = teardown.netns ? NETNS_ADDR : '127.0.0.1';
    const sshd = await startSshd({
      stateDir: paths.stateDir,
      hostKey: keys.hostKey,
      authorizedKeys: paths.authorizedKeys,
      user: TEST_USER,
      binDir: paths.binDir,
      systemPath,
      listenHost,
      netnsName: teardown.netns?.name,
    });
    teardown.pid = sshd.pid;

    return {
      host: listenHost,
      port: sshd.port,
      user: TEST_USER,
      privateKey: keys.privateKey,
      publicKey: keys.publicKey,
      hostKeyFingerprint: keys.hostKeyFingerprint,
      hostRoot: paths.hostRoot,
      modelsDir: tree.modelsDir,
      scratchDir: tree.scratchDir,
      readWrapper,
      binDir: paths.binDir,
      sessionPids: () => descendantPids(sshd.pid),
      connectionCount: () =>
        (readFileSync(sshd.logFile, 'utf8').match(/^Connection from /gm) ?? []).length,
      stop: () => teardown.stop(),
    };
  } catch (err) {
    teardown.release();
    throw err;
  }
}

export { FIXTURE_PATHS, SSHD, descendantPids, isRunning };
