// syncModels as a library (what backup-verda's with-models calls), against the R2 emulator:
// files over the CopyObject limit are hashed before upload so the sha256 goes into the upload's
// metadata, and a file that changes between that hash and the upload is refused, not stored.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { memoryLogger } from '../../src/lib/logger.js';
import { LocalModelHost } from '../../src/models/host.js';
import { syncModels, type SyncModelsOptions } from '../../src/models/sync.js';
import { BUCKET, MiB, startSyncWorld, type SyncWorld } from './sync-models-setup.js';

jest.setTimeout(120_000);

let world: SyncWorld;
beforeAll(async () => {
  world = await startSyncWorld();
});
afterAll(async () => {
  await world?.stop();
});

const options = (host: SyncModelsOptions['host'], prefix: string): SyncModelsOptions => ({
  direction: 'push',
  host,
  client: world.s3,
  bucket: BUCKET,
  prefix: `${prefix}/`,
  include: ['**/*.safetensors'],
  compare: 'size',
  concurrency: 2,
  delete: false,
  dryRun: false,
  hfFallback: false,
  metadataCopyLimit: 10 * MiB,
});

describe('syncModels library', () => {
  it('hashes files over the copy limit first: sha256 in the metadata without a CopyObject', async () => {
    const tree = await world.makeTree('lib', {
      'checkpoints/over.safetensors': 20 * MiB,
      'loras/under.safetensors': 6 * MiB,
    });
    world.r2.resetCounts();
    const logger = memoryLogger();
    const report = await syncModels(options(new LocalModelHost(tree.root), 'lib'), logger);
    expect(report.uploaded).toBe(2);
    // under: one PutObject with its sha256; over: multipart created with it; no copy needed.
    expect(world.r2.counts().byOperation.CopyObject).toBeUndefined();
    expect(report.requests.byOperation).toMatchObject({
      ListObjectsV2: 1,
      CreateMultipartUpload: 1,
      UploadPart: 3, // 20 MiB in parts of 8 MiB (part-size auto)
      PutObject: 2,
    });
    expect(report.requests.classA).toBe(world.r2.counts().classA);
    expect((await world.meta('checkpoints/over.safetensors', 'lib')).sha256).toBe(
      tree.sha['checkpoints/over.safetensors'],
    );
    expect((await world.meta('loras/under.safetensors', 'lib')).sha256).toBe(
      tree.sha['loras/under.safetensors'],
    );
    expect(logger.lines.some((l) => /Hashing 1 file\(s\) over 5 GiB/.test(l.message))).toBe(true);
  });

  it('refuses a file whose bytes differ from its hash taken before the upload, and stores nothing', async () => {
    const tree = await world.makeTree('lib-changed', {
      'checkpoints/moving.safetensors': 20 * MiB,
    });
    const host = new LocalModelHost(tree.root);
    // The file "changes" between the hash and the read: the hash says other bytes.
    host.sha256 = async (files) => new Map(files.map((f) => [f, 'f'.repeat(64)]));
    await expect(syncModels(options(host, 'lib-changed'), memoryLogger())).rejects.toThrow(
      /checkpoints\/moving\.safetensors: the file changed while it was uploaded .*nothing was stored/,
    );
    await expect(world.meta('checkpoints/moving.safetensors', 'lib-changed')).rejects.toThrow();
    expect(await world.pendingUploads()).toEqual([]);
  });
});
