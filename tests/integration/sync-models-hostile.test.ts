// A bucket writer must not be able to write outside a pull's target (issue 9, point 4), through
// the bundle: a fake S3 endpoint (tests/helpers/hostile-s3.ts; s3rver would normalise these keys)
// lists hostile keys beside a good one, and a pull to a local directory and to the real sshd
// fixture host must fail naming the key, with nothing created anywhere (not even a mkdir, not
// even the good file) and no object fetched. The same for models-manifest.json from the bucket,
// for config/models.yml paths, for a local file name on push, and for the `prefix` input.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { startSshHost, type SshHost } from '../../src/sandbox/ssh-host.js';
import { startHostileS3, type HostileObject, type HostileS3 } from '../helpers/hostile-s3.js';
import { runAction } from '../helpers/run-action.js';

jest.setTimeout(120_000);

const BUCKET = 'model-vault';
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const goodBody = randomBytes(4096);
const GOOD: HostileObject = {
  key: 'models/checkpoints/good.safetensors',
  body: goodBody,
  metadata: { sha256: sha256(goodBody) },
};
const hostile = (key: string): HostileObject => ({ key, body: Buffer.from('pwned\n') });

// Each would land outside the target, or be a name no model may have, on the old code.
const HOSTILE_KEYS = [
  'models/../../evil.safetensors', // two levels above the target
  'models/../outside/x.safetensors', // mkdir -p of a directory beside the target
  'models//etc/x.safetensors', // an absolute path after the prefix
  '/etc/x.safetensors', // a key that is not under the prefix at all
  'models/a\\b.safetensors',
  'models/a\nb.safetensors', // listed as &#10;
  'models/a\u0000b.safetensors', // listed as &#0;
  'models/..',
];

let s3: HostileS3;
let host: SshHost;
let work: string;
let hostUid: number;

beforeAll(async () => {
  s3 = await startHostileS3({ bucket: BUCKET });
  host = await startSshHost({ models: [] });
  hostUid = Number(execFileSync('id', ['-u', host.user], { encoding: 'utf8' }).trim());
  work = await mkdtemp(path.join(os.tmpdir(), 'sync-models-hostile-'));
  await writeFile(path.join(work, 'no-models.yml'), 'models: []\n');
}, 90_000);
afterAll(async () => {
  await host?.stop();
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});
beforeEach(() => s3.resetRequests());

const secrets = () => [s3.secretAccessKey, s3.accessKeyId, host.privateKey];
const run = (inputs: Record<string, string>) =>
  runAction('sync-models', {
    inputs: {
      direction: 'pull',
      bucket: BUCKET,
      prefix: 'models',
      'r2-endpoint': s3.endpoint,
      'r2-access-key-id': s3.accessKeyId,
      'r2-secret-access-key': s3.secretAccessKey,
      manifest: path.join(work, 'no-models.yml'),
      ...inputs,
    },
    secrets: secrets(),
    timeoutMs: 110_000,
  });

/** Every entry under `dir`, recursively, relative to it. */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.map(String).sort();
}

let caseNo = 0;
/**
 * A fresh root holding an empty target at <root>/a/models: a local directory, or one on the
 * fixture host (same filesystem, owned by the SSH user, so the old code could write there).
 */
async function makeTarget(kind: 'local' | 'ssh'): Promise<{ root: string; target: string }> {
  const base = kind === 'local' ? work : host.scratchDir;
  const root = path.join(base, `case-${kind}-${++caseNo}`);
  const dir = path.join(root, 'a', 'models');
  await mkdir(dir, { recursive: true });
  if (kind === 'ssh') execFileSync('chown', ['-R', `${hostUid}`, root]);
  return { root, target: dir };
}

const targetInputs = (kind: 'local' | 'ssh', dir: string): Record<string, string> =>
  kind === 'local'
    ? { target: dir }
    : {
        target: `ssh://${host.user}@${host.host}:${host.port}${dir}`,
        'ssh-private-key': host.privateKey,
        'host-key-fingerprints': host.hostKeyFingerprint,
      };

