// A "fresh GPU instance" for tests (testing.md §5): a Debian 12 root booted with systemd in
// systemd-nspawn, one per call. The root is an overlay (lower: the cached root of fresh-root.ts,
// shared read-only; upper/work: this instance's temp dir), its network a namespace of its own with
// a veth pair (10.222.X.2 inside, 10.222.X.1 outside), its APT the local repository bound at
// /repo, its two data disks real ext4 loop devices. sshd (root, key only, a fresh host key) is
// reached from the outer machine at 10.222.X.2:22. stop() removes every trace. Like a cloud
// instance it can take more authorized keys for root and a startup script run once at first boot
// (the Verda emulator's boot hook, verda-instance-boot.ts, passes an instance's).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import { fingerprintSha256 } from '../lib/ssh.js';
import { sleep } from '../lib/retry.js';
import { ensureFreshRoot, ensureLocalRepo, run, type CacheOptions } from './fresh-root.js';
import { descendantPids, isRunning, killAll } from './sshd.js';

const { Client } = ssh2;

/** The Tailscale address of the seed host (tests restore a state with it). */
export const SEED_TAILSCALE_IP = '100.89.38.43';
/** The local repository inside the host (`deb [trusted=yes] file:/repo ./`). */
export const REPO_MOUNT = '/repo';

export interface FreshHostOptions extends CacheOptions {
  /** The host's name (/etc/hostname); default `gpu-fresh-<X>`. */
  hostname?: string;
  /** From spawning nspawn to sshd accepting; default 90 s. */
  bootTimeoutMs?: number;
  /** Sizes of the sparse disk files in MiB; default models 256, scratch 128. */
  diskMiB?: { models: number; scratch: number };
  /** More authorized_keys lines for root, beside the harness key (which exec() keeps using). */
  authorizedKeys?: string[];
  /**
   * Run once at first boot as root, like a cloud's startup script: written to
   * /var/lib/comfyume-startup.sh, run by a oneshot unit After=network.target, its output in
   * /var/log/comfyume-startup.log. startFreshHost does not wait for it. When it replaces the
   * host's ssh host key, exec() trusts the new key, read from the host's own disk (rootDir).
   */
  startupScript?: string;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface FreshHostTimings {
  /** ensureFreshRoot (0 when it was only checked). */
  rootMs: number;
  repoMs: number;
  /** Overlay, keys, disks, netns. */
  prepareMs: number;
  /** From spawning systemd-nspawn until sshd answered and a root login worked. */
  bootToSshMs: number;
  /** startFreshHost as a whole. */
  totalMs: number;
}

export interface FreshHost {
  address: string;
  port: number;
  user: 'root';
  privateKey: string;
  hostKeyFingerprint: string;
  /** The root-namespace side of the veth: services the host must reach (a Redis "VPS") bind here. */
  outerAddress: string;
  /** The two data disks (ext4, empty) as device paths inside the host. */
  disks: { models: string; scratch: string };
  /** The merged overlay: the host's "/" as seen from outside (read it, do not write it). */
  rootDir: string;
  /** `bash -c command` as root inside, over ssh2 with the pinned host key (reconnects after a reboot). */
  exec(command: string, opts?: { input?: string; timeoutMs?: number }): Promise<ExecResult>;
  /** Pins another host key: after the host's own keys were replaced (a restore), exec uses it. */
  repin(fingerprint: string): void;
  /** Lines of /var/log/<name>-standin.log (read through rootDir; [] before the first call). */
  readLog(name: 'tailscale' | 'docker'): Promise<string[]>;
  stop(): Promise<void>;

  // Extras beyond the agreed interface.
  /** The instance's name: also its netns (`ip netns exec <name> ...`) and nspawn machine name. */
  name: string;
  /** How many times systemd-nspawn was launched (1 + reboots). */
  boots(): number;
  /** `systemctl reboot` inside, then waits until the relaunched host answers on ssh again. */
  reboot(timeoutMs?: number): Promise<void>;
  /** systemd-nspawn's output (the console: boot messages). */
  consoleLog(): string;
  timings: FreshHostTimings;
}

const WHICH_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function which(cmd: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...WHICH_PATH];
  return dirs.map((d) => path.join(d, cmd)).find((p) => existsSync(p));
}

