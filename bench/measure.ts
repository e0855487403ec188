// How the benchmarks measure: a command under /usr/bin/time (wall time from hrtime, peak RSS
// from time), medians, BENCH_ONLY, and contenders run interleaved so that machine noise hits
// every one alike.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface Measured {
  ms: number;
  rssKiB: number;
  /** Bytes the command wrote to stdout (when it went to a file). */
  outBytes: number;
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
  const child = spawn('/usr/bin/time', ['-f', '%M', '-o', rssFile, cmd, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // The end of what it printed, for the error when it fails.
  let tail = '';
  const keep = (d: Buffer) => (tail = (tail + d.toString()).slice(-4000));
  child.stderr.on('data', keep);
  let outBytes = 0;
  const sink = stdoutFile ? createWriteStream(stdoutFile) : undefined;
  if (sink) {
    child.stdout.on('data', (d: Buffer) => (outBytes += d.length));
    child.stdout.pipe(sink);
  } else child.stdout.on('data', keep);
  const code = await new Promise<number | null>((r) => child.on('close', r));
  if (sink)
    await new Promise<void>((r) => (sink.writableFinished ? r() : sink.once('finish', () => r())));
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
      const s = await c.run();
      samples.set(c.name, [...(samples.get(c.name) ?? []), s]);
      process.stderr.write(`  ${c.name}: ${(s.ms / 1000).toFixed(2)} s, ${s.rssKiB} KiB\n`);
    }
  }
  return { contenders, samples };
}
