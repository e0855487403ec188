import { describe, expect, it } from '@jest/globals';
import { ConfigError, InputError } from '../../src/lib/errors.js';
import { inputsFromRecord } from '../../src/lib/inputs.js';
import { parseSyncInputs } from '../../src/actions/sync-models/inputs.js';
import { parseModelsConfig } from '../../src/models/config.js';
import { matcher } from '../../src/models/glob.js';
import { BufferPool, Semaphore, forEachLimit } from '../../src/lib/limits.js';
import { parseLocation } from '../../src/models/location.js';
import { progressLine } from '../../src/models/progress.js';
import { streamReader } from '../../src/models/host.js';
import { Readable } from 'node:stream';
import { newEd25519KeyPair } from '../../src/lib/ssh.js';
import { normalizePrefix } from '../../src/models/bucket.js';

const MiB = 2 ** 20;

describe('include globs', () => {
  it('matches ** across directories, * and ? within one', () => {
    const m = matcher(['**/*.safetensors']);
    expect(m('checkpoints/a.safetensors')).toBe(true);
    expect(m('a.safetensors')).toBe(true);
    expect(m('loras/x/y.safetensors')).toBe(true);
    expect(m('loras/y.safetensors.partial')).toBe(false);
    expect(matcher(['checkpoints/*.st'])('checkpoints/sub/a.st')).toBe(false);
    expect(matcher(['*.st'])('deep/dir/a.st')).toBe(true);
    expect(matcher(['loras/?.st'])('loras/a.st')).toBe(true);
    expect(matcher(['a.b'])('axb')).toBe(false);
    expect(matcher(['./checkpoints/*.st'])('checkpoints/a.st')).toBe(true);
    expect(matcher(['*.safetensors'])('loras/.hidden.safetensors')).toBe(true);
  });

  it('takes what a glob promises: brace sets and character classes (they matched nothing before)', () => {
    const m = matcher(['*.{safetensors,ckpt}']);
    expect(m('checkpoints/a.ckpt')).toBe(true);
    expect(m('loras/b.safetensors')).toBe(true);
    expect(m('loras/b.bin')).toBe(false);
    const cls = matcher(['loras/[ab]*.safetensors']);
    expect(cls('loras/alpha.safetensors')).toBe(true);
    expect(cls('loras/cat.safetensors')).toBe(false);
  });
});

describe('model locations', () => {
  it('parses local directories and ssh URLs', () => {
    expect(parseLocation('source', '/data/models')).toEqual({ kind: 'local', dir: '/data/models' });
    expect(parseLocation('source', 'ssh://dev@100.89.38.43:2222/home/dev/models/')).toEqual({
      kind: 'ssh',
      user: 'dev',
      host: '100.89.38.43',
      port: 2222,
      dir: '/home/dev/models',
    });
    expect(parseLocation('source', 'ssh://dev@verda/mnt/models')).toMatchObject({
      port: 22,
      host: 'verda',
    });
  });

  it.each([
    'ssh://verda/models',
    'ssh://dev@verda:0/m',
    'ssh://dev@verda:70000/m',
    'ssh://dev@verda',
    'ssh://dev@verda/a/../b',
    'sftp://dev@verda/m',
    '',
  ])('refuses %j naming the input', (bad) => {
    expect(() => parseLocation('source', bad)).toThrow(InputError);
    expect(() => parseLocation('source', bad)).toThrow(/Input 'source' is invalid/);
  });
});