/** Whether a fresh host can run here (root and the tools), and if not, why. */
export function freshHostSupport(): { ok: boolean; reason?: string } {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return { ok: false, reason: 'a fresh host needs root (netns, overlay, loop devices, nspawn)' };
  }
  const tools: [string, string][] = [
    ['mmdebstrap', 'mmdebstrap'],
    ['systemd-nspawn', 'systemd-container'],
    ['unshare', 'util-linux'],
    ['ip', 'iproute2'],
    ['apt-ftparchive', 'apt-utils'],
    ['dpkg-deb', 'dpkg'],
    ['losetup', 'mount'],
    ['mkfs.ext4', 'e2fsprogs'],
    ['ssh-keygen', 'openssh-client'],
    ['zstd', 'zstd'],
  ];
  const missing = tools.filter(([cmd]) => !which(cmd));
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map(([, pkg]) => pkg))].join(' ');
    return {
      ok: false,
      reason: `missing ${missing.map(([cmd]) => cmd).join(', ')} (apt-get install -y ${pkgs})`,
    };
  }
  try {
    if (!/\toverlay$/m.test(readFileSync('/proc/filesystems', 'utf8'))) {
      return { ok: false, reason: 'the kernel has no overlayfs' };
    }
  } catch {
    // no /proc/filesystems: let the mount tell
  }
  if (!existsSync('/dev/loop-control')) {
    return { ok: false, reason: 'no /dev/loop-control (loop devices are needed for the disks)' };
  }
  return { ok: true };
}

/** Synchronous on purpose: the exit-time cleanup uses it too. */
function shSync(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

const NETNS_PREFIX = 'cfyfh-';

/** Claims a free 10.222.X.0/30 by creating the netns `cfyfh-X` (atomic: `ip netns add` fails if it exists). */
async function claimSlot(): Promise<number> {
  const used = await run('ip', ['-o', '-4', 'addr']).catch(() => '');
  const start = 1 + (process.pid % 250);
  for (let i = 0; i < 254; i++) {
    const x = 1 + ((start + i - 1) % 254);
    if (used.includes(`10.222.${x}.`)) continue;
    if (existsSync(`/run/netns/${NETNS_PREFIX}${x}`)) continue;
    try {
      await run('ip', ['netns', 'add', `${NETNS_PREFIX}${x}`]);
      return x;
    } catch {
      // taken meanwhile by another worker
    }
  }
  throw new Error('no free 10.222.X.0/30 for a fresh host (254 in use?)');
}

interface Instance {
  x: number;
  name: string;
  dir: string;
  merged: string;
  outerVeth: string;
  innerVeth: string;
  loops: string[];
  diskFiles: string[];
  launcherPid?: number;
  overlayMounted: boolean;
  logFile: string;
  /** The process that started the host; when it died without stop(), the next start reaps it. */
  ownerPid: number;
}

const INSTANCE_PREFIX = 'comfyume-fresh-host-';

/** What teardownSync needs, written after every step (for reapOrphans). */
function record(inst: Instance): void {
  writeFileSync(path.join(inst.dir, 'instance.json'), `${JSON.stringify(inst)}\n`);
}

/**
 * Tears down the hosts of processes that died without stop() (a killed jest worker: 'exit' hooks
 * do not run on SIGKILL/SIGTERM), found by their instance.json in the temp dir.
 */
function reapOrphans(log: (message: string) => void): void {
  for (const entry of readdirSync(os.tmpdir())) {
    if (!entry.startsWith(INSTANCE_PREFIX)) continue;
    let inst: Instance;
    try {
      inst = JSON.parse(
        readFileSync(path.join(os.tmpdir(), entry, 'instance.json'), 'utf8'),
      ) as Instance;
    } catch {
      continue; // being set up, or not ours
    }
    if (inst.ownerPid === process.pid || isRunning(inst.ownerPid)) continue; // a zombie counts as dead
    log(`reaping fresh host ${inst.name} of pid ${inst.ownerPid}, which died without stop()`);
    teardownSync(inst);
  }
}

/** Processes of one fresh host: the launcher loop, nspawn, and the container's init. */
function containerInits(pids: number[]): number[] {
  return pids.filter((pid) => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const nspid = /^NSpid:\s+(.+)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
      return nspid.length > 1 && nspid[nspid.length - 1] === '1';
    } catch {
      return false;
    }
  });
}

