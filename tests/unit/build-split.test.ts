// scripts/build.mjs splitModules: a bundle whose module map is split into part files must run
// exactly as the one file did, and a factory that cannot leave its file must stay.
import { afterAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
// @ts-expect-error plain ESM build script without types
import { PART_BYTES, splitModules } from '../../scripts/build.mjs';
import { bundleNode } from '../helpers/bundle-node.js';

interface Split {
  code: string;
  parts: { file: string; code: string }[];
}
const split = splitModules as (code: string, file: string) => Split;
const partBytes = PART_BYTES as number;

/** A factory of about `bytes` that records its id when evaluated and exports it. */
const factory = (id: number, bytes: number, body = '') =>
  `/***/ ${id}:\n/***/ ((module, __unused_webpack_exports, __nccwpck_require__) => {\n` +
  `/* ${'x'.repeat(bytes)} */\nglobalThis.order.push(${id});\n${body}module.exports = ${id};\n/***/ })`;

/** The shape of an ncc ESM index.js: the module map, the runtime, the entry. */
function bundle(factories: string[], entry: number): string {
  return (
    'import { createRequire as __WEBPACK_EXTERNAL_createRequire } from "module";\n' +
    'globalThis.order = [];\n' +
    `/******/ var __webpack_modules__ = ({\n\n${factories.join(',\n\n')}\n\n/******/ });\n` +
    '/******/ var __webpack_module_cache__ = {};\n' +
    '/******/ function __nccwpck_require__(moduleId) {\n' +
    '/******/ \tvar cached = __webpack_module_cache__[moduleId];\n' +
    '/******/ \tif (cached !== undefined) return cached.exports;\n' +
    '/******/ \tvar module = __webpack_module_cache__[moduleId] = { exports: {} };\n' +
    '/******/ \t__webpack_modules__[moduleId](module, module.exports, __nccwpck_require__);\n' +
    '/******/ \treturn module.exports;\n' +
    '/******/ }\n' +
    `/******/ var __webpack_exports__ = __nccwpck_require__(${entry});\n`
  );
}

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Writes the files and runs index.js on the bundles' Node; its stdout. */
function runFiles(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'split-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}');
  for (const [name, code] of Object.entries(files)) writeFileSync(path.join(dir, name), code);
  const run = spawnSync(bundleNode.path, [path.join(dir, 'index.js')], { encoding: 'utf8' });
  expect(run.stderr).toBe('');
  return run.stdout;
}

const asFiles = (s: Split) =>
  Object.fromEntries([['index.js', s.code], ...s.parts.map((p) => [p.file, p.code])]);

describe('splitModules', () => {
  const factories = [
    ...Array.from({ length: 12 }, (_, i) => factory(100 + i, 60_000)),
    // The entry requires every other module, then prints what ran and in which order.
    factory(
      1,
      10,
      `const got = [${Array.from({ length: 12 }, (_, i) => `__nccwpck_require__(${100 + i})`).join(', ')}, __nccwpck_require__(2), __nccwpck_require__(3), __nccwpck_require__(4)];\n` +
        `console.log(JSON.stringify({ got, order: globalThis.order }));\n`,
    ),
    // import.meta beyond the external require: its URL is this file's, so it stays.
    factory(2, 10, 'module.exports = import.meta.url.endsWith("/index.js") ? 2 : -2; return;\n'),
    // A Node builtin through ncc's external require: the same from any file beside it.
    factory(
      3,
      10,
      'module.exports = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:path").posix.sep === "/" ? 3 : -3; return;\n',
    ),
    // Reaches the runtime without being given it: stays where that binding is.
    `/***/ 4:\n/***/ ((module) => {\nglobalThis.order.push(4);\nmodule.exports = typeof __webpack_module_cache__ === 'object' ? 4 : -4;\n/***/ })`,
  ];
  const code = bundle(factories, 1);

  it('cuts the module map into parts of about PART_BYTES that run as the one file did', () => {
    const s = split(code, 'index.js');
    expect(s.parts.length).toBeGreaterThanOrEqual(Math.floor((12 * 60_000) / partBytes));
    for (const part of s.parts) {
      expect(part.file).toMatch(/^index\.part\d+\.js$/);
      expect(part.code.length).toBeLessThan(partBytes + 61_000);
    }
    const before = runFiles({ 'index.js': code });
    expect(JSON.parse(before)).toEqual({
      got: [...Array.from({ length: 12 }, (_, i) => 100 + i), 2, 3, 4],
      order: [1, ...Array.from({ length: 12 }, (_, i) => 100 + i), 2, 3, 4],
    });
    expect(runFiles(asFiles(s))).toBe(before);
  });

  it('keeps a factory that reads import.meta or names the runtime, moves an external require', () => {
    const s = split(code, 'index.js');
    const moved = s.parts.map((p) => p.code).join('\n');
    expect(s.code).toMatch(/^2:$/m);
    expect(s.code).toMatch(/^4:$/m);
    expect(moved).not.toMatch(/^[24]:$/m);
    const withExternal = s.parts.find((p) => /^3:$/m.test(p.code));
    expect(withExternal?.code).toMatch(
      /^import \{ createRequire as __WEBPACK_EXTERNAL_createRequire/,
    );
  });

  it('splits a chunk (export const modules) that the runtime loads later', () => {
    const chunk =
      'export const id = 7;\nexport const ids = [7];\nexport const modules = {\n\n' +
      Array.from({ length: 6 }, (_, i) => factory(200 + i, 60_000)).join(',\n\n') +
      '\n\n};\n';
    const s = split(chunk, '7.index.js');
    expect(s.parts.map((p) => p.file)).toEqual(
      Array.from({ length: s.parts.length }, (_, i) => `7.index.part${i + 1}.js`),
    );
    expect(s.parts.length).toBeGreaterThan(1);
    // As webpack's chunk loader does: import() the chunk, then run its factories by id.
    const index =
      'globalThis.order = [];\nconst c = await import("./7.index.js");\n' +
      'const got = Object.keys(c.modules).sort().map((k) => {\n' +
      '  const mod = { exports: {} };\n  c.modules[k](mod, mod.exports, null);\n  return mod.exports;\n});\n' +
      'console.log(JSON.stringify({ id: c.id, got }));\n';
    const out = runFiles({
      'index.js': index,
      '7.index.js': s.code,
      ...Object.fromEntries(s.parts.map((p) => [p.file, p.code])),
    });
    expect(JSON.parse(out)).toEqual({ id: 7, got: [200, 201, 202, 203, 204, 205] });
  });

  it('leaves a script without a module map as it is', () => {
    expect(split('console.log(1);\n', 'x.js')).toEqual({ code: 'console.log(1);\n', parts: [] });
  });
});
