// `comfyume-ops --help`, `<command> --help` and `--version` (answered by bin/help.mjs, no tsx)
// beside the floor, `node -e 0`, and the full CLI path (tsx + src/cli/main.ts, what every help
// call cost before the bundle). Interleaved, medians of BENCH_RUNS (at least 5).
import path from 'node:path';
import { formatBytes } from '../src/lib/format.js';
import { tableToMarkdown } from '../src/lib/summary.js';
import { interleaved, median, timed, type Contender, type Measured } from './measure.js';

const RUNS = Math.max(5, Number(process.env.BENCH_RUNS ?? 9));
const repoRoot = path.resolve(import.meta.dirname, '..');
const bin = path.join(repoRoot, 'bin/comfyume-ops.mjs');
const node = process.execPath;

export async function run(): Promise<string> {
  // The caller's environment (what a user's shell gives: NODE_EXTRA_CA_CERTS alone costs ~35 ms
  // of every node start on these machines), without a NODE_OPTIONS meant for the bench itself.
  const { NODE_OPTIONS: _ignored, ...env } = process.env;
  const commands: [string, string[]][] = [
    ['node -e 0 (floor)', ['-e', '0']],
    ['comfyume-ops --help', [bin, '--help']],
    ['comfyume-ops backup --help', [bin, 'backup', '--help']],
    ['comfyume-ops --version', [bin, '--version']],
    [
      'tsx src/cli/main.ts --help (full path)',
      ['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), '--help'],
    ],
  ];
  const all: Contender<Measured>[] = commands.map(([name, args]) => ({
    name,
    run: () => timed(node, args, env),
  }));
  // One warm-up of each (page cache, tsx's transform cache), not counted.
  for (const c of all) await c.run();
  const { contenders, samples } = await interleaved(all, RUNS);
  const floor = median((samples.get(commands[0]?.[0] ?? '') ?? []).map((s) => s.ms));
  const table = {
    headers: ['Command', 'Median', 'Min', 'Max', 'Over the floor', 'Peak RSS'],
    rows: contenders.map((c) => {
      const ms = (samples.get(c.name) ?? []).map((s) => s.ms);
      const m = median(ms);
      return [
        c.name,
        `${m.toFixed(0)} ms`,
        `${Math.min(...ms).toFixed(0)} ms`,
        `${Math.max(...ms).toFixed(0)} ms`,
        Number.isNaN(floor) ? '' : `${m >= floor ? '+' : ''}${(m - floor).toFixed(0)} ms`,
        formatBytes(median((samples.get(c.name) ?? []).map((s) => s.rssKiB)) * 1024),
      ];
    }),
  };
  return [
    '## CLI start-up (help and version)',
    '',
    `${RUNS} runs of each, interleaved, after one warm-up; wall time from spawn to exit (Node ${process.version}).`,
    `Commands: \`${node} ${'<args>'}\` with args as in the first column (bin = bin/comfyume-ops.mjs).`,
    '',
    tableToMarkdown(table),
    '',
    'Reproduce: `npm run bench -- cli` (BENCH_RUNS, BENCH_ONLY as in bench/measure.ts).',
  ].join('\n');
}
