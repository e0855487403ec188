// The committed actions/*/dist bundles must be exactly what a fresh `npm run build` produces.
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
// @ts-expect-error plain ESM build script without types
import { listActions } from '../../scripts/build.mjs';

const root = path.resolve(import.meta.dirname, '../..');
const buildScript = path.join(root, 'scripts/build.mjs');

function tree(dir: string, base = dir): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir)) {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) Object.assign(out, tree(full, base));
    else
      out[path.relative(base, full)] = createHash('sha256')
        .update(readFileSync(full))
        .digest('hex');
  }
  return out;
}

// Every action as its own test, each with its own time: ncc takes 15-60 s per bundle on 2 cores
// shared with the rest of the suite, so one test for all of them outgrew any one timeout.
const names = (await listActions()) as string[];

describe('committed dist', () => {
  it('covers the actions', () => {
    expect(names.length).toBeGreaterThanOrEqual(3);
  });

  it.each(names)(
    'actions/%s/dist matches a fresh build',
    async (name) => {
      const out = mkdtempSync(path.join(os.tmpdir(), 'check-dist-'));
      try {
        // A process of its own: ncc keeps what it built, and seven bundles in one heap run out.
        const built = spawnSync(process.execPath, [buildScript, name, '--out', out], {
          encoding: 'utf8',
        });
        expect({ name, status: built.status, stderr: built.stderr }).toEqual({
          name,
          status: 0,
          stderr: '',
        });
        const fresh = tree(path.join(out, name, 'dist'));
        const committed = tree(path.join(root, 'actions', name, 'dist'));
        expect({ name, files: committed }).toEqual({ name, files: fresh });
        // One byte per character in V8 (scripts/build.mjs latin1Source).
        for (const file of Object.keys(committed).filter((f) => f.endsWith('.js'))) {
          const text = readFileSync(path.join(root, 'actions', name, 'dist', file), 'utf8');
          expect({ file, wide: /[\u0100-\uffff]/.test(text) }).toEqual({ file, wide: false });
        }
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
    240_000,
  );
});