describe.each(['local', 'ssh'] as const)('pull to a %s target', (kind) => {
  it.each(HOSTILE_KEYS)(
    'refuses the bucket key %j: error names it, nothing written',
    async (key) => {
      s3.setObjects([GOOD, hostile(key)]);
      const { root, target } = await makeTarget(kind);
      const before = await tree(root);
      expect(before).toEqual(['a', 'a/models']);

      const r = await run(targetInputs(kind, target));

      // Nothing beside or above the target, nothing in it (not the good file either), nothing in /etc.
      expect(await tree(root)).toEqual(before);
      expect(existsSync('/etc/x.safetensors')).toBe(false);
      expect(r.code).not.toBe(0);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]).toContain(JSON.stringify(key));
      expect(r.errors[0]).toMatch(/not safe model paths under "models\/"/);
      expect(r.errors[0]).toContain('Nothing was written');
      // The plan was refused from the listing alone: no object was fetched.
      expect(s3.requests().map((q) => q.operation)).toEqual(['ListObjectsV2']);
    },
  );

  it('pulls a clean listing from this fake (a console folder object is not a file)', async () => {
    s3.setObjects([GOOD, { key: 'models/checkpoints/', body: Buffer.alloc(0) }]);
    const { root, target } = await makeTarget(kind);
    const r = await run(targetInputs(kind, target));
    expect(r.errors).toEqual([]);
    expect(r.outputs.downloaded).toBe('1');
    expect(await tree(root)).toEqual([
      'a',
      'a/models',
      'a/models/checkpoints',
      'a/models/checkpoints/good.safetensors',
    ]);
    expect(sha256(await readFile(path.join(target, 'checkpoints/good.safetensors')))).toBe(
      sha256(goodBody),
    );
  });

  it('creates no target directory when the listing is refused', async () => {
    s3.setObjects([GOOD, hostile('models/../outside/x.safetensors')]);
    const { root } = await makeTarget(kind);
    const target = path.join(root, 'fresh', 'models');
    const r = await run(targetInputs(kind, target));
    expect(r.code).not.toBe(0);
    expect(r.errors.join('\n')).toContain('"models/../outside/x.safetensors"');
    expect(await tree(root)).toEqual(['a', 'a/models']);
  });

  it('refuses models-manifest.json naming a path outside the target: nothing written', async () => {
    const evil = '../../evil.safetensors';
    const manifest = {
      version: 1,
      updated: '2025-01-01T00:00:00.000Z',
      files: [
        { path: 'checkpoints/good.safetensors', size: goodBody.length, sha256: sha256(goodBody) },
        { path: evil, size: 6, sha256: sha256(Buffer.from('pwned\n')) },
      ],
    };
    s3.setObjects([
      GOOD,
      { key: 'models/models-manifest.json', body: Buffer.from(JSON.stringify(manifest)) },
    ]);
    const { root, target } = await makeTarget(kind);
    const r = await run(targetInputs(kind, target));
    expect(r.code).not.toBe(0);
    expect(r.errors.join('\n')).toMatch(
      /models\/models-manifest\.json in bucket model-vault is not a valid models manifest: files\[1\]\.path: path "\.\.\/\.\.\/evil\.safetensors": it has a '\.\.' segment/,
    );
    expect(await tree(root)).toEqual(['a', 'a/models']);
    expect(s3.requests().map((q) => [q.operation, q.key])).toEqual([
      ['ListObjectsV2', undefined],
      ['GetObject', 'models/models-manifest.json'],
    ]);
  });
});

