// Dropping an SSH link on the fixture host, for tests of what a client sees when the link dies.
import { readFileSync } from 'node:fs';
import type { SshHost } from '../../src/sandbox/ssh-host.js';

const isSshd = (pid: number): boolean => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim().startsWith('sshd');
  } catch {
    return false;
  }
};

/**
 * Kills the sshd processes of the sessions opened since `before` (host.sessionPids() taken before
 * connecting). Only sshd: were the shell killed first, sshd could still report its exit signal,
 * and that is a different failure than a dropped link. `cleanup()` kills what is left.
 */
export function dropLink(host: SshHost, before: Set<number>): { killed: number; cleanup(): void } {
  const session = host.sessionPids().filter((p) => !before.has(p));
  const sshd = session.filter(isSshd);
  for (const pid of sshd) process.kill(pid, 'SIGKILL');
  return {
    killed: sshd.length,
    cleanup() {
      for (const pid of session.filter((p) => !sshd.includes(p))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  };
}
