import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, writeFileSync } from 'node:fs';
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
