// `npm test` is the one command CI runs, so it also holds the static checks: types, lint, format.
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');

function check(bin: string, args: string[]): { code: number | null; output: string } {
  const result = spawnSync(process.execPath, [path.join(root, 'node_modules', bin), ...args], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  return { code: result.status, output: `${result.stdout}${result.stderr}`.trim() };
}

describe('static checks', () => {
  it('typechecks (tsc --noEmit, strict)', () => {
    const { code, output } = check('typescript/bin/tsc', ['--noEmit', '-p', 'tsconfig.json']);
    expect(output).toBe('');
    expect(code).toBe(0);
  }, 180_000);

  it('lints clean (eslint)', () => {
    const { code, output } = check('eslint/bin/eslint.js', ['.', '--max-warnings', '0']);
    expect(output).toBe('');
    expect(code).toBe(0);
  }, 180_000);

  it('is formatted (prettier --check)', () => {
    const { code, output } = check('prettier/bin/prettier.cjs', [
      '--check',
      '--log-level',
      'warn',
      '.',
    ]);
    expect(output).toBe('');
    expect(code).toBe(0);
  }, 120_000);
});
