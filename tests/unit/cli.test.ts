import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rewriteWorkflowCommands } from '../../src/cli/action-runner.js';
import { parseArgs, withEnvInputs } from '../../src/cli/args.js';

describe('cli args', () => {
  it('parses --name value, --name=value, bare flags and --name-file', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cli-'));
    const keyFile = path.join(dir, 'key');
    writeFileSync(keyFile, 'KEY-MATERIAL\n');
    expect(
      parseArgs([
        'backup',
        '--host',
        'gpu',
        '--port=2222',
        '--dry-run',
        '--ssh-private-key-file',
        keyFile,
      ]),
    ).toEqual({
      command: 'backup',
      flags: { host: 'gpu', port: '2222', 'dry-run': 'true', 'ssh-private-key': 'KEY-MATERIAL\n' },
    });
    expect(() =>
      parseArgs(['backup', '--ssh-private-key-file', path.join(dir, 'missing')]),
    ).toThrow(/Input 'ssh-private-key-file' is invalid/);
    expect(() => parseArgs(['backup', 'extra'])).toThrow(/one command/);
  });
  it('fills inputs from COMFYUME_ variables without overriding flags', () => {
    expect(
      withEnvInputs(
        ['r2-secret-access-key', 'host'],
        { host: 'a' },
        { COMFYUME_R2_SECRET_ACCESS_KEY: 's', COMFYUME_HOST: 'b' },
      ),
    ).toEqual({ host: 'a', 'r2-secret-access-key': 's' });
  });
});

describe('workflow commands on a terminal', () => {
  it('drops add-mask lines (they carry the secret) and turns annotations into plain lines', () => {
    const text =
      '::add-mask::hunter2\n::group::Upload\nsent 3 MiB\n::endgroup::\n::warning::optional item missing%0Asecond line\n';
    expect(rewriteWorkflowCommands(text)).toBe(
      '== Upload\nsent 3 MiB\nwarning: optional item missing\nsecond line\n',
    );
  });
});