function mountedAt(target: string): boolean {
  try {
    return readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .some((line) => line.split(' ')[1] === target);
  } catch {
    return false;
  }
}

/** Whether pid is still this host's launcher (its command line names the overlay), not a reused pid. */
function ownsCmdline(pid: number, merged: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`--directory=${merged}`);
  } catch {
    return false;
  }
}

/** Kills the host's processes and removes every trace; synchronous (it also runs at exit). */
function teardownSync(inst: Instance): string[] {
  const problems: string[] = [];
  if (inst.launcherPid !== undefined && ownsCmdline(inst.launcherPid, inst.merged)) {
    const pids = [inst.launcherPid, ...descendantPids(inst.launcherPid)];
    // The launcher first (no relaunch), then the container's init: its PID namespace dies with it.
    killAll([inst.launcherPid], 'SIGKILL');
    killAll(containerInits(pids), 'SIGKILL');
    const deadline = Date.now() + 10_000;
    while (pids.some(isRunning) && Date.now() < deadline) {
      killAll(pids.filter(isRunning), 'SIGKILL');
      spawnSync('sleep', ['0.05']);
    }
    const left = pids.filter(isRunning);
    if (left.length > 0) problems.push(`processes still running: ${left.join(' ')}`);
  }
  if (inst.overlayMounted) {
    for (let i = 0; i < 20 && mountedAt(inst.merged); i++) {
      if (!shSync('umount', [inst.merged])) spawnSync('sleep', ['0.1']);
    }
    if (mountedAt(inst.merged)) {
      shSync('umount', ['-l', inst.merged]);
      problems.push(`${inst.merged} needed a lazy unmount`);
    }
  }
  for (const loop of inst.loops) {
    if (!shSync('losetup', ['-d', loop])) problems.push(`losetup -d ${loop} failed`);
  }
  shSync('ip', ['netns', 'del', inst.name]);
  if (existsSync(`/sys/class/net/${inst.outerVeth}`)) shSync('ip', ['link', 'del', inst.outerVeth]);
  if (path.basename(inst.dir).startsWith(INSTANCE_PREFIX)) {
    // GNU rm is several times faster than rmSync on an upper dir full of installed packages.
    if (!shSync('rm', ['-rf', '--one-file-system', inst.dir])) {
      rmSync(inst.dir, { recursive: true, force: true });
    }
  }
  return problems;
}

/** The launcher: a private mount namespace with a tmpfs on /run/systemd/nspawn, and a relaunch on 133 (reboot). */
const LAUNCHER = `
mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn || exit 97
n=0
while :; do
  n=$((n + 1))
  echo "=== comfyume-fresh-host: launch $n"
  systemd-nspawn "$@" </dev/null
  rc=$?
  echo "=== comfyume-fresh-host: nspawn exited $rc"
  [ "$rc" -eq 133 ] || exit "$rc"
done
`;

async function keygen(file: string, comment: string): Promise<void> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
}

