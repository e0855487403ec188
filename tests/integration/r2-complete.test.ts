// A CompleteMultipartUpload whose reply is lost: R2 stored the object, the client saw a cut, and
// the next attempt finds no upload (404 NoSuchUpload). uploadStream must accept the stored object
// when it is this upload (its multipart ETag), and fail when the upload vanished otherwise.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import {
  AbortMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { memoryLogger } from '../../src/lib/logger.js';
import { createR2Client } from '../../src/lib/r2.js';
import { R2Store } from '../../src/lib/r2-store.js';
import { uploadStream } from '../../src/lib/r2-stream-upload.js';
import { startR2Emulator, type R2Emulator } from '../../src/sandbox/r2.js';

jest.setTimeout(60_000);

const MiB = 2 ** 20;
const bucket = 'complete';
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
let emu: R2Emulator;
const clients: S3Client[] = [];

/** maxAttempts 1: only uploadStream's retry; 3 (the default): the SDK resends by itself first. */
function client(maxAttempts: number): S3Client {
  const c = createR2Client({ ...emu, maxAttempts });
  clients.push(c);
  return c;
}

async function stored(key: string): Promise<Buffer> {
  const out = await client(1).send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

function upload(c: S3Client, key: string, data: Buffer, beforeComplete?: () => Promise<unknown>) {
  const logger = memoryLogger();
  const done = uploadStream({
    store: new R2Store({ client: c, bucket, logger, retry: { baseDelayMs: 10 } }),
    key,
    body: Readable.from([data]),
    ...(beforeComplete ? { beforeComplete } : {}),
  });
  return { done, logger };
}

const completes = () =>
  emu
    .requests()
    .filter((r) => r.operation === 'CompleteMultipartUpload')
    .map((r) => [r.status, r.fault]);

beforeAll(async () => {
  emu = await startR2Emulator({ buckets: [bucket] });
});
afterAll(async () => {
  for (const c of clients) c.destroy();
  await emu?.stop();
});
beforeEach(() => {
  emu.clearFaults();
  emu.resetCounts();
});

describe('a lost CompleteMultipartUpload reply', () => {
  // uploadStream's own retry (the actions run with SDK maxAttempts 1) is tested through the
  // bundles: in jest's module realm the SDK wraps a socket error into a plain Error that no
  // longer says what it was, so only the SDK's own resend can be tested here.
  it('is recognised after the SDK resent it: the stored object has this upload’s ETag', async () => {
    const attempts = 3;
    const key = `lost/${attempts}.bin`;
    const data = randomBytes(11 * MiB);
    emu.addFault({ operation: 'CompleteMultipartUpload', action: 'lose-reply' });
    const { done, logger } = upload(client(attempts), key, data);
    const result = await done;
    expect(result).toMatchObject({ size: data.length, sha256: sha256(data), parts: 3 });
    expect(sha256(await stored(key))).toBe(sha256(data));
    expect(completes()).toEqual([
      [0, 'lose-reply'],
      [404, undefined],
    ]);
    expect(logger.warnings().join('\n')).toMatch(/already stored it \(its reply was lost\)/);
    const pending = await client(1).send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(pending.Uploads ?? []).toEqual([]);
  });

  it('asks again when the HEAD that would recognise it fails (503), then recognises it', async () => {
    const key = 'lost/head-503.bin';
    const data = randomBytes(6 * MiB);
    emu.addFault({ operation: 'CompleteMultipartUpload', action: 'lose-reply' });
    // The SDK resends Complete (404) and tries HEAD 3 times (503 each); the uploader's retry
    // then makes the whole attempt again: Complete (404), HEAD (the object, this upload's ETag).
    emu.addFault({ operation: 'HeadObject', action: 'status', status: 503, times: 3 });
    const { done, logger } = upload(client(3), key, data);
    expect((await done).sha256).toBe(sha256(data));
    expect(sha256(await stored(key))).toBe(sha256(data));
    expect(completes()).toEqual([
      [0, 'lose-reply'],
      [404, undefined],
      [404, undefined],
    ]);
    expect(logger.warnings().join('\n')).toMatch(/already stored it/);
  });

  it('fails when the upload vanished and the key holds another object', async () => {
    const key = 'lost/other.bin';
    const older = randomBytes(MiB);
    const c = client(1);
    await c.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: older }));
    // Someone (a lifecycle rule, a cleanup) aborts the upload just before it is completed.
    const abortAll = async () => {
      const { Uploads } = await c.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      for (const u of Uploads ?? [])
        await c.send(
          new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }),
        );
    };
    const { done, logger } = upload(c, key, randomBytes(6 * MiB), abortAll);
    await expect(done).rejects.toThrow(/R2 upload of lost\/other\.bin failed: .*upload/i);
    expect(completes()).toEqual([[404, undefined]]);
    expect(emu.requests().filter((r) => r.operation === 'HeadObject')).toHaveLength(1);
    expect(sha256(await stored(key))).toBe(sha256(older));
    expect(logger.warnings().join('\n')).not.toMatch(/already stored/);
  });

  it('fails when the upload vanished and nothing is stored', async () => {
    const c = client(1);
    const abortAll = async () => {
      const { Uploads } = await c.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      for (const u of Uploads ?? [])
        await c.send(
          new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }),
        );
    };
    const { done } = upload(c, 'lost/none.bin', randomBytes(6 * MiB), abortAll);
    await expect(done).rejects.toThrow(/NoSuchUpload|upload does not exist/i);
    await expect(
      c.send(new HeadObjectCommand({ Bucket: bucket, Key: 'lost/none.bin' })),
    ).rejects.toMatchObject({ name: 'NotFound' });
  });
});
