// How the benchmarks measure: a command under /usr/bin/time (wall time from hrtime, peak RSS
// from time), medians, BENCH_ONLY, and contenders run interleaved so that machine noise hits
// every one alike.
import { spawn } from 'node:child_process';
import { closeSync, openSync, statSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { tableToMarkdown } from '../src/lib/summary.js';
import { accountCpu } from './cpu.js';

export interface Measured {
  ms: number;
  rssKiB: number;
  /** Bytes the command wrote to stdout (when it went to a file). */
  outBytes: number;
  /** CPU milliseconds by process name while it ran (set by `interleaved`). */
  cpu?: Map<string, number>;
}

/** Runs a command under `/usr/bin/time`; its stdout goes to `stdoutFile` when given. */
export async function timed(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  stdoutFile?: string,
): Promise<Measured> {
  const rssFile = path.join(
    os.tmpdir(),
    `bench-rss-${process.pid}-${Math.random().toString(36).slice(2)}`,
  );
  const started = process.hrtime.bigint();
  // Stdout goes to the file directly, not through this process: the bench's own CPU is shared
  // with the contender on the same cores.
  const out = stdoutFile ? openSync(stdoutFile, 'w') : undefined;
  const child = spawn('/usr/bin/time', ['-f', '%M', '-o', rssFile, cmd, ...args], {
    env,
    stdio: ['ignore', out ?? 'pipe', 'pipe'],
  });
  if (out !== undefined) closeSync(out);
  // The end of what it printed, for the error when it fails.
  let tail = '';
  const keep = (d: Buffer) => (tail = (tail + d.toString()).slice(-4000));
  child.stderr?.on('data', keep);
  child.stdout?.on('data', keep);
  const code = await new Promise<number | null>((r) => child.on('close', r));
  const outBytes = stdoutFile ? statSync(stdoutFile).size : 0;
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const timeLine = (await readFile(rssFile, 'utf8').catch(() => '')).trim().split('\n').pop();
  await rm(rssFile, { force: true });
  if (code !== 0) throw new Error(`${cmd} ${args.slice(0, 3).join(' ')} exited ${code}:\n${tail}`);
  return { ms, rssKiB: Number(timeLine ?? 0), outBytes };
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
};

export interface Contender<S extends Measured> {
  name: string;
  run: () => Promise<S>;
}

/**
 * Runs each contender `runs` times, interleaved, and returns their samples by name. BENCH_ONLY
 * keeps only the contenders whose name contains one of its comma-separated words.
 */
export async function interleaved<S extends Measured>(
  all: Contender<S>[],
  runs: number,
): Promise<{ contenders: Contender<S>[]; samples: Map<string, S[]> }> {
  const only = (process.env.BENCH_ONLY ?? '').split(',').filter((w) => w !== '');
  const contenders = all.filter((c) => only.length === 0 || only.some((w) => c.name.includes(w)));
  const samples = new Map<string, S[]>();
  for (let i = 0; i < runs; i++) {
    for (const c of contenders) {
      const account = await accountCpu(benchLabel);
      const s = await c.run();
      s.cpu = await account.stop();
      samples.set(c.name, [...(samples.get(c.name) ?? []), s]);
      process.stderr.write(`  ${c.name}: ${(s.ms / 1000).toFixed(2)} s, ${s.rssKiB} KiB\n`);
    }
  }
  return { contenders, samples };
}

/** The bench's own process serves the R2 emulator and the discard sink. */
const benchLabel = (pid: string, comm: string): string =>
  pid === String(process.pid) ? 'bench (R2 emulator, sink)' : comm === 'MainThread' ? 'node' : comm;

/**
 * Which process held the cores: the median CPU seconds of each process name per contender
 * (names under 3 % of every contender's total are summed as "other"), the total, and the cores
 * busy on average (total ÷ wall time).
 */
export function cpuTable<S extends Measured>(
  contenders: Contender<S>[],
  samples: Map<string, S[]>,
): string {
  const totals = (ss: S[]) =>
    ss.map((s) => [...(s.cpu ?? new Map()).values()].reduce((a, b) => a + b, 0));
  const names = new Set<string>();
  for (const c of contenders) {
    const ss = samples.get(c.name) ?? [];
    const total = median(totals(ss));
    for (const s of ss)
      for (const [name, ms] of s.cpu ?? []) if (ms >= total * 0.03) names.add(name);
  }
  const columns = [...names].sort();
  const rows = contenders.map((c) => {
    const ss = samples.get(c.name) ?? [];
    const of = (name: string) => median(ss.map((s) => s.cpu?.get(name) ?? 0));
    const total = median(totals(ss));
    const other = median(
      ss.map((s) =>
        [...(s.cpu ?? new Map<string, number>())].reduce(
          (a, [name, ms]) => (names.has(name) ? a : a + ms),
          0,
        ),
      ),
    );
    const wall = median(ss.map((s) => s.ms));
    return [
      c.name,
      ...columns.map((n) => (of(n) / 1000).toFixed(2)),
      (other / 1000).toFixed(2),
      (total / 1000).toFixed(2),
      `${(total / wall).toFixed(2)} of ${os.cpus().length}`,
    ];
  });
  return tableToMarkdown({
    headers: [
      'contender',
      ...columns.map((n) => `${n} (CPU s)`),
      'other',
      'total CPU s',
      'cores busy',
    ],
    rows,
  });
}