describe('models-manifest.json is parsed strictly', () => {
  it.each([
    [
      'an unknown field',
      { afterPull: 'touch /tmp/x' },
      /\(top level\): Unrecognized key: "afterPull"/,
    ],
    [
      'a negative size',
      { files: [{ path: 'a.safetensors', size: -1, sha256: 'a'.repeat(64) }] },
      /files\[0\]\.size/,
    ],
    ['a time that is not ISO', { updated: 'yesterday' }, /updated/],
    [
      'a backslash path',
      { files: [{ path: 'a\\b.safetensors', size: 1, sha256: 'a'.repeat(64) }] },
      /files\[0\]\.path: path "a\\\\b\.safetensors": it contains '\\'/,
    ],
  ])('refuses %s before anything is written', async (_what, change, message) => {
    const manifest = { version: 1, updated: '2025-01-01T00:00:00.000Z', files: [], ...change };
    s3.setObjects([
      GOOD,
      { key: 'models/models-manifest.json', body: Buffer.from(JSON.stringify(manifest)) },
    ]);
    const { root, target } = await makeTarget('local');
    const r = await run({ target });
    expect(r.code).not.toBe(0);
    expect(r.errors.join('\n')).toMatch(message);
    expect(await tree(root)).toEqual(['a', 'a/models']);
  });
});

describe('config/models.yml paths', () => {
  it.each([
    ['loras/a\\b.safetensors', "it contains '\\'"],
    ['loras/a\u007fb.safetensors', 'it contains a control character'],
    ['loras/x.safetensors.partial', "it ends in '.partial'"],
    ['../../evil.safetensors', "it has a '..' segment"],
  ])('refuses %j before any request (HuggingFace fallback never writes it)', async (bad, why) => {
    s3.setObjects([GOOD]);
    const config = path.join(work, `models-${++caseNo}.yml`);
    await writeFile(
      config,
      `models:\n  - path: ${JSON.stringify(bad)}\n    url: http://127.0.0.1:9/x/resolve/main/x.safetensors\n`,
    );
    const { root, target } = await makeTarget('local');
    const r = await run({ target, manifest: config });
    expect(r.code).not.toBe(0);
    const errors = r.errors.join('\n');
    expect(errors).toContain(`Config ${config} is invalid`);
    expect(errors).toContain(`models[0].path: path ${JSON.stringify(bad)} is refused: ${why}`);
    expect(await tree(root)).toEqual(['a', 'a/models']);
    expect(s3.requests()).toEqual([]);
  });
});

describe('push', () => {
  it('refuses a local file whose name no model path may have, before any request', async () => {
    const source = path.join(work, `push-src-${++caseNo}`);
    await mkdir(path.join(source, 'loras'), { recursive: true });
    await writeFile(path.join(source, 'loras', 'ok.safetensors'), 'ok');
    await writeFile(path.join(source, 'loras', 'a\\b.safetensors'), 'x');
    s3.setObjects([]);
    const r = await run({ direction: 'push', source });
    expect(r.code).not.toBe(0);
    expect(r.errors.join('\n')).toContain(
      `has 1 file(s) whose names cannot be model paths: "loras/a\\\\b.safetensors" (it contains '\\')`,
    );
    expect(s3.requests()).toEqual([]);
  });
});

describe('the prefix input', () => {
  it.each(['../other', 'models/../../x', 'a//b', '/models/', 'models\\x'])(
    'refuses %j before any connection (R2 or SSH)',
    async (prefix) => {
      const { root, target } = await makeTarget('ssh');
      const connections = host.connectionCount();
      const r = await run({ ...targetInputs('ssh', target), prefix });
      expect(r.code).not.toBe(0);
      expect(r.errors).toEqual([
        `Input 'prefix' is invalid: got ${JSON.stringify(prefix)}; expected a key prefix such as backups/verda (letters, digits, . _ - and '/' between parts; no leading or trailing '/', no '..').`,
      ]);
      expect(s3.requests()).toEqual([]);
      expect(host.connectionCount()).toBe(connections);
      expect(await tree(root)).toEqual(['a', 'a/models']);
    },
  );
});