/** Files written through the overlay before the first boot (they land in the upper dir). */
async function personalize(
  inst: Instance,
  hostname: string,
  authorizedKeys: string[],
  hostKeyFile: string,
): Promise<void> {
  const m = (p: string) => path.join(inst.merged, p);
  // One key per line: a key with a line break in it would smuggle in another line.
  const multiLine = authorizedKeys.find((k) => /[\r\n]/.test(k.trim()));
  if (multiLine !== undefined)
    throw new Error(`authorizedKeys: a key spans several lines: ${multiLine.slice(0, 40)}...`);
  await mkdir(m('root/.ssh'), { recursive: true, mode: 0o700 });
  await chmod(m('root/.ssh'), 0o700);
  await writeFile(
    m('root/.ssh/authorized_keys'),
    authorizedKeys.map((k) => `${k.trim()}\n`).join(''),
    {
      mode: 0o600,
    },
  );
  await writeFile(m('etc/ssh/ssh_host_ed25519_key'), await readFile(hostKeyFile), { mode: 0o600 });
  await writeFile(m('etc/ssh/ssh_host_ed25519_key.pub'), await readFile(`${hostKeyFile}.pub`), {
    mode: 0o644,
  });
  await writeFile(m('etc/hostname'), `${hostname}\n`, { mode: 0o644 });
  await writeFile(
    m('etc/hosts'),
    `127.0.0.1\tlocalhost\n127.0.1.1\t${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
    { mode: 0o644 },
  );
  await writeFile(m('etc/machine-id'), `${randomBytes(16).toString('hex')}\n`, { mode: 0o444 });
  // Debian's sources moved aside (no network: apt-get update would spend seconds failing).
  if (existsSync(m('etc/apt/sources.list'))) {
    await rename(m('etc/apt/sources.list'), m('etc/apt/sources.list.comfyume-disabled'));
  }
  for (const f of readdirSync(m('etc/apt/sources.list.d'))) {
    if (/\.(list|sources)$/.test(f)) {
      await rename(m(`etc/apt/sources.list.d/${f}`), m(`etc/apt/sources.list.d/${f}.disabled`));
    }
  }
  await writeFile(
    m('etc/apt/sources.list.d/comfyume-local.list'),
    `deb [trusted=yes] file:${REPO_MOUNT} ./\n`,
    { mode: 0o644 },
  );
}

const STARTUP_SCRIPT = '/var/lib/comfyume-startup.sh';
const STARTUP_LOG = '/var/log/comfyume-startup.log';
const STARTUP_DONE = '/var/lib/comfyume-startup.done';
const STARTUP_UNIT = 'comfyume-startup.service';

/** The cloud's startup script: run once at first boot (a marker file keeps it from running again). */
async function installStartupScript(inst: Instance, script: string): Promise<void> {
  const m = (p: string) => path.join(inst.merged, p);
  await mkdir(m('var/lib'), { recursive: true });
  await writeFile(m(STARTUP_SCRIPT), script, { mode: 0o700 });
  await chmod(m(STARTUP_SCRIPT), 0o700);
  // sh runs a script without a shebang itself (ENOEXEC), as the cloud does.
  const unit = [
    '[Unit]',
    'Description=comfyume fresh host: the startup script (once, at first boot)',
    'After=network.target',
    `ConditionPathExists=!${STARTUP_DONE}`,
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    // $$ is a literal $ to systemd (it expands $NAME itself).
    `ExecStart=/bin/sh -c '${STARTUP_SCRIPT} >${STARTUP_LOG} 2>&1; rc=$$?; touch ${STARTUP_DONE}; exit $$rc'`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
  await writeFile(m(`etc/systemd/system/${STARTUP_UNIT}`), unit, { mode: 0o644 });
  await mkdir(m('etc/systemd/system/multi-user.target.wants'), { recursive: true });
  await symlink(
    `/etc/systemd/system/${STARTUP_UNIT}`,
    m(`etc/systemd/system/multi-user.target.wants/${STARTUP_UNIT}`),
  );
}

/** The fingerprint of the ed25519 host key on the host's disk now (undefined if unreadable). */
function diskHostKeyFingerprint(inst: Instance): string | undefined {
  try {
    const pub = readFileSync(path.join(inst.merged, 'etc/ssh/ssh_host_ed25519_key.pub'), 'utf8');
    const blob = pub.trim().split(/\s+/)[1];
    return blob ? fingerprintSha256(Buffer.from(blob, 'base64')) : undefined;
  } catch {
    return undefined;
  }
}

async function makeDisks(inst: Instance, sizes: { models: number; scratch: number }) {
  const out: string[] = [];
  for (const [name, mib] of [
    ['models', sizes.models],
    ['scratch', sizes.scratch],
  ] as const) {
    const file = path.join(inst.dir, `disk-${name}.img`);
    await run('truncate', ['-s', `${mib}M`, file]);
    await run('mkfs.ext4', ['-q', '-L', name, file]);
    inst.diskFiles.push(file);
    const loop = (await run('losetup', ['--find', '--show', file])).trim();
    if (!/^\/dev\/loop\d+$/.test(loop)) throw new Error(`losetup printed ${JSON.stringify(loop)}`);
    inst.loops.push(loop);
    record(inst);
    out.push(loop);
  }
  return { models: out[0] ?? '', scratch: out[1] ?? '' };
}

async function setupNetwork(inst: Instance): Promise<void> {
  const inNs = (...args: string[]) => run('ip', ['netns', 'exec', inst.name, 'ip', ...args]);
  await run('ip', ['link', 'add', inst.outerVeth, 'type', 'veth', 'peer', 'name', inst.innerVeth]);
  await run('ip', ['link', 'set', inst.innerVeth, 'netns', inst.name]);
  await run('ip', ['addr', 'add', `10.222.${inst.x}.1/30`, 'dev', inst.outerVeth]);
  await run('ip', ['link', 'set', inst.outerVeth, 'up']);
  await inNs('link', 'set', inst.innerVeth, 'name', 'eth0');
  await inNs('addr', 'add', `10.222.${inst.x}.2/30`, 'dev', 'eth0');
  await inNs('link', 'set', 'eth0', 'up');
  await inNs('link', 'set', 'lo', 'up');
  const route = await run('ip', ['route', 'get', `10.222.${inst.x}.2`]);
  if (!route.includes(`dev ${inst.outerVeth}`)) {
    throw new Error(`ip route get 10.222.${inst.x}.2 does not name ${inst.outerVeth}: ${route}`);
  }
}

/** Resolves when something at host:port speaks SSH (its banner), within one attempt's 2 s. */
function sshBanner(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (d: Buffer) => done(d.toString('latin1').startsWith('SSH-')));
  });
}

function tail(text: string, lines = 40): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

type SshClient = InstanceType<typeof Client>;

class HostSession {
  private client: SshClient | undefined;
  private connecting: Promise<SshClient> | undefined;

  constructor(
    private readonly address: string,
    private readonly privateKey: string,
    private pin: string,
    /** A key also trusted: read out of band from the host's disk (a startup script's key). */
    private readonly diskPin?: () => string | undefined,
  ) {}

  /** Pins another host key (the host's keys were replaced, e.g. restored) and reconnects on next use. */
  repin(fingerprint: string): void {
    this.pin = fingerprint;
    this.close();
  }

  connect(readyTimeoutMs = 10_000): Promise<SshClient> {
    if (this.client) return Promise.resolve(this.client);
    if (this.connecting) return this.connecting;
    const attempt = new Promise<SshClient>((resolve, reject) => {
      const client = new Client();
      let ready = false;
      client.on('ready', () => {
        ready = true;
        this.client = client;
        resolve(client);
      });
      client.on('error', (err: Error) => {
        if (!ready) reject(err);
        if (this.client === client) this.client = undefined;
      });
      client.on('close', () => {
        if (this.client === client) this.client = undefined;
        if (!ready) reject(new Error('ssh connection closed before it was ready'));
      });
      client.connect({
        host: this.address,
        port: 22,
        username: 'root',
        privateKey: this.privateKey,
        readyTimeout: readyTimeoutMs,
        keepaliveInterval: 5000,
        keepaliveCountMax: 3,
        algorithms: { serverHostKey: ['ssh-ed25519'] },
        hostVerifier: (key: Buffer) => {
          const presented = fingerprintSha256(key);
          return (
            presented === this.pin || (this.diskPin !== undefined && presented === this.diskPin())
          );
        },
      });
    });
    this.connecting = attempt;
    const clear = () => {
      if (this.connecting === attempt) this.connecting = undefined;
    };
    attempt.then(clear, clear);
    return attempt;
  }

  /** Connects, retrying refused/reset connections (a host rebooting) until the deadline. */
  async connectRetrying(timeoutMs: number): Promise<SshClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.connect();
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (/verification failed|authentication/i.test(message) || Date.now() > deadline) {
          throw new Error(`ssh root@${this.address}: ${message}`, { cause: err });
        }
        await sleep(200);
      }
    }
  }

  async exec(
    command: string,
    opts: { input?: string; timeoutMs?: number } = {},
  ): Promise<ExecResult> {
    const timeoutMs = opts.timeoutMs ?? 300_000;
    const client = await this.connectRetrying(Math.min(timeoutMs, 30_000));
    return new Promise<ExecResult>((resolve, reject) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let code: number | undefined;
      let settled = false;
      let channel: ClientChannel | undefined;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        client.removeListener('close', onClose);
        fn();
      };
      const text = (b: Buffer[]) => Buffer.concat(b).toString('utf8');
      const timer = setTimeout(() => {
        channel?.close();
        finish(() =>
          reject(
            new Error(
              `timed out after ${timeoutMs} ms: ${command.slice(0, 200)}\nstdout: ${tail(text(out), 10)}\nstderr: ${tail(text(err), 10)}`,
            ),
          ),
        );
      }, timeoutMs);
      const onClose = () =>
        finish(() =>
          reject(
            new Error(
              `the ssh connection closed during: ${command.slice(0, 200)}\nstdout: ${tail(text(out), 10)}\nstderr: ${tail(text(err), 10)}`,
            ),
          ),
        );
      client.once('close', onClose);
      client.exec(command, (e, ch) => {
        if (e) {
          finish(() => reject(e));
          return;
        }
        channel = ch;
        ch.on('data', (d: Buffer) => out.push(d));
        ch.stderr.on('data', (d: Buffer) => err.push(d));
        ch.on('exit', (c: number | null, signal?: string) => {
          code =
            typeof c === 'number'
              ? c
              : 128 + ((signal && os.constants.signals[`SIG${signal}` as NodeJS.Signals]) || 0);
        });
        ch.on('close', () =>
          finish(() => {
            if (code === undefined) {
              reject(new Error(`no exit status for: ${command.slice(0, 200)}`));
              return;
            }
            resolve({ code, stdout: text(out), stderr: text(err) });
          }),
        );
        ch.end(opts.input ?? undefined);
      });
    });
  }

  close(): void {
    this.client?.end();
    this.client = undefined;
  }
}

/** The overlay (lower = the cached root) mounted at inst.merged. */
async function mountOverlay(inst: Instance, lowerDir: string): Promise<void> {
  await chmod(inst.dir, 0o755);
  for (const d of ['upper', 'work', 'root', 'keys']) {
    await mkdir(path.join(inst.dir, d), { mode: d === 'keys' ? 0o700 : 0o755 });
  }
  const upper = path.join(inst.dir, 'upper');
  const work = path.join(inst.dir, 'work');
  await run('mount', [
    '-t',
    'overlay',
    'overlay',
    '-o',
    `lowerdir=${lowerDir},upperdir=${upper},workdir=${work}`,
    inst.merged,
  ]);
  inst.overlayMounted = true;
  record(inst);
}

/** A client key for root's login and the host's own ed25519 key, both fresh; the pin is the latter's. */
async function makeKeys(inst: Instance, hostname: string) {
  const clientKey = path.join(inst.dir, 'keys', 'client');
  const hostKey = path.join(inst.dir, 'keys', 'ssh_host_ed25519_key');
  await Promise.all([keygen(clientKey, 'comfyume-fresh-host-client'), keygen(hostKey, hostname)]);
  const hostPub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/)[1] ?? '';
  return {
    privateKey: await readFile(clientKey, 'utf8'),
    publicKey: (await readFile(`${clientKey}.pub`, 'utf8')).trim(),
    hostKeyFile: hostKey,
    hostKeyFingerprint: fingerprintSha256(Buffer.from(hostPub, 'base64')),
  };
}

/** systemd-nspawn, relaunched on reboot, and what it printed. */
interface Launch {
  consoleLog(): string;
  /** How many times nspawn was launched. */
  boots(): number;
  /** How the launcher ended, or undefined while it runs. */
  exited(): string | undefined;
}

function launchNspawn(inst: Instance, hostname: string, repoDir: string): Launch {
  mkdirSync('/run/systemd/nspawn', { recursive: true });
  const nspawnArgs = [
    '--quiet',
    '--boot',
    `--directory=${inst.merged}`,
    `--machine=${inst.name}`,
    `--hostname=${hostname}`,
    '--register=no',
    '--keep-unit',
    `--network-namespace-path=/run/netns/${inst.name}`,
    '--capability=CAP_NET_ADMIN',
    `--bind-ro=${repoDir}:${REPO_MOUNT}`,
    ...inst.loops.map((l) => `--bind=${l}`),
    '--resolv-conf=off',
    '--timezone=off',
    '--link-journal=no',
    '--console=read-only',
  ];
  const logFd = openSync(inst.logFile, 'a');
  const launcher = spawn(
    'unshare',
    ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', LAUNCHER, 'launcher'].concat(
      nspawnArgs,
    ),
    { detached: true, stdio: ['ignore', logFd, logFd] },
  );
  closeSync(logFd);
  launcher.unref();
  let exited: string | undefined;
  launcher.once('exit', (code, signal) => (exited = signal ?? `exit ${code}`));
  if (launcher.pid === undefined) throw new Error('could not spawn unshare/systemd-nspawn');
  inst.launcherPid = launcher.pid;
  record(inst);
  const consoleLog = () => {
    try {
      return readFileSync(inst.logFile, 'utf8');
    } catch {
      return '';
    }
  };
  return {
    consoleLog,
    boots: () => (consoleLog().match(/^=== comfyume-fresh-host: launch \d+$/gm) ?? []).length,
    exited: () => exited,
  };
}

/** Waits until sshd answers and a root login runs `true`; fails with the console's tail. */
async function waitForSsh(
  session: HostSession,
  launch: Launch,
  target: { address: string; timeoutMs: number; what: string },
): Promise<void> {
  const deadline = Date.now() + target.timeoutMs;
  for (;;) {
    const exited = launch.exited();
    if (exited !== undefined) {
      throw new Error(
        `${target.what}: systemd-nspawn ended (${exited}); its log:\n${tail(launch.consoleLog())}`,
      );
    }
    if (await sshBanner(target.address, 22)) {
      try {
        await session.connect();
        const r = await session.exec('true', { timeoutMs: 10_000 });
        if (r.code === 0) return;
      } catch {
        // sshd up, login not yet possible (or the old instance going down): retry
      }
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${target.what}: sshd at ${target.address}:22 did not accept a root login within ${target.timeoutMs} ms; the nspawn log:\n${tail(launch.consoleLog())}`,
      );
    }
    await sleep(150);
  }
}

