// actions/deploy-serverless/README.md documents exactly the inputs and outputs of action.yml.
import { expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

const dir = path.resolve(import.meta.dirname, '../../actions/deploy-serverless');
const action = parseYaml(readFileSync(path.join(dir, 'action.yml'), 'utf8')) as {
  inputs: Record<string, { required?: boolean; default?: string }>;
  outputs: Record<string, unknown>;
};
const readme = readFileSync(path.join(dir, 'README.md'), 'utf8');
const rows = (first: string) =>
  readme
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => l.split(' | ').map((c) => c.replace(/^\| /, '').trim()))
    .filter((cells) => (first === 'output' ? cells.length === 2 : cells.length === 4));

it('lists every input with its required flag and default, and nothing else', () => {
  const documented = rows('input').map(([name = '', required, def]) => [
    name.replace(/`/g, ''),
    required,
    def?.replace(/`/g, ''),
  ]);
  const declared = Object.entries(action.inputs).map(([name, spec]) => [
    name,
    spec.required ? 'yes' : 'no',
    spec.default ?? '',
  ]);
  expect(documented).toEqual(declared);
});

it('lists every output', () => {
  expect(rows('output').map(([name = '']) => name.replace(/`/g, ''))).toEqual(
    Object.keys(action.outputs),
  );
});
