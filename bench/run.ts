// `npm run bench [-- area ...]`: runs each benchmark area (bench/<area>.ts exporting run(), which
// returns a markdown report) and writes the whole report to .bench/report.md as well as stdout.
// Benchmarks compare tools side by side in one run and report medians and ratios; they never
// assert wall-clock time. BENCH_SCALE=small shrinks the data for a quick check. Areas in OPT_IN
// (minutes to hours) run only when named: `npm run bench -- scale`.
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

const benchDir = import.meta.dirname;

const OPT_IN = ['scale'];

async function areas(): Promise<string[]> {
  const files = await readdir(benchDir);
  return files
    .filter((f) => f.endsWith('.ts') && !['run.ts'].includes(f) && !f.startsWith('_'))
    .map((f) => f.slice(0, -3))
    .sort();
}

async function main(): Promise<void> {
  const available = await areas();
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const unknown = wanted.filter((a) => !available.includes(a));
  if (unknown.length > 0) {
    throw new Error(
      `unknown benchmark area(s): ${unknown.join(', ')}; available: ${available.join(', ')}`,
    );
  }
  const selected = wanted.length > 0 ? wanted : available.filter((a) => !OPT_IN.includes(a));
  const parts = [
    `# comfyume-ops benchmarks (${new Date().toISOString()}, scale ${process.env.BENCH_SCALE ?? 'full'})`,
    '',
  ];
  for (const area of selected) {
    process.stderr.write(`== bench ${area}\n`);
    const mod = (await import(path.join(benchDir, `${area}.ts`))) as { run: () => Promise<string> };
    const report = await mod.run();
    process.stdout.write(`${report}\n`);
    parts.push(report, '');
  }
  const out = path.join(benchDir, '..', '.bench');
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'report.md'), parts.join('\n'));
  process.stderr.write(`report written to .bench/report.md\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
