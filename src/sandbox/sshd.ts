// A private OpenSSH sshd for the test host (testing.md §1): its config, its start under setsid
// (the PidFile, written once the socket is bound, is the readiness signal) and the process tree
// it leaves, which has to be stopped by PID.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { sleep } from '../lib/retry.js';
import { boundPort } from './bound-port.js';

/** sshd must be started by absolute path (it re-executes itself). */
export const SSHD = '/usr/sbin/sshd';

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

export function killAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = boundPort(server);
      server.close(() => resolve(port));
    });
  });
}

export interface SshdOptions {
  /** Where the config, PidFile and log go. */
  stateDir: string;
  hostKey: string;
  authorizedKeys: string;
  /** The only user allowed in. */
  user: string;
  /** Put first on the sessions' PATH (the host's stubs and wrappers). */
  binDir: string;
  /** The rest of the sessions' PATH; default /usr/local/bin:/usr/bin:/bin. */
  systemPath?: string | undefined;
  listenHost: string;
  /** Run sshd inside this network namespace (it then listens on port 22). */
  netnsName?: string | undefined;
}

export interface Sshd {
  pid: number;
  port: number;
  /** sshd's log (LogLevel VERBOSE): one `Connection from` line per accepted connection. */
  logFile: string;
}

function sshdConfig(opts: SshdOptions, port: number, pidFile: string): string {
  return [
    `Port ${port}`,
    `ListenAddress ${opts.listenHost}`,
    `HostKey ${opts.hostKey}`,
    `PidFile ${pidFile}`,
    `AuthorizedKeysFile ${opts.authorizedKeys}`,
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    // Key-only login without PAM: the account must not be locked (`*`, not `!`).
    'UsePAM no',
    'PermitRootLogin no',
    'StrictModes yes',
    `AllowUsers ${opts.user}`,
    'Subsystem sftp internal-sftp',
    `SetEnv PATH=${opts.binDir}:${opts.systemPath ?? '/usr/local/bin:/usr/bin:/bin'}`,
    'PrintMotd no',
    'MaxStartups 100:30:200',
    'MaxSessions 100',
    'LogLevel VERBOSE',
    '',
  ].join('\n');
}

/** The files of one sshd instance, all in its state directory. */
interface SshdFiles {
  config: string;
  pid: string;
  log: string;
}

/** Starts sshd; a port taken between the probe and the bind is retried twice with another. */
export async function startSshd(opts: SshdOptions): Promise<Sshd> {
  const files: SshdFiles = {
    config: path.join(opts.stateDir, 'sshd_config'),
    pid: path.join(opts.stateDir, 'sshd.pid'),
    log: path.join(opts.stateDir, 'sshd.log'),
  };
  for (let attempt = 1; ; attempt++) {
    const port = opts.netnsName ? 22 : await freePort();
    await writeFile(files.config, sshdConfig(opts, port, files.pid), { mode: 0o600 });
    const launched = await launchSshd(opts.netnsName, files);
    if (launched.pid !== undefined) return { pid: launched.pid, port, logFile: files.log };
    const log = existsSync(files.log) ? readFileSync(files.log, 'utf8') : '';
    if (attempt >= 3 || !/Address already in use|Bind to port/i.test(log)) {
      throw new Error(
        `sshd did not start (${launched.exited ? 'exited' : 'no PidFile after 10 s'}): ${log.trim().slice(-1500)}`,
      );
    }
  }
}

/** Spawns sshd detached and waits up to 10 s for its PidFile; a hung one is killed. */
async function launchSshd(
  netnsName: string | undefined,
  files: SshdFiles,
): Promise<{ pid?: number; exited: boolean }> {
  const cmd = netnsName ? 'ip' : SSHD;
  const args = [
    ...(netnsName ? ['netns', 'exec', netnsName, SSHD] : []),
    '-D',
    '-e',
    '-f',
    files.config,
  ];
  const logFd = openSync(files.log, 'a');
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  child.unref();
  let exited = false;
  child.once('exit', () => (exited = true));
  for (let waited = 0; waited < 10_000 && !exited; waited += 25) {
    const text = existsSync(files.pid) ? readFileSync(files.pid, 'utf8').trim() : '';
    if (/^\d+$/.test(text)) return { pid: Number(text), exited };
    await sleep(25);
  }
  if (!exited && child.pid) killAll([child.pid], 'SIGKILL');
  return { exited };
}
