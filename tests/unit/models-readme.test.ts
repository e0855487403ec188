// actions/sync-models/README.md documents exactly the inputs and outputs of action.yml.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from '@jest/globals';
import { parse as parseYaml } from 'yaml';

const dir = path.resolve(import.meta.dirname, '../../actions/sync-models');
const action = parseYaml(readFileSync(path.join(dir, 'action.yml'), 'utf8')) as {
  inputs: Record<string, { required?: boolean; default?: string }>;
  outputs: Record<string, unknown>;
};
const readme = readFileSync(path.join(dir, 'README.md'), 'utf8');
const rows = (header: RegExp): string[][] => {
  const lines = readme.split('\n');
  const start = lines.findIndex((l) => header.test(l));
  const out: string[][] = [];
  for (let i = start + 2; start >= 0 && lines[i]?.startsWith('| `'); i++) {
    out.push(
      (lines[i] ?? '').split(' | ').map((c) => c.replace(/^\| /, '').replace(/`/g, '').trim()),
    );
  }
  return out;
};

it('lists every input with its required flag and default, in order', () => {
  expect(
    rows(/^\| input +\| required +\| default +\| description +\|$/).map(([n, r, d]) => [n, r, d]),
  ).toEqual(
    Object.entries(action.inputs).map(([n, s]) => [n, s.required ? 'yes' : 'no', s.default ?? '']),
  );
});

it('lists every output', () => {
  expect(rows(/^\| output +\| description +\|$/).map(([n]) => n)).toEqual(
    Object.keys(action.outputs),
  );
});