/** A fresh instance's bookkeeping: the slot, the temp dir, and the exit-time cleanup. */
async function newInstance(): Promise<Instance> {
  const dir = await mkdtemp(path.join(os.tmpdir(), INSTANCE_PREFIX));
  let x: number;
  try {
    x = await claimSlot();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const inst: Instance = {
    x,
    name: `${NETNS_PREFIX}${x}`,
    dir,
    merged: path.join(dir, 'root'),
    outerVeth: `cfyfo-${x}`,
    innerVeth: `cfyfi-${x}`,
    loops: [],
    diskFiles: [],
    overlayMounted: false,
    logFile: path.join(dir, 'nspawn.log'),
    ownerPid: process.pid,
  };
  record(inst);
  return inst;
}

async function readStandinLog(inst: Instance, name: string): Promise<string[]> {
  try {
    const text = await readFile(path.join(inst.merged, `var/log/${name}-standin.log`), 'utf8');
    return text.split('\n').filter((l) => l !== '');
  } catch {
    return [];
  }
}

/** Boots a fresh Debian 12 host; see the file comment. stop() removes every trace. */
export async function startFreshHost(opts: FreshHostOptions = {}): Promise<FreshHost> {
  const started = Date.now();
  const support = freshHostSupport();
  if (!support.ok) throw new Error(`startFreshHost: ${support.reason}`);
  const [root, repo] = await Promise.all([ensureFreshRoot(opts), ensureLocalRepo(opts)]);
  const prepStart = Date.now();

  reapOrphans(opts.log ?? ((m) => process.stderr.write(`[fresh-host] ${m}\n`)));
  const inst = await newInstance();
  const onExit = () => teardownSync(inst);
  process.once('exit', onExit);
  let stopped = false;
  let session: HostSession | undefined;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    session?.close();
    process.removeListener('exit', onExit);
    const problems = teardownSync(inst);
    if (problems.length > 0) throw new Error(`fresh host ${inst.name}: ${problems.join('; ')}`);
  };

  try {
    await mountOverlay(inst, root.rootDir);
    const hostname = opts.hostname ?? `gpu-fresh-${inst.x}`;
    const keys = await makeKeys(inst, hostname);
    await personalize(
      inst,
      hostname,
      [keys.publicKey, ...(opts.authorizedKeys ?? [])],
      keys.hostKeyFile,
    );
    if (opts.startupScript !== undefined) await installStartupScript(inst, opts.startupScript);
    const disks = await makeDisks(inst, opts.diskMiB ?? { models: 256, scratch: 128 });
    await setupNetwork(inst);
    const address = `10.222.${inst.x}.2`;
    const prepareMs = Date.now() - prepStart;

    const bootStart = Date.now();
    const launch = launchNspawn(inst, hostname, repo.dir);
    const diskPin =
      opts.startupScript === undefined ? undefined : () => diskHostKeyFingerprint(inst);
    const s = new HostSession(address, keys.privateKey, keys.hostKeyFingerprint, diskPin);
    session = s;
    const bootTimeoutMs = opts.bootTimeoutMs ?? 90_000;
    const what = `fresh host ${inst.name}`;
    await waitForSsh(s, launch, { address, timeoutMs: bootTimeoutMs, what });
    const bootToSshMs = Date.now() - bootStart;

    return {
      address,
      port: 22,
      user: 'root',
      privateKey: keys.privateKey,
      hostKeyFingerprint: keys.hostKeyFingerprint,
      outerAddress: `10.222.${inst.x}.1`,
      disks,
      rootDir: inst.merged,
      name: inst.name,
      exec: (command, execOpts) => {
        if (stopped) return Promise.reject(new Error(`fresh host ${inst.name} is stopped`));
        return s.exec(command, execOpts);
      },
      repin: (fingerprint) => s.repin(fingerprint),
      readLog: (name) => readStandinLog(inst, name),
      boots: launch.boots,
      consoleLog: launch.consoleLog,
      reboot: async (timeoutMs = bootTimeoutMs) => {
        const before = launch.boots();
        await s.exec('systemctl reboot', { timeoutMs: 15_000 }).catch(() => undefined);
        s.close();
        const deadline = Date.now() + timeoutMs;
        while (launch.boots() <= before) {
          if (launch.exited() !== undefined || Date.now() > deadline) {
            throw new Error(
              `${what} was not relaunched after the reboot (${launch.exited() ?? 'timeout'}); its log:\n${tail(launch.consoleLog())}`,
            );
          }
          await sleep(100);
        }
        const left = Math.max(1000, deadline - Date.now());
        await waitForSsh(s, launch, { address, timeoutMs: left, what: `reboot of ${inst.name}` });
      },
      stop,
      timings: {
        rootMs: root.ms,
        repoMs: repo.ms,
        prepareMs,
        bootToSshMs,
        totalMs: Date.now() - started,
      },
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