describe('config/models.yml schema', () => {
  it('accepts the repository file shape and fills defaults', () => {
    const c = parseModelsConfig('m.yml', {
      models: [
        { path: 'loras/a.safetensors', url: 'https://huggingface.co/x/resolve/main/a.safetensors' },
      ],
    });
    expect(c.models).toEqual([
      {
        path: 'loras/a.safetensors',
        url: 'https://huggingface.co/x/resolve/main/a.safetensors',
        required: true,
      },
    ]);
  });

  it('names every problem: duplicate path, absolute path, bad sha256, bad url, unknown key', () => {
    const run = () =>
      parseModelsConfig('m.yml', {
        models: [{ path: 'a.safetensors' }, { path: 'a.safetensors' }],
      });
    expect(run).toThrow(ConfigError);
    expect(run).toThrow(/models\[1\]\.path: duplicate path "a\.safetensors" \(also models\[0\]\)/);
    const bad = () =>
      parseModelsConfig('m.yml', {
        models: [
          { path: '/etc/x' },
          { path: 'b', sha256: 'xyz' },
          { path: 'c', url: 'ftp://h/c' },
          { path: 'd', colour: 'red' },
        ],
      });
    expect(bad).toThrow(/models\[0\]\.path: path "\/etc\/x" is refused: it is absolute/);
    expect(bad).toThrow(/models\[1\]\.sha256: sha256 must be 64 lowercase hex/);
    expect(bad).toThrow(/models\[2\]\.url/);
    expect(bad).toThrow(/models\[3\]: .*colour/);
  });

  it.each([
    ['a/../b.safetensors', "it has a '..' segment"],
    ['a\\b.safetensors', "it contains '\\'"],
    ['a\u007fb.safetensors', 'it contains a control character'],
    ['a\nb.safetensors', 'it contains a control character'],
    ['a/./b.safetensors', "it has a '.' segment"],
    ['loras/', 'it has an empty segment'],
    ['loras/x.safetensors.partial', "it ends in '.partial'"],
  ])('refuses the path %j naming it', (p, why) => {
    expect(() => parseModelsConfig('m.yml', { models: [{ path: p }] })).toThrow(
      `models[0].path: path ${JSON.stringify(p)} is refused: ${why}`,
    );
  });
});

describe('sync-models inputs', () => {
  // A real private key: the parser refuses anything else before it looks at the other inputs.
  const key = newEd25519KeyPair('test').private;
  const base = {
    direction: 'push',
    source: '/m',
    bucket: 'vault',
    'r2-endpoint': 'http://127.0.0.1:9',
    'r2-access-key-id': 'k',
    'r2-secret-access-key': 's',
  };
  const parse = (over: Record<string, string>) =>
    parseSyncInputs(inputsFromRecord({ ...base, ...over }));

  it('caps concurrency at 8 over SSH (one channel per file; sshd allows 10)', () => {
    const ssh = {
      source: 'ssh://dev@gpu:22/models',
      'ssh-private-key': key,
      'host-key-fingerprints': `SHA256:${'A'.repeat(43)}`,
    };
    expect(() => parse({ ...ssh, concurrency: '9' })).toThrow(
      `Input 'concurrency' is invalid: got "9"; expected an integer from 1 to 8.`,
    );
    expect(parse({ concurrency: '9' }).concurrency).toBe(9);
  });

  it('defaults: include safetensors, concurrency 4, auto part size, compare undecided, hf-fallback only on pull', () => {
    const i = parse({});
    expect(i).toMatchObject({
      include: ['**/*.safetensors'],
      concurrency: 4,
      delete: false,
      dryRun: false,
      hfFallback: false,
      prefix: 'models/',
    });
    expect(i.partSize).toBeUndefined();
    expect(i.compare).toBeUndefined();
    expect(parse({ direction: 'pull', target: '/m' }).hfFallback).toBe(true);
    expect(parse({ prefix: 'vault/models' }).prefix).toBe('vault/models/');
    expect(parse({ 'part-size': '64MiB' }).partSize).toBe(64 * MiB);
  });

  it('requires ssh key and pins for an ssh:// source or target', () => {
    expect(() => parse({ source: 'ssh://dev@h/m' })).toThrow(/Input 'ssh-private-key' is invalid/);
    expect(() => parse({ source: 'ssh://dev@h/m', 'ssh-private-key': key })).toThrow(
      /host-key-fingerprints/,
    );
    expect(() => parse({ direction: 'pull', target: 'ssh://dev@h/m' })).toThrow(
      /Input 'ssh-private-key' is invalid: .*for target ssh:\/\/dev@h\/m/,
    );
    expect(() => parse({ bucket: 'Bad_Bucket' })).toThrow(/Input 'bucket' is invalid/);
  });

  it('pull-via: runner by default; host only for a pull onto an ssh:// target', () => {
    const ssh = {
      direction: 'pull',
      target: 'ssh://dev@gpu:22/models',
      'ssh-private-key': key,
      'host-key-fingerprints': `SHA256:${'A'.repeat(43)}`,
    };
    expect(parse(ssh).pullVia).toBe('runner');
    expect(parse({ ...ssh, 'pull-via': 'host' }).pullVia).toBe('host');
    expect(() => parse({ direction: 'pull', target: '/m', 'pull-via': 'host' })).toThrow(
      `Input 'pull-via' is invalid: got "host"; expected runner for a local target (/m)`,
    );
    expect(() => parse({ 'pull-via': 'host' })).toThrow(
      `Input 'pull-via' is invalid: got "host"; expected runner for direction: push`,
    );
    expect(() => parse({ ...ssh, 'pull-via': 'gpu' })).toThrow(
      `Input 'pull-via' is invalid: got "gpu"; expected one of runner, host.`,
    );
  });

  it.each(['/models/', 'models/', '../x', 'a/../../b', 'a//b', 'a\\b', 'a b', '.'])(
    'refuses the prefix %j as backup-verda does',
    (prefix) => {
      expect(() => parse({ prefix })).toThrow(InputError);
      expect(() => parse({ prefix })).toThrow(
        `Input 'prefix' is invalid: got ${JSON.stringify(prefix)}; expected a key prefix such as backups/verda`,
      );
    },
  );
});

