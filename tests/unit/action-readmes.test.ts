// Each actions/<name>/README.md documents exactly the inputs and outputs of its action.yml:
// same names, same order, same required flags and defaults.
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

const actionsDir = path.resolve(import.meta.dirname, '../../actions');

describe.each([
  'backup-verda',
  'sync-models',
  'deploy-serverless',
  'restore-drill',
  'verify-host',
  'restore-host',
  'provision-host',
])('actions/%s/README.md', (name) => {
  const dir = path.join(actionsDir, name);
  const action = parseYaml(readFileSync(path.join(dir, 'action.yml'), 'utf8')) as {
    inputs: Record<string, { required?: boolean; default?: string }>;
    outputs: Record<string, unknown>;
  };
  const lines = readFileSync(path.join(dir, 'README.md'), 'utf8').split('\n');
  /** The rows of the markdown table under the header line matching `header`, backticks removed. */
  const table = (header: RegExp): string[][] => {
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
});
