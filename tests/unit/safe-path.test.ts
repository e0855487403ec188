import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { OpsError } from '../../src/lib/errors.js';
import { resolveInside, unsafePathReason } from '../../src/lib/safe-path.js';
import { LocalModelHost } from '../../src/models/host.js';
import { modelPathProblem } from '../../src/models/model-path.js';

describe('unsafePathReason', () => {
  it.each(['a', 'checkpoints/x.safetensors', 'a..b/c', '.hidden/x', 'x y/z', 'é/ü.st', '-rf'])(
    'accepts %j',
    (p) => expect(unsafePathReason(p)).toBeUndefined(),
  );

  it.each([
    ['', 'it is empty'],
    ['/etc/x', 'it is absolute'],
    ['//x', 'it is absolute'],
    ['..', "it has a '..' segment"],
    ['a/../../b', "it has a '..' segment"],
    ['a/..', "it has a '..' segment"],
    ['.', "it has a '.' segment"],
    ['a/./b', "it has a '.' segment"],
    ['a//b', 'it has an empty segment'],
    ['a/', 'it has an empty segment'],
    ['a\\b', "it contains '\\'"],
    ['..\\..\\x', "it contains '\\'"],
    ['a\u0000b', 'it contains a control character'],
    ['a\nb', 'it contains a control character'],
    ['a\rb', 'it contains a control character'],
    ['a\u001bb', 'it contains a control character'],
    ['a\u007fb', 'it contains a control character'],
    ['a\u0085b', 'it contains a control character'],
  ])('refuses %j: %s', (p, why) => expect(unsafePathReason(p)).toBe(why));

  it('models may not end in .partial (a download in progress)', () => {
    expect(modelPathProblem('loras/x.safetensors.partial')).toMatch(/ends in '\.partial'/);
    expect(modelPathProblem('loras/x.safetensors')).toBeUndefined();
  });
});

describe('resolveInside', () => {
  it('joins a safe path onto its root, local or remote', () => {
    expect(resolveInside('/data/models', 'loras/a.st')).toBe('/data/models/loras/a.st');
    expect(resolveInside('/data/models/', 'a.st', 'x', path.posix)).toBe('/data/models/a.st');
    expect(resolveInside('/', 'a.st', 'x', path.posix)).toBe('/a.st');
  });

  it.each(['../x', 'a/../../x', '/etc/passwd', 'a\\..\\..\\x', 'a\u0000b', '', '..'])(
    'throws an OpsError naming %j',
    (rel) => {
      const call = () => resolveInside('/data/models', rel, 'model path', path.posix);
      expect(call).toThrow(OpsError);
      expect(call).toThrow(`model path ${JSON.stringify(rel)} is refused: `);
    },
  );
});

describe('model hosts join only safe paths (the last guard, for library callers)', () => {
  it.each(['../x.safetensors', 'a/../../x', '/etc/x', 'a\\b'])('refuses %j', async (rel) => {
    const host = new LocalModelHost('/nonexistent/models');
    expect(() => host.partial(rel)).toThrow(`model path ${JSON.stringify(rel)} is refused`);
    await expect(host.remove(rel)).rejects.toThrow(OpsError);
    await expect(host.reader(rel)).rejects.toThrow(OpsError);
    await expect(host.sha256([rel])).rejects.toThrow(OpsError);
  });
});
