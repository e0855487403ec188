#!/usr/bin/env node
// Bundles each action with ncc into actions/<name>/dist (committed; a test checks it is fresh).
// Usage: node scripts/build.mjs [--out DIR] [name ...]   (DIR gets <name>/dist/... instead)
import { createRequire } from 'node:module';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const ncc = require('@vercel/ncc');
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export async function listActions() {
  const entries = await readdir(path.join(root, 'src/actions'), { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && e.name !== 'shared')
    .map((e) => e.name)
    .sort();
}

/**
 * Escapes every UTF-16 unit above U+00FF as \uXXXX. V8 stores a script whose characters all fit
 * in Latin-1 at one byte per character; a single "→" anywhere makes the whole 4.7 MB bundle two
 * bytes per character (about 5 MiB more RSS for the run). Inside strings, templates, regexes and
 * identifiers the escape means the same character; inside comments it is just text.
 */
export function latin1Source(code, file) {
  return code.replace(/[\u0100-\uffff]/g, (c, at) => {
    let slashes = 0;
    while (code[at - 1 - slashes] === '\\') slashes++;
    if (slashes % 2 === 1)
      throw new Error(`${file}: cannot escape "${c}" after a backslash at ${at}`);
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

export async function buildAction(name, outRoot = path.join(root, 'actions')) {
  const entry = path.join(root, 'src/actions', name, 'index.ts');
  const outDir = path.join(outRoot, name, 'dist');
  const { code, assets } = await ncc(entry, {
    cache: false,
    license: 'licenses.txt',
    minify: false,
    sourceMap: false,
    quiet: true,
    target: 'es2022',
    // ssh2's optional native parts are left out: a compiled .node is not reproducible across
    // machines (nor loadable by another Node ABI). ssh2 catches the failed require and uses its
    // pure-JS crypto (testing.md: ~65 MiB/s in a bundle).
    externals: ['cpu-features', './crypto/build/Release/sshcrypto.node'],
  });
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  await writeFile(path.join(outDir, 'index.js'), latin1Source(code, 'index.js'));
  for (const [file, asset] of Object.entries(assets ?? {})) {
    const target = path.join(outDir, file);
    await mkdir(path.dirname(target), { recursive: true });
    const source = file.endsWith('.js') ? latin1Source(String(asset.source), file) : asset.source;
    await writeFile(target, source, { mode: asset.permissions });
  }
  return outDir;
}

async function main() {
  const args = process.argv.slice(2);
  let outRoot;
  const outAt = args.indexOf('--out');
  if (outAt >= 0) {
    outRoot = path.resolve(args[outAt + 1] ?? '');
    args.splice(outAt, 2);
  }
  const names = args.length > 0 ? args : await listActions();
  for (const name of names) {
    const started = Date.now();
    const dir = await buildAction(name, outRoot);
    console.log(
      `built ${name} → ${path.relative(process.cwd(), dir)} in ${Date.now() - started} ms`,
    );
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err?.stack ?? String(err));
    process.exit(1);
  });
}
