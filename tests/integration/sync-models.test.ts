// sync-models through its bundle against the R2 emulator: push from a local directory, no-op
// re-syncs that cost one list call, sha256 compare, pull with Range resume and verification,
// the HuggingFace fallback from a local HTTP server, and bad inputs.
import { access, copyFile, mkdir, readFile, truncate, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { CreateMultipartUploadCommand } from '@aws-sdk/client-s3';
import {
  MiB,
  PREFIX,
  BUCKET,
  fileSha256,
  sha256,
  startSyncWorld,
  type SyncWorld,
} from './sync-models-setup.js';

// Transfers of tens of MiB through the bundle on a shared 2-core machine.
jest.setTimeout(120_000);

let world: SyncWorld;
let tree: { root: string; sha: Record<string, string> };
const FILES = {
  'checkpoints/big.safetensors': 40 * MiB + 3,
  'text_encoders/enc.safetensors': 17 * MiB,
  'loras/small.safetensors': 300 * 1024,
  'notes.txt': 100,
};
const MODELS = Object.keys(FILES).filter((f) => f.endsWith('.safetensors'));
const exists = (f: string) =>
  access(f).then(
    () => true,
    () => false,
  );

beforeAll(async () => {
  world = await startSyncWorld();
  tree = await world.makeTree('host', FILES);
}, 60_000);
afterAll(async () => {
  await world?.stop();
});
beforeEach(() => {
  world.r2.clearFaults();
  world.r2.resetCounts();
});

describe('push from a local directory', () => {
  it('uploads every model R2-correctly, with sha256 in metadata and the manifest written last', async () => {
    // A stale upload left by some run two days ago: aborted by this run.
    const stale = await world.s3.send(
      new CreateMultipartUploadCommand({
        Bucket: BUCKET,
        Key: `${PREFIX}/old/leftover.safetensors`,
      }),
    );
    await world.r2.setUploadInitiated(
      BUCKET,
      stale.UploadId!,
      new Date(Date.now() - 2 * 86_400_000),
    );
    world.r2.resetCounts();

    const run = await world.run({ source: tree.root, concurrency: '3' });
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.outputs).toMatchObject({
      uploaded: '3',
      skipped: '0',
      downloaded: '0',
      'manifest-key': `${PREFIX}/models-manifest.json`,
    });
    expect(Number(run.outputs.bytes)).toBe(57 * MiB + 3 + 300 * 1024);
    // Every request passed the R2 rules; the manifest was the last write; the stale upload is gone.
    const reqs = world.r2.requests();
    expect(reqs.filter((r) => r.status >= 300)).toEqual([]);
    const writes = reqs.filter((r) =>
      ['PutObject', 'CompleteMultipartUpload', 'CopyObject'].includes(r.operation),
    );
    expect(writes.at(-1)?.key).toBe(`${PREFIX}/models-manifest.json`);
    expect(world.r2.counts().byOperation).toMatchObject({
      ListObjectsV2: 1,
      // part-size auto: 8 MiB parts (40 MiB + 3 bytes in 6, 17 MiB in 3).
      UploadPart: 6 + 3,
      AbortMultipartUpload: 1,
    });
    expect(world.r2.counts().byOperation.HeadObject).toBeUndefined();
    expect(await world.pendingUploads()).toEqual([]);
    for (const f of MODELS) {
      expect(sha256(await world.get(f))).toBe(tree.sha[f]);
      expect((await world.meta(f)).sha256).toBe(tree.sha[f]);
    }
    const manifest = JSON.parse((await world.get('models-manifest.json')).toString());
    expect(manifest.files).toEqual(
      MODELS.sort().map((p) => ({
        path: p,
        size: FILES[p as keyof typeof FILES],
        sha256: tree.sha[p],
      })),
    );
    expect(run.summary).toContain('| checkpoints/big.safetensors | uploaded |');
    expect(run.summary).toMatch(/Request cost/);
    expect(run.stdout).toMatch(/checkpoints\/big\.safetensors: upload start/);
  });

  it('a second run with compare: size uploads nothing and sends one list call and nothing else', async () => {
    const run = await world.run({ source: tree.root, compare: 'size' });
    expect(run.code).toBe(0);
    expect(run.outputs).toMatchObject({ uploaded: '0', skipped: '3', bytes: '0' });
    expect(world.r2.counts()).toEqual({ classA: 1, classB: 0, byOperation: { ListObjectsV2: 1 } });
  });

  it('by default (sha256, the vault knows it) a no-op run adds only the manifest read', async () => {
    const run = await world.run({ source: tree.root });
    expect(run.outputs).toMatchObject({ uploaded: '0', skipped: '3' });
    expect(world.r2.counts().byOperation).toEqual({ ListObjectsV2: 1, GetObject: 1 });
  });

  it('catches a changed file of the same size with compare: sha256', async () => {
    const f = path.join(tree.root, 'text_encoders/enc.safetensors');
    const bytes = await readFile(f);
    bytes[5 * MiB] = bytes[5 * MiB]! ^ 0xff;
    await writeFile(f, bytes);
    const changed = sha256(bytes);
    const bySize = await world.run({ source: tree.root, compare: 'size' });
    expect(bySize.outputs.uploaded).toBe('0');
    const run = await world.run({ source: tree.root, compare: 'sha256' });
    expect(run.outputs).toMatchObject({ uploaded: '1', skipped: '2' });
    expect(sha256(await world.get('text_encoders/enc.safetensors'))).toBe(changed);
    const manifest = JSON.parse((await world.get('models-manifest.json')).toString());
    expect(
      manifest.files.find((x: { path: string }) => x.path === 'text_encoders/enc.safetensors')
        .sha256,
    ).toBe(changed);
    tree.sha['text_encoders/enc.safetensors'] = changed;
  });

  it('dry-run moves nothing', async () => {
    const extra = await world.makeTree('host', { 'loras/new.safetensors': 1000 });
    const run = await world.run({ source: tree.root, 'dry-run': 'true', compare: 'size' });
    expect(run.outputs.uploaded).toBe('0');
    expect(run.summary).toContain('| loras/new.safetensors | would upload |');
    expect(world.r2.counts().byOperation).toEqual({ ListObjectsV2: 1 });
    expect(extra.sha['loras/new.safetensors']).toBeDefined();
  });
});

