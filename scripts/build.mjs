#!/usr/bin/env node
// Bundles each action with ncc into actions/<name>/dist (committed; a test checks it is fresh).
// Usage: node scripts/build.mjs [--out DIR] [name ...]   (DIR gets <name>/dist/... instead)
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const ncc = require('@vercel/ncc');
const acorn = require('acorn');
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export async function listActions() {
  const entries = await readdir(path.join(root, 'src/actions'), { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && e.name !== 'shared')
    .map((e) => e.name)
    .sort();
}

const LINE_SEPARATORS = /[\u2028\u2029]/;
const WIDE = /[\u0100-\uffff]/;
const TAG_ENDS = new Set(['name', ')', ']', '}', '`', 'string', 'num', 'template']);

/**
 * Where a character above U+00FF may be escaped without changing the program: inside strings,
 * untagged templates, regexes and identifiers an escape \uXXXX means the same character; inside
 * comments it is text. A line or paragraph separator in a comment or between tokens becomes a
 * newline (all three end a line). Anything else (a tagged template's raw text, other whitespace
 * between tokens) makes the build fail.
 */
function escapableRanges(code, file) {
  const ranges = [];
  // Only what holds a wide character is kept: a bundle has some 100,000 tokens, a few dozen of them.
  const add = (start, end, kind) => {
    if (WIDE.test(code.slice(start, end))) ranges.push({ start, end, kind });
  };
  const templates = []; // for each open template: is it tagged?
  let previous;
  const tokens = acorn.tokenizer(code, {
    ecmaVersion: 'latest',
    allowHashBang: true,
    allowReturnOutsideFunction: true,
    onComment: (_block, _text, start, end) => add(start, end, 'comment'),
  });
  for (const token of tokens) {
    const label = token.type.label;
    if (label === '`') {
      const opening = templates.length === 0 || previous?.type.label !== 'template';
      if (opening) templates.push(previous !== undefined && TAG_ENDS.has(previous.type.label));
      else templates.pop();
    } else if (label === 'template' || label === 'invalidTemplate') {
      add(token.start, token.end, templates.at(-1) ? 'raw' : 'text');
    } else if (label === 'string' || label === 'regexp' || label === 'name') {
      add(token.start, token.end, 'text');
    }
    previous = token;
  }
  ranges.sort((a, b) => a.start - b.start);
  return (at) => {
    const range = ranges.find((r) => r.start <= at && at < r.end);
    if (range === undefined && LINE_SEPARATORS.test(code[at] ?? '')) return 'line';
    if (range === undefined || range.kind === 'raw') {
      const where = range ? "a tagged template's raw text" : 'code outside strings and comments';
      throw new Error(
        `${file}: cannot escape U+${code.charCodeAt(at).toString(16)} in ${where} at ${at}`,
      );
    }
    return range.kind;
  };
}

/**
 * Escapes every UTF-16 unit above U+00FF as \uXXXX. V8 stores a script whose characters all fit
 * in Latin-1 at one byte per character; a single "→" anywhere makes the whole 4.7 MB bundle two
 * bytes per character (about 5 MiB more RSS for the run). See escapableRanges for where that is
 * safe; the build fails anywhere else.
 */
export function latin1Source(code, file) {
  if (!WIDE.test(code)) return code;
  const kindAt = escapableRanges(code, file);
  return code.replace(/[\u0100-\uffff]/g, (c, at) => {
    const kind = kindAt(at);
    if (kind === 'line' || (kind === 'comment' && LINE_SEPARATORS.test(c))) return '\n';
    let slashes = 0;
    while (code[at - 1 - slashes] === '\\') slashes++;
    if (slashes % 2 === 1)
      throw new Error(`${file}: cannot escape "${c}" after a backslash at ${at}`);
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/** Bytes of module code per part file (see splitModules). */
export const PART_BYTES = 256 * 1024;

/** Every node of an acorn tree under `node`, depth first. */
function* nodesUnder(node) {
  yield node;
  for (const [key, value] of Object.entries(node)) {
    if (key === 'start' || key === 'end' || key === 'loc') continue;
    for (const child of Array.isArray(value) ? value : [value])
      if (child && typeof child.type === 'string') yield* nodesUnder(child);
  }
}

/** How ncc's ESM output requires a Node builtin or an unbundled file: the same from any file beside it. */
const EXTERNAL_REQUIRE = '__WEBPACK_EXTERNAL_createRequire(import.meta.url)';
const EXTERNAL_IMPORT =
  'import { createRequire as __WEBPACK_EXTERNAL_createRequire } from "module";\n';
const RUNTIME_NAME = /^__(webpack|nccwpck)_/;
const count = (text, word) => text.split(word).length - 1;

/**
 * May this module factory leave the file? Webpack writes factories to be placed in any chunk: they
 * reach the runtime only through their parameters. Kept here: a factory that reads import.meta
 * other than to require an external (its URL is this file's), and, should webpack ever break that
 * rule, one that names a runtime binding of this file that is not its own parameter.
 */
function movable(code, property, runtimeNames) {
  const fn = property.value;
  if (property.computed || !/FunctionExpression$/.test(fn?.type ?? '')) return false;
  const text = code.slice(property.start, property.end);
  if (count(text, 'import.meta') !== count(text, EXTERNAL_REQUIRE)) return false;
  const params = new Set(fn.params.map((p) => p.name));
  for (const node of nodesUnder(fn))
    if (node.type === 'Identifier' && runtimeNames.has(node.name) && !params.has(node.name))
      return false;
  return true;
}

/**
 * Splits a bundle's module map (ncc's `var __webpack_modules__ = ({…})` in index.js, `export
 * const modules = {…}` in a chunk) into part files of about PART_BYTES each, imported statically
 * by the file. Why: V8 parses a script in one go, and the parser's scratch memory for a 4 MB
 * script peaks at about 17 MB of malloc that glibc keeps for the rest of the run (RSS). Parsed
 * as files of 256 KiB, each reuses what the previous one freed: the peak is one part's. The
 * factories run exactly as before (same code, same ids, same order of evaluation).
 */
export function splitModules(code, file) {
  const program = acorn.parse(code, { ecmaVersion: 'latest', sourceType: 'module' });
  // The webpack runtime's own top-level bindings (a chunk's are only id, ids and modules).
  const runtimeNames = new Set();
  let map;
  for (const statement of program.body) {
    const declaration =
      statement.type === 'ExportNamedDeclaration' ? statement.declaration : statement;
    if (declaration?.type === 'FunctionDeclaration' && RUNTIME_NAME.test(declaration.id.name))
      runtimeNames.add(declaration.id.name);
    if (declaration?.type !== 'VariableDeclaration') continue;
    for (const d of declaration.declarations) {
      if (d.id.type === 'Identifier' && RUNTIME_NAME.test(d.id.name)) runtimeNames.add(d.id.name);
      const name = d.id.name;
      const init = d.init?.type === 'ParenthesizedExpression' ? d.init.expression : d.init;
      const isMap =
        (name === '__webpack_modules__' && statement === declaration) ||
        (name === 'modules' && statement !== declaration);
      if (isMap && init?.type === 'ObjectExpression') map = init;
    }
  }
  if (map === undefined) return { code, parts: [] };
  const kept = [];
  const groups = [];
  let bytes = Infinity;
  for (const property of map.properties) {
    if (!movable(code, property, runtimeNames)) {
      kept.push(property);
      continue;
    }
    if (bytes + (property.end - property.start) > PART_BYTES) {
      groups.push([]);
      bytes = 0;
    }
    groups.at(-1).push(property);
    bytes += property.end - property.start;
  }
  if (groups.length === 0) return { code, parts: [] };
  const base = file.replace(/\.js$/, '');
  const text = (properties) => properties.map((p) => code.slice(p.start, p.end)).join(',\n\n');
  const parts = groups.map((group, i) => {
    const modules = text(group);
    const head = modules.includes(EXTERNAL_REQUIRE) ? EXTERNAL_IMPORT : '';
    return {
      file: `${base}.part${i + 1}.js`,
      code: `${head}export const modules = {\n\n${modules}\n\n};\n`,
    };
  });
  const imports = parts
    .map((part, i) => `import { modules as __part${i + 1} } from "./${part.file}";\n`)
    .join('');
  const spread = parts.map((_, i) => `...__part${i + 1}`).join(', ');
  const body = kept.length > 0 ? `\n${text(kept)},\n${spread}\n` : `${spread}`;
  return {
    code: imports + code.slice(0, map.start) + `{${body}}` + code.slice(map.end),
    parts,
  };
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
  const writeScript = async (file, source, mode) => {
    const split = splitModules(source, file);
    await writeFile(path.join(outDir, file), latin1Source(split.code, file), { mode });
    for (const part of split.parts)
      await writeFile(path.join(outDir, part.file), latin1Source(part.code, part.file), { mode });
  };
  await writeScript('index.js', code);
  for (const [file, asset] of Object.entries(assets ?? {})) {
    const target = path.join(outDir, file);
    await mkdir(path.dirname(target), { recursive: true });
    if (file.endsWith('.js') && !file.includes('/'))
      await writeScript(file, String(asset.source), asset.permissions);
    else {
      const source = file.endsWith('.js') ? latin1Source(String(asset.source), file) : asset.source;
      await writeFile(target, source, { mode: asset.permissions });
    }
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
  if (names.length === 1) {
    const [name] = names;
    const started = Date.now();
    const dir = await buildAction(name, outRoot);
    console.log(
      `built ${name} → ${path.relative(process.cwd(), dir)} in ${Date.now() - started} ms`,
    );
    return;
  }
  // One process per action: ncc (webpack and the TypeScript loader) keeps what it built, so seven
  // bundles in one process outgrew a 4 GB heap.
  for (const name of names) {
    const out = outRoot ? ['--out', outRoot] : [];
    const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), name, ...out], {
      stdio: 'inherit',
    });
    if (child.status !== 0)
      throw new Error(`building ${name} failed (exit ${child.status ?? child.signal})`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err?.stack ?? String(err));
    process.exit(1);
  });
}
