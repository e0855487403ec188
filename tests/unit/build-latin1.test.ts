// scripts/build.mjs latin1Source: the escaped bundle must behave exactly like the original, and
// the build must stop where an escape would change the program.
import { describe, expect, it } from '@jest/globals';
// @ts-expect-error plain ESM build script without types
import { latin1Source } from '../../scripts/build.mjs';

const escape = latin1Source as (code: string, file: string) => string;
const run = (code: string): unknown => new Function(code)();

describe('latin1Source', () => {
  it.each([
    ['a string', 'return "a→b"'],
    ['a string with a line separator', 'return "a\u2028b"'],
    ['an untagged template', 'return `a→${1}b`'],
    ['a regex', 'return /→/.test("x→")'],
    ['a unicode regex with an astral character', 'return /[😀]/u.test("😀")'],
    ['an identifier', 'const π = 3; return π * 2'],
    ['a block comment', 'return /* → */ 4'],
    ['a line separator ending a line comment', 'let x = 1; // note\u2028 x = 2;\nreturn x'],
    ['a paragraph separator after return (ASI)', 'return\u2029 5'],
  ])('keeps %s meaning the same, in Latin-1 only', (_name, code) => {
    const out = escape(code, 'case.js');
    expect(/[\u0100-\uffff]/.test(out)).toBe(false);
    expect(run(out)).toEqual(run(code));
  });

  it('leaves a Latin-1 bundle untouched', () => {
    const code = 'return "café ×"';
    expect(escape(code, 'case.js')).toBe(code);
  });

  it.each([
    ['a tagged template (its raw text would change)', 'return String.raw`a→b`', /tagged template/],
    ['other whitespace between tokens', 'return 1\u3000+ 1', /outside strings and comments/],
    ['a character after a backslash', 'return "\\→"', /after a backslash/],
  ])('refuses %s', (_name, code, message) => {
    expect(() => escape(code, 'case.js')).toThrow(message);
  });
});
