#!/usr/bin/env node
// Runs the TypeScript CLI through tsx (installed with the repository's dev dependencies).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const result = spawnSync(
  process.execPath,
  [
    '--openssl-legacy-provider',
    '--import',
    import.meta.resolve('tsx'),
    path.join(root, 'src/cli/main.ts'),
    ...process.argv.slice(2),
  ],
  { stdio: 'inherit', cwd: process.cwd() },
);
process.exit(result.status ?? 1);
