// Shared world for the sync-models integration tests: the R2 emulator (with its rules), a
// scratch directory for model trees, and a runner for the action's bundle with every secret
// registered for the leak check.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type MultipartUpload,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createR2Client } from '../../src/lib/r2.js';
import { startR2Emulator, type R2Emulator } from '../../src/sandbox/r2.js';
import { runAction, type ActionRun } from '../helpers/run-action.js';

export const BUCKET = 'model-vault';
export const PREFIX = 'models';
export const MiB = 2 ** 20;

export interface SyncWorld {
  r2: R2Emulator;
  s3: S3Client;
  dir: string;
  secrets: string[];
  inputs(overrides?: Record<string, string>): Record<string, string>;
  run(
    overrides?: Record<string, string>,
    extraSecrets?: string[],
    env?: Record<string, string>,
  ): Promise<ActionRun>;
  /** Writes random files (sizes in bytes) under a new directory; returns it and each file's sha256. */
  makeTree(
    name: string,
    files: Record<string, number>,
  ): Promise<{ root: string; sha: Record<string, string> }>;
  /** An object under PREFIX (or under `prefix`). */
  get(rel: string, prefix?: string): Promise<Buffer>;
  meta(rel: string, prefix?: string): Promise<Record<string, string>>;
  /** Flips one bit of a stored object (R2 serving bad bytes); returns a function that restores it. */
  corrupt(rel: string, prefix?: string): Promise<() => Promise<void>>;
  pendingUploads(): Promise<MultipartUpload[]>;
  stop(): Promise<void>;
}

export const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

export async function fileSha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file) as AsyncIterable<Buffer>) h.update(c);
  return h.digest('hex');
}

export async function startSyncWorld(): Promise<SyncWorld> {
  const r2 = await startR2Emulator({ buckets: [BUCKET] });
  const s3 = createR2Client({
    endpoint: r2.endpoint,
    accessKeyId: r2.accessKeyId,
    secretAccessKey: r2.secretAccessKey,
  });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sync-models-test-'));
  const secrets = [r2.secretAccessKey, r2.accessKeyId];
  const inputs = (overrides: Record<string, string> = {}): Record<string, string> => ({
    direction: 'push',
    bucket: BUCKET,
    prefix: PREFIX,
    'r2-endpoint': r2.endpoint,
    'r2-access-key-id': r2.accessKeyId,
    'r2-secret-access-key': r2.secretAccessKey,
    manifest: path.join(dir, 'no-models.yml'),
    ...overrides,
  });
  await writeFile(path.join(dir, 'no-models.yml'), 'models: []\n');
  return {
    r2,
    s3,
    dir,
    secrets,
    inputs,
    run: (overrides = {}, extraSecrets = [], env = {}) =>
      runAction('sync-models', {
        inputs: inputs(overrides),
        secrets: [...secrets, ...extraSecrets],
        env,
        timeoutMs: 110_000, // under the tests' 120 s, so a hung run is killed first
      }),
    async makeTree(name, files) {
      const root = path.join(dir, name);
      const sha: Record<string, string> = {};
      for (const [rel, size] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
        const data = randomBytes(size);
        sha[rel] = sha256(data);
        await writeFile(path.join(root, rel), data);
      }
      return { root, sha };
    },
    async get(rel, prefix = PREFIX) {
      const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}/${rel}` }));
      return Buffer.from(await out.Body!.transformToByteArray());
    },
    async meta(rel, prefix = PREFIX) {
      return (
        (await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}/${rel}` })))
          .Metadata ?? {}
      );
    },
    async corrupt(rel, prefix = PREFIX) {
      const stored = r2.objectPath(BUCKET, `${prefix}/${rel}`);
      const good = await readFile(stored);
      const bad = Buffer.from(good);
      bad[1234] = bad[1234]! ^ 1;
      await writeFile(stored, bad);
      return () => writeFile(stored, good);
    },
    async pendingUploads() {
      return (await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }))).Uploads ?? [];
    },
    async stop() {
      s3.destroy();
      await r2.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
