#!/usr/bin/env node
// Runs the TypeScript CLI through tsx (installed with the repository's dev dependencies).
// --help, <command> --help and --version are answered here from bin/help.mjs, a small prebuilt
// bundle (scripts/build-cli-help.mjs): no second node, no tsx, no SDK (~0.1 s instead of ~1 s).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const { answer, specs } = await import('./help.mjs');
let help;
try {
  help = await answer(argv, specs);
} catch {
  // A bad command line: the CLI itself reports it the usual way.
}
if (help) {
  process.stdout.write(help.stdout);
  process.exitCode = help.code;
} else {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const result = spawnSync(
    process.execPath,
    [
      '--openssl-legacy-provider',
      '--import',
      import.meta.resolve('tsx'),
      path.join(root, 'src/cli/main.ts'),
      ...argv,
    ],
    { stdio: 'inherit', cwd: process.cwd() },
  );
  process.exit(result.status ?? 1);
}
