// The habits of a well-kept Actions repository, checked so they do not rot: Dependabot looks where
// the things it bumps are.
import { describe, expect, it } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

const root = path.resolve(import.meta.dirname, '../..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

type Update = {
  'package-ecosystem': string;
  directory?: string;
  directories?: string[];
  schedule?: { interval?: string };
  groups?: Record<string, unknown>;
};

describe('.github/dependabot.yml', () => {
  const config = parseYaml(read('.github/dependabot.yml')) as {
    version: number;
    updates: Update[];
  };
  const dirs = (u: Update) => u.directories ?? [u.directory ?? ''];
  // What each ecosystem reads in its directory: without it Dependabot finds nothing to bump.
  const manifest: Record<string, (dir: string) => string[]> = {
    'github-actions': () => ['.github/workflows'],
    npm: (dir) => [path.join(dir, 'package.json'), path.join(dir, 'package-lock.json')],
    docker: (dir) => [path.join(dir, 'Dockerfile')],
  };

  it('is version 2 and covers github-actions, npm and docker', () => {
    expect(config.version).toBe(2);
    expect(config.updates.map((u) => u['package-ecosystem']).sort()).toEqual([
      'docker',
      'github-actions',
      'npm',
    ]);
  });

  it.each(config.updates.map((u) => [u['package-ecosystem'], u] as const))(
    '%s: its directory exists and holds what it updates, on a schedule',
    (ecosystem, update) => {
      expect(update.schedule?.interval).toMatch(/^(daily|weekly|monthly)$/);
      for (const dir of dirs(update)) {
        expect(dir).toMatch(/^\//);
        const abs = path.join(root, dir);
        expect(existsSync(abs)).toBe(true);
        const wanted = manifest[ecosystem]?.(dir) ?? [];
        expect(wanted.length).toBeGreaterThan(0);
        for (const file of wanted) expect(existsSync(path.join(root, file))).toBe(true);
      }
    },
  );

  it('groups the npm updates (weekly)', () => {
    const npm = config.updates.find((u) => u['package-ecosystem'] === 'npm');
    expect(npm?.schedule?.interval).toBe('weekly');
    expect(Object.keys(npm?.groups ?? {}).length).toBeGreaterThan(0);
  });
});
