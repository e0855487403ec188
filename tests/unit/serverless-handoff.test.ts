// The pure parts of the endpoint hand-off: the URL from the API checked before it is written
// anywhere, the .env line set with every other byte kept, and the restart spec parsed strictly.
import { describe, expect, it } from '@jest/globals';
import { InputError, OpsError } from '../../src/lib/errors.js';
import {
  ENDPOINT_DOWN,
  checkEndpointUrl,
  parseRestart,
  setEnvLine,
} from '../../src/serverless/handoff.js';

describe('checkEndpointUrl', () => {
  it.each([
    'https://containers.datacrunch.io/comfyume-workers',
    'https://containers.datacrunch.io:443/comfyume-workers/',
    'http://127.0.0.1:39123/comfyume-workers',
  ])('accepts %s', (url) => {
    expect(checkEndpointUrl(url)).toBe(url);
  });

  it.each([
    ['plain http to another host', 'http://containers.datacrunch.io/comfyume-workers'],
    ['a newline (a second .env line)', 'https://c.example/x\nREDIS_HOST=evil'],
    ['a space', 'https://c.example/x y'],
    ['a $ (compose interpolation)', 'https://c.example/$HOME'],
    ['a quote', "https://c.example/x'"],
    ['a # (a comment)', 'https://c.example/x#y'],
    ['credentials', 'https://user:pw@c.example/x'],
    ['a query', 'https://c.example/x?a=1'],
    ['a dot-dot host', 'https://-c.example/x'],
    ['another scheme', 'file:///etc/passwd'],
    ['empty', ''],
  ])('refuses %s', (_, url) => {
    expect(() => checkEndpointUrl(url)).toThrow(OpsError);
    expect(() => checkEndpointUrl(url)).toThrow(
      /neither the inference key nor a publish goes to it/,
    );
  });

  it('down is the empty value', () => {
    expect(ENDPOINT_DOWN).toBe('');
  });
});

describe('setEnvLine', () => {
  const b = (s: string) => Buffer.from(s, 'latin1');
  const set = (text: string, value: string) => setEnvLine(b(text), 'WORKSHOP_ENDPOINT', value);

  it('replaces the line and keeps every other byte (CRLF, latin1, no final newline)', () => {
    const before = 'A=1\r\nWORKSHOP_ENDPOINT=old\r\nB="caf\xe9 $X"\nC=3';
    const edit = set(before, 'https://n/x');
    expect(edit.content.toString('latin1')).toBe(
      'A=1\r\nWORKSHOP_ENDPOINT=https://n/x\r\nB="caf\xe9 $X"\nC=3',
    );
    expect(edit).toMatchObject({ replaced: 1, changed: true });
  });

  it('keeps `export`, and replaces a repeated key everywhere (no stale copy wins)', () => {
    const edit = set('export WORKSHOP_ENDPOINT = old\nX=1\nWORKSHOP_ENDPOINT=older\n', '');
    expect(edit.content.toString('latin1')).toBe(
      'export WORKSHOP_ENDPOINT=\nX=1\nWORKSHOP_ENDPOINT=\n',
    );
    expect(edit.replaced).toBe(2);
  });

  it('leaves similar names and comments alone; appends when the key is absent', () => {
    const text = '# WORKSHOP_ENDPOINT=commented\nWORKSHOP_ENDPOINT_OLD=x\nMY_WORKSHOP_ENDPOINT=y';
    const edit = set(text, 'https://n/x');
    expect(edit.content.toString('latin1')).toBe(`${text}\nWORKSHOP_ENDPOINT=https://n/x\n`);
    expect(edit.replaced).toBe(0);
    expect(set('', 'v').content.toString('latin1')).toBe('WORKSHOP_ENDPOINT=v\n');
  });

  it('reports no change when the line is already so', () => {
    const edit = set('A=1\nWORKSHOP_ENDPOINT=https://n/x\n', 'https://n/x');
    expect(edit).toMatchObject({ replaced: 1, changed: false });
  });
});

describe('parseRestart', () => {
  it('reads a systemd unit and a compose project', () => {
    expect(parseRestart('vps-restart', 'systemd:queue-manager.service')).toEqual({
      kind: 'systemd',
      unit: 'queue-manager.service',
    });
    expect(parseRestart('vps-restart', 'compose:/home/dev/comfy-multi:queue-manager')).toEqual({
      kind: 'compose',
      projectDir: '/home/dev/comfy-multi',
      service: 'queue-manager',
    });
  });

  it.each([
    'queue-manager.service',
    'systemd:',
    'systemd:-queue',
    'systemd:qm;reboot',
    'systemd:qm $(id)',
    'compose:/srv/qm',
    'compose:srv/qm:queue-manager',
    'compose:/srv/../etc:queue-manager',
    'compose:/srv/qm:-d',
    'compose:/srv/q m:queue-manager',
    'docker:/srv/qm:queue-manager',
  ])('refuses %j naming the input', (value) => {
    expect(() => parseRestart('vps-restart', value)).toThrow(InputError);
    expect(() => parseRestart('vps-restart', value)).toThrow(
      /Input 'vps-restart' is invalid: .*expected systemd:<unit>/,
    );
  });
});