describe('pull to a local directory', () => {
  it('downloads every model verified by sha256, resuming a .partial with a Range request', async () => {
    const target = path.join(world.dir, 'pull-target');
    // An interrupted earlier pull left the first 10 MiB of the big file.
    await mkdir(path.join(target, 'checkpoints'), { recursive: true });
    const partial = path.join(target, 'checkpoints/big.safetensors.partial');
    await copyFile(path.join(tree.root, 'checkpoints/big.safetensors'), partial);
    await truncate(partial, 10 * MiB);
    const run = await world.run({
      direction: 'pull',
      target,
      include: '**/*.safetensors\nloras/new.safetensors',
    });
    expect(run.errors).toEqual([]);
    expect(run.outputs).toMatchObject({ downloaded: '3', uploaded: '0' });
    for (const f of MODELS) expect(await fileSha256(path.join(target, f))).toBe(tree.sha[f]);
    expect(await exists(partial)).toBe(false);
    expect(run.summary).toMatch(
      /checkpoints\/big\.safetensors \| downloaded .*resumed at 10\.0 MiB/,
    );
    expect(Number(run.outputs.bytes)).toBe(57 * MiB + 3 + 300 * 1024 - 10 * MiB);
    const again = await world.run({ direction: 'pull', target });
    expect(again.outputs).toMatchObject({ downloaded: '0', skipped: '3' });
  });

  it('refuses a corrupt download (bytes flipped in storage) and puts nothing in place', async () => {
    const restore = await world.corrupt('loras/small.safetensors');
    try {
      const target = path.join(world.dir, 'pull-corrupt');
      const run = await world.run({
        direction: 'pull',
        target,
        include: 'loras/small.safetensors',
      });
      expect(run.code).not.toBe(0);
      expect(run.errors.join('\n')).toMatch(
        /loras\/small\.safetensors .*refused: sha256 [0-9a-f]{64} does not match the expected/,
      );
      expect(await exists(path.join(target, 'loras/small.safetensors'))).toBe(false);
      expect(await exists(path.join(target, 'loras/small.safetensors.partial'))).toBe(false);
    } finally {
      await restore();
    }
  });
});

