// Which process holds the cores: CPU time by process name while one contender runs, sampled from
// /proc (every process on the machine, so the sshd fixture's tar, zstd and sshd children count,
// and so does the bench's own process, which serves the R2 emulator and the discard sink). A
// process that exits between two samples loses at most one interval of its CPU time; each
// sample reads /proc/<pid>/stat of every process synchronously (measured: about 4 % of one core at 10 samples a second, the same for every contender).
import { readdirSync, readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux for every architecture the runner has
const INTERVAL_MS = 100;

interface Seen {
  name: string;
  ticks: number;
  /** Ticks it had when the accounting started (a process that was already running). */
  base: number;
}

function readStat(pid: string): { comm: string; ticks: number } | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined; // it exited
  }
  // comm is in parentheses and may itself hold spaces or parentheses: cut at the last ')'.
  const close = stat.lastIndexOf(')');
  const comm = stat.slice(stat.indexOf('(') + 1, close);
  const fields = stat.slice(close + 2).split(' ');
  // After comm: state(0) … utime(11) stime(12).
  return { comm, ticks: Number(fields[11]) + Number(fields[12]) };
}

function sample(
  into: Map<string, Seen>,
  first: boolean,
  label: (pid: string, comm: string) => string,
): void {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const s = readStat(pid);
    if (!s) continue;
    const seen = into.get(pid);
    if (seen && s.ticks < seen.ticks) {
      // A new process under a reused pid: keep the old one's total under another key.
      into.set(`${pid}:${into.size}`, seen);
      into.set(pid, { name: label(pid, s.comm), ticks: s.ticks, base: 0 });
    } else if (seen) {
      // The same process, perhaps after an exec (time → node): named by what it runs now.
      seen.ticks = s.ticks;
      seen.name = label(pid, s.comm);
    } else into.set(pid, { name: label(pid, s.comm), ticks: s.ticks, base: first ? s.ticks : 0 });
  }
}

export interface CpuAccount {
  /** CPU milliseconds by process name, for what ran since start. */
  stop(): Promise<Map<string, number>>;
}

/**
 * Starts accounting. `label` names a process for the report (e.g. the bench's own pid as the
 * R2 emulator); by default its comm.
 */
export async function accountCpu(
  label: (pid: string, comm: string) => string = (_pid, comm) => comm,
): Promise<CpuAccount> {
  const seen = new Map<string, Seen>();
  sample(seen, true, label);
  const timer = setInterval(() => sample(seen, false, label), INTERVAL_MS);
  return {
    async stop() {
      clearInterval(timer);
      sample(seen, false, label);
      const byName = new Map<string, number>();
      for (const s of seen.values()) {
        const ms = (s.ticks - s.base) * TICK_MS;
        if (ms > 0) byName.set(s.name, (byName.get(s.name) ?? 0) + ms);
      }
      return byName;
    },
  };
}
