// actions/backup-verda/README.md documents exactly the inputs and outputs of action.yml.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from '@jest/globals';
import { parse as parseYaml } from 'yaml';

const dir = path.resolve(import.meta.dirname, '../../actions/backup-verda');
const action = parseYaml(readFileSync(path.join(dir, 'action.yml'), 'utf8')) as {
  inputs: Record<string, { required?: boolean; default?: string }>;
  outputs: Record<string, unknown>;
};
const readme = readFileSync(path.join(dir, 'README.md'), 'utf8');
const table = (header: RegExp) => {
  const lines = readme.split('\n');
  const start = lines.findIndex((l) => header.test(l));
  const rows: string[][] = [];
  for (let i = start + 2; start >= 0 && lines[i]?.startsWith('| `'); i++) {
    rows.push(
      (lines[i] ?? '').split(' | ').map((c) => c.replace(/^\| /, '').replace(/`/g, '').trim()),
    );
  }
  return rows;
};

it('lists every input with its required flag and default, in order', () => {
  const documented = table(/^\| input +\| required +\| default +\| description +\|$/).map(
    ([n, r, d]) => [n, r, d],
  );
  const declared = Object.entries(action.inputs).map(([n, s]) => [
    n,
    s.required ? 'yes' : 'no',
    s.default ?? '',
  ]);
  expect(documented).toEqual(declared);
});

it('lists every output', () => {
  expect(table(/^\| output +\| description +\|$/).map(([n]) => n)).toEqual(
    Object.keys(action.outputs),
  );
});
