// Which process holds the cores: CPU time by process name while one contender runs, sampled from
// /proc. Counted are the bench's own process (it serves the R2 emulator and the discard sink) and
// every descendant: the contender's command and the sshd fixture's sshd, tar and zstd. Other
// processes on the machine are left out, though they still take their share of the cores. A
// process that exits between two samples loses at most one interval of its CPU time. Sampling
// reads /proc/<pid>/stat of every process synchronously: about 4 % of one core at 10 samples a
// second, the same for every contender.
import { readdirSync, readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux for every architecture the runner has
const INTERVAL_MS = 100;

interface Seen {
  name: string;
  ticks: number;
  /** Ticks it had when the accounting started (a process that was already running). */
  base: number;
}

interface Stat {
  comm: string;
  ppid: string;
  ticks: number;
}

function readStat(pid: string): Stat | undefined {
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
  // After comm: state(0) ppid(1) … utime(11) stime(12).
  return { comm, ppid: fields[1] ?? '', ticks: Number(fields[11]) + Number(fields[12]) };
}

class Sampler {
  private readonly seen = new Map<string, Seen>();
  /** The bench's process tree as last seen. */
  private readonly tree = new Set<string>([String(process.pid)]);

  constructor(private readonly label: (pid: string, comm: string) => string) {}

  sample(first: boolean): void {
    const stats = new Map<string, Stat>();
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const s = readStat(pid);
      if (s) stats.set(pid, s);
    }
    // An exited process leaves the tree (its pid may come back as another's).
    for (const pid of this.tree) if (!stats.has(pid)) this.tree.delete(pid);
    // /proc is not in parent-before-child order: grow the tree until nothing joins.
    for (let grew = true; grew;) {
      grew = false;
      for (const [pid, s] of stats) {
        if (this.tree.has(pid) || !this.tree.has(s.ppid)) continue;
        this.tree.add(pid);
        grew = true;
      }
    }
    for (const [pid, s] of stats) {
      if (!this.tree.has(pid)) continue;
      const name = this.label(pid, s.comm);
      const seen = this.seen.get(pid);
      if (seen && s.ticks < seen.ticks) {
        // A new process under a reused pid: keep the old one's total under another key.
        this.seen.set(`${pid}:${this.seen.size}`, seen);
        this.seen.set(pid, { name, ticks: s.ticks, base: 0 });
      } else if (seen) {
        // The same process, perhaps after an exec (time → node): named by what it runs now.
        seen.ticks = s.ticks;
        seen.name = name;
      } else this.seen.set(pid, { name, ticks: s.ticks, base: first ? s.ticks : 0 });
    }
  }

  byName(): Map<string, number> {
    const byName = new Map<string, number>();
    for (const s of this.seen.values()) {
      const ms = (s.ticks - s.base) * TICK_MS;
      if (ms > 0) byName.set(s.name, (byName.get(s.name) ?? 0) + ms);
    }
    return byName;
  }
}

export interface CpuAccount {
  /** CPU milliseconds by process name, for what ran since start. */
  stop(): Promise<Map<string, number>>;
}

/** Starts accounting. `label` names a process for the report; by default its comm. */
export async function accountCpu(
  label: (pid: string, comm: string) => string = (_pid, comm) => comm,
): Promise<CpuAccount> {
  const sampler = new Sampler(label);
  sampler.sample(true);
  const timer = setInterval(() => sampler.sample(false), INTERVAL_MS);
  return {
    async stop() {
      clearInterval(timer);
      sampler.sample(false);
      return Promise.resolve(sampler.byName());
    },
  };
}
