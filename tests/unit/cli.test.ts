import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { terminalPort } from '../../src/cli/terminal-port.js';
import {
  maskSecretInputs,
  runAction,
  setOutputs,
  writeSummary,
} from '../../src/actions/shared/port.js';
import { parseArgs, withEnvInputs } from '../../src/cli/args.js';
import { commandHelp, flagProblems } from '../../src/cli/command-help.js';
import { spawnSync } from 'node:child_process';

const repoRoot = path.resolve(import.meta.dirname, '../..');

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
    rmSync(dir, { recursive: true, force: true });
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

describe('the terminal port', () => {
  it('prints the log as plain lines, with every masked secret as *** (outputs and summary too)', async () => {
    const lines: string[] = [];
    const key =
      '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----';
    const { port, result } = terminalPort({
      inputs: { 'ssh-private-key': key, token: 'ghs_token123456' },
      write: (text) => lines.push(text),
    });
    await runAction(port, async () => {
      maskSecretInputs(port, ['ssh-private-key', 'token']);
      await port.logger.group('Upload', async () =>
        port.logger.info('sent 3 MiB with ghs_token123456'),
      );
      port.logger.warn('optional item missing');
      port.logger.debug('not shown without debug');
      setOutputs(port, { 'key-line': 'b3BlbnNzaC1rZXktdjEAAAA', items: 9 });
      await writeSummary(port, [
        '# Backup',
        { headers: ['a'], rows: [['b3BlbnNzaC1rZXktdjEAAAA']] },
      ]);
      throw new Error('the host said ghs_token123456');
    });
    expect(lines.join('')).toBe(
      '== Upload\nsent 3 MiB with ***\nwarning: optional item missing\nerror: the host said ***\n',
    );
    const { ok, outputs, summary } = result();
    expect(ok).toBe(false);
    expect(outputs).toEqual({ 'key-line': '***', items: '9' });
    expect(summary).toContain('# Backup');
    expect(summary).not.toContain('b3BlbnNzaC1rZXktdjEAAAA');
  });
});

describe('the command line, per command', () => {
  const spec = {
    description: 'Back up the host.',
    inputs: {
      host: { required: true, description: 'The host.' },
      port: { default: '22', description: 'SSH port.' },
      'ssh-private-key': { required: true, description: 'The key.' },
      bucket: { required: true, default: 'b', description: 'Has a default: never missing.' },
    },
  };

  it('names an unknown flag with the nearest input, and every missing required input at once', () => {
    expect(flagProblems('backup', spec, { hostt: 'gpu', prot: '2' })).toEqual([
      'unknown flag --hostt for backup (did you mean --host?)',
      'unknown flag --prot for backup (did you mean --port?)',
      'missing required input(s) for backup: --host, --ssh-private-key',
    ]);
    expect(flagProblems('backup', spec, { zzzzzzzz: '1' })[0]).toBe(
      'unknown flag --zzzzzzzz for backup',
    );
    expect(
      flagProblems('backup', spec, { host: 'gpu', 'ssh-private-key': 'k', json: 'true' }),
    ).toEqual([]);
  });

  it('help lists each input with required, default and how to give a secret', () => {
    const help = commandHelp('backup', 'backup-verda', spec);
    expect(help).toContain(
      'usage: comfyume-ops backup [--input value ...]   (actions/backup-verda)',
    );
    expect(help).toContain('  --host  (required)');
    expect(help).toContain('  --port  (default 22)');
    expect(help).toContain(
      '  --ssh-private-key  (required; secret: --ssh-private-key-file PATH or COMFYUME_SSH_PRIVATE_KEY)',
    );
  });

  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(repoRoot, 'bin/comfyume-ops.mjs'), ...args], {
      encoding: 'utf8',
      env: { ...process.env, COMFYUME_BUCKET: '' },
    });

  it('comfyume-ops <command> --help exits 0 with the action.yml inputs; a bad flag exits 2 before anything runs', () => {
    const help = cli('verify-host', '--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('--host-key-fingerprints  (required)');
    const bad = cli('verify-host', '--hots', 'gpu');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain(
      'error: unknown flag --hots for verify-host (did you mean --host?)',
    );
    expect(bad.stderr).toContain(
      'error: missing required input(s) for verify-host: --host, --user, --ssh-private-key, --host-key-fingerprints',
    );
    expect(bad.stdout).toBe('');
    expect(cli('--version').status).toBe(0);
  });
});