describe('transfer limits', () => {
  it('Semaphore never lets more than its size run', async () => {
    const sem = new Semaphore(2);
    let running = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        const release = await sem.acquire();
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setImmediate(r));
        running--;
        release();
      }),
    );
    expect(peak).toBe(2);
  });

  it('BufferPool reuses buffers and keeps at most `keep` idle', () => {
    const pool = new BufferPool(1);
    const a = pool.get(16);
    const b = pool.get(16);
    pool.put(a);
    pool.put(b);
    expect(pool.get(16)).toBe(a);
    expect(pool.get(16)).not.toBe(b);
  });

  it('forEachLimit runs everything and rethrows the first failure', async () => {
    const seen: number[] = [];
    await forEachLimit([1, 2, 3], 2, async (n) => void seen.push(n));
    expect(seen.sort()).toEqual([1, 2, 3]);
    await expect(
      forEachLimit([1, 2], 1, async (n) => {
        if (n === 1) throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
  });

  it('streamReader fills buffers across chunk boundaries and reports the end', async () => {
    let finished = false;
    const r = streamReader(
      Readable.from([Buffer.from('abc'), Buffer.from('defgh')]),
      async () => void (finished = true),
    );
    const buf = Buffer.alloc(5);
    expect(await r.read(buf, 5)).toBe(5);
    expect(buf.toString()).toBe('abcde');
    expect(await r.read(buf, 5)).toBe(3);
    expect(buf.subarray(0, 3).toString()).toBe('fgh');
    expect(finished).toBe(true);
  });
});

describe('progress and prefix', () => {
  it('formats a progress line with rate and ETA', () => {
    expect(progressLine('a.st', 50 * MiB, 100 * MiB, 5000)).toBe(
      'a.st: 50.0 MiB / 100 MiB (50%), 10.0 MiB/s, ETA 5.0 s',
    );
  });
  it('normalizes prefixes', () => {
    expect(normalizePrefix('')).toBe('');
    expect(normalizePrefix('/a/b/')).toBe('a/b/');
  });
});
