import { describe, expect, it } from '@jest/globals';
import { InputError } from '../../src/lib/errors.js';
import {
  Inputs,
  inputsFromRecord,
  parseDuration,
  parseSize,
  splitList,
} from '../../src/lib/inputs.js';

const inputs = (record: Record<string, string>) => new Inputs(inputsFromRecord(record));

describe('Inputs', () => {
  it('names the input, the value and the expectation in errors', () => {
    expect(() => inputs({ port: '70000' }).int('port', { min: 1, max: 65535 })).toThrow(
      `Input 'port' is invalid: got "70000"; expected an integer from 1 to 65535.`,
    );
    expect(() => inputs({}).required('host', 'the GPU host')).toThrow(InputError);
  });
  it('parses ints, booleans and one-of with defaults', () => {
    const i = inputs({ n: ' 12 ', b: 'True', c: 'pull' });
    expect(i.int('n', { min: 0 })).toBe(12);
    expect(i.int('missing', { default: 22 })).toBe(22);
    expect(i.boolean('b')).toBe(true);
    expect(i.boolean('missing', true)).toBe(true);
    expect(() => inputs({ b: 'yes' }).boolean('b')).toThrow(/expected true or false/);
    expect(i.oneOf('c', ['push', 'pull'] as const)).toBe('pull');
    expect(() => inputs({ c: 'x' }).oneOf('c', ['push', 'pull'] as const)).toThrow(
      /one of push, pull/,
    );
    expect(() => inputs({ n: '1.5' }).int('n')).toThrow(InputError);
  });
  it('never repeats a secret value', () => {
    expect(() => inputs({}).secret('r2-secret-access-key')).toThrow(`got ""`);
  });
  it('splits lists on lines and commas, dropping comments', () => {
    expect(splitList('a\n b , c\n# note\n\nd # why')).toEqual(['a', 'b', 'c', 'd']);
  });
  it('refuses a duration longer than a Node timer can wait (2^31-1 ms)', () => {
    expect(inputs({ t: '24d20h31m23s' }).duration('t')).toBe(2_147_483_000);
    expect(inputs({ t: '2147483.647' }).duration('t')).toBe(2 ** 31 - 1);
    let err: unknown;
    try {
      inputs({ 'r2-timeout': '25d' }).duration('r2-timeout');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect(String(err)).toBe(
      'InputError: Input \'r2-timeout\' is invalid: got "25d"; expected a duration such as 90s, 15m or 1h30m, at most 24d20h31m23s (2147483647 ms).',
    );
    expect(() => inputs({}).duration('t', '2147483.648')).toThrow(/at most 24d20h31m23s/);
  });
  it('parses durations and sizes', () => {
    expect(parseDuration('15m')).toBe(900_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('90')).toBe(90_000);
    expect(parseDuration('soon')).toBeUndefined();
    expect(parseDuration('5m soon')).toBeUndefined();
    expect(parseSize('16MiB')).toBe(16 * 2 ** 20);
    expect(parseSize('1.5GiB')).toBe(1.5 * 2 ** 30);
    expect(parseSize('5MB')).toBe(5_000_000);
    expect(parseSize('12 parsecs')).toBeUndefined();
    expect(inputs({ p: 'auto' }).size('p', { allowAuto: true })).toBeUndefined();
    expect(() => inputs({ p: '1MiB' }).size('p', { min: 5 * 2 ** 20, max: 5 * 2 ** 30 })).toThrow(
      /from 5MiB to 5GiB/,
    );
  });
});