describe('HuggingFace fallback', () => {
  let server: http.Server;
  let base: string;
  const hfBytes = Buffer.alloc(3 * MiB + 11, 7);
  let hits: { url: string; range?: string; auth?: string }[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      hits.push({
        url: req.url ?? '',
        ...(req.headers.range ? { range: req.headers.range } : {}),
        ...(req.headers.authorization ? { auth: req.headers.authorization } : {}),
      });
      if (!req.url?.startsWith('/Lightricks/')) return void res.writeHead(404).end();
      const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const from = m ? Number(m[1]) : 0;
      res.writeHead(m ? 206 : 200, {
        'content-length': hfBytes.length - from,
        ...(m ? { 'content-range': `bytes ${from}-${hfBytes.length - 1}/${hfBytes.length}` } : {}),
      });
      res.end(hfBytes.subarray(from));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });
  beforeEach(() => {
    hits = [];
  });

  const manifest = async (name: string, sha: string, extra = '') => {
    const file = path.join(world.dir, name);
    await writeFile(
      file,
      `models:\n  - path: loras/hf-only.safetensors\n    size: ${hfBytes.length}\n    sha256: "${sha}"\n    url: ${base}/Lightricks/LTX-2/resolve/main/hf-only.safetensors\n    required: true\n${extra}`,
    );
    return file;
  };

  it('fetches a model missing in R2 from its URL and verifies it against the manifest sha256', async () => {
    const target = path.join(world.dir, 'pull-hf');
    const run = await world.run(
      {
        direction: 'pull',
        target,
        include: 'loras/hf-only.safetensors',
        manifest: await manifest('hf.yml', sha256(hfBytes)),
        'hf-token': 'hf_testTokenValue123456',
      },
      ['hf_testTokenValue123456'],
    );
    expect(run.errors).toEqual([]);
    expect(run.outputs.downloaded).toBe('1');
    expect(await fileSha256(path.join(target, 'loras/hf-only.safetensors'))).toBe(sha256(hfBytes));
    expect(hits).toEqual([
      {
        url: '/Lightricks/LTX-2/resolve/main/hf-only.safetensors',
        auth: 'Bearer hf_testTokenValue123456',
      },
    ]);
    expect(run.summary).toMatch(/HuggingFace fallback, sha256 verified/);
  });

  it('refuses an HF file whose sha256 does not match', async () => {
    const target = path.join(world.dir, 'pull-hf-bad');
    const run = await world.run({
      direction: 'pull',
      target,
      include: 'none',
      manifest: await manifest('hf-bad.yml', 'a'.repeat(64)),
    });
    expect(run.code).not.toBe(0);
    expect(run.errors.join('\n')).toMatch(/refused: sha256/);
    expect(await exists(path.join(target, 'loras/hf-only.safetensors'))).toBe(false);
  });

  it('fails a pull when a required model is in neither R2 nor has a URL', async () => {
    const file = path.join(world.dir, 'missing.yml');
    await writeFile(
      file,
      'models:\n  - path: checkpoints/nowhere.safetensors\n    required: true\n',
    );
    const run = await world.run({
      direction: 'pull',
      target: path.join(world.dir, 'pull-missing'),
      manifest: file,
      include: 'none',
    });
    expect(run.code).not.toBe(0);
    expect(run.errors.join('\n')).toMatch(
      /required model\(s\) missing from R2 .*checkpoints\/nowhere\.safetensors/,
    );
  });
});

describe('bad inputs fail before any request', () => {
  it.each([
    [
      { direction: 'sideways' },
      /Input 'direction' is invalid: got "sideways"; expected one of push, pull/,
    ],
    [
      { source: 'ssh://host-without-user/models' },
      /Input 'source' is invalid: got "ssh:\/\/host-without-user\/models"; expected ssh:\/\/user@host:port/,
    ],
    [{ source: 'ssh://dev@host:99999/models' }, /Input 'source' is invalid/],
    [
      { 'part-size': '4MiB' },
      /Input 'part-size' is invalid: got "4MiB"; expected a size .*from 5MiB to 5GiB/,
    ],
    [{ 'part-size': '6GiB' }, /Input 'part-size' is invalid: got "6GiB"/],
    [
      { concurrency: '0' },
      /Input 'concurrency' is invalid: got "0"; expected an integer from 1 to 64/,
    ],
    [{ compare: 'md5' }, /Input 'compare' is invalid/],
  ])('%j', async (overrides, message) => {
    const run = await world.run({ source: tree.root, ...overrides });
    expect(run.code).not.toBe(0);
    expect(run.errors.join('\n')).toMatch(message);
    expect(world.r2.requests()).toEqual([]);
  });

  it('a manifest with a duplicate path', async () => {
    const file = path.join(world.dir, 'dup.yml');
    await writeFile(
      file,
      'models:\n  - path: loras/a.safetensors\n  - path: loras/a.safetensors\n',
    );
    const run = await world.run({ source: tree.root, manifest: file });
    expect(run.errors.join('\n')).toMatch(
      /dup\.yml is invalid:.*duplicate path "loras\/a\.safetensors"/s,
    );
    expect(world.r2.requests()).toEqual([]);
  });

  it('an include pattern that matches nothing is a warning, not a failure', async () => {
    const run = await world.run({ source: tree.root, include: '**/*.ckpt' });
    expect(run.code).toBe(0);
    expect(run.warnings.join('\n')).toMatch(/include "\*\*\/\*\.ckpt" matched no file/);
    expect(run.outputs.uploaded).toBe('0');
  });
});
