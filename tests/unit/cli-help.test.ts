// The bin answers --help, <command> --help and --version from bin/help.mjs alone: the same text as
// the CLI reading action.yml, loading no dependency (no tsx, yaml, SDK, ssh2 or action main).
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadActionSpecs } from '../../src/cli/action-runner.js';
import { parseArgs } from '../../src/cli/args.js';
import { helpAnswer } from '../../src/cli/help.js';
// @ts-expect-error plain ESM build script without types
import { buildCliHelp, helpBundlePath } from '../../scripts/build-cli-help.mjs';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const bin = path.join(repoRoot, 'bin/comfyume-ops.mjs');

/** Runs the bin with the module recorder preloaded; returns its result and what it loaded. */
function runRecorded(args: string[]) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cli-help-'));
  const record = path.join(dir, 'modules');
  try {
    const result = spawnSync(process.execPath, [bin, ...args], {
      encoding: 'utf8',
      env: {
        ...process.env,
        RECORD_MODULES: record,
        NODE_OPTIONS: `--import=${path.join(repoRoot, 'tests/helpers/record-modules.mjs')}`,
      },
    });
    const loaded = [...new Set(readFileSync(record, 'utf8').split('\n').filter(Boolean))];
    return { ...result, loaded };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const helpArgs = [
  ['--help'],
  [],
  ['help'],
  ['--version'],
  ['version'],
  ['backup', '--help'],
  ['sync-models', '--help'],
  ['deploy', '--help'],
  ['restore-drill', '--help'],
  ['verify-host', '--help'],
  ['provision-host', '--help'],
  ['sandbox', '--help'],
  ['backup', '--host', 'gpu', '--ssh-private-key-file', '/nonexistent/key', '--help'],
];

describe('comfyume-ops help', () => {
  it('bin/help.mjs is exactly a fresh build (scripts/build-cli-help.mjs) of src/cli and action.yml', async () => {
    const fresh = (await buildCliHelp()) as string;
    const fix =
      'stale after a change to src/cli or an action.yml: run node scripts/build-cli-help.mjs';
    expect({
      'bin/help.mjs': readFileSync(helpBundlePath as string, 'utf8') === fresh,
      fix,
    }).toEqual({
      'bin/help.mjs': true,
      fix,
    });
  });

  it.each(helpArgs.map((args) => [args.join(' ') || '(no arguments)', args] as const))(
    'the bin prints what the CLI prints from action.yml, with its exit code: %s',
    async (_name, args) => {
      const expected = await helpAnswer(
        parseArgs([...args], { readFiles: false }),
        loadActionSpecs,
      );
      expect(expected).toBeDefined();
      const got = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
      expect({ stdout: got.stdout, code: got.status, stderr: got.stderr }).toEqual({
        stdout: expected?.stdout,
        code: expected?.code,
        stderr: '',
      });
    },
  );

  it('help and --version load only the bin and its bundle: no tsx, yaml, @aws-sdk, ssh2 or action main', () => {
    for (const args of [
      ['--help'],
      ['backup', '--help'],
      ['sync-models', '--help'],
      ['--version'],
    ]) {
      const run = runRecorded(args);
      expect(run.status).toBe(0);
      const files = run.loaded.filter((u) => u.startsWith('file:'));
      // The recorder saw the process (the entry and the bundle are files it loaded).
      expect(files).toEqual(
        expect.arrayContaining([`file://${bin}`, `file://${path.join(repoRoot, 'bin/help.mjs')}`]),
      );
      expect({
        args,
        others: files.filter((u) => !u.startsWith(`file://${repoRoot}/bin/`)),
      }).toEqual({ args, others: [] });
    }
  });

  it('control: a command that runs goes through tsx, main.ts and yaml, and the recorder sees them', () => {
    const run = runRecorded(['verify-host', '--hots', 'gpu']);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('unknown flag --hots for verify-host');
    const loaded = run.loaded.join('\n');
    expect(loaded).toMatch(/\/node_modules\/tsx\//);
    expect(loaded).toMatch(/\/node_modules\/yaml\//);
    expect(loaded).toContain(`file://${repoRoot}/src/cli/main.ts`);
  });

  it('help never reads a --NAME-file (a missing one does not stop it; the bin runs no second process)', () => {
    const run = runRecorded(['backup', '--ssh-private-key-file', '/nonexistent/key', '--help']);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('usage: comfyume-ops backup');
    expect(run.loaded.some((u) => u.includes('/node_modules/'))).toBe(false);
  });
});
