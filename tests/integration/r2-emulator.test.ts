import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
  jest,
} from '@jest/globals';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createR2Client } from '../../src/lib/r2.js';
import { startR2Emulator, type R2Emulator } from '../../src/sandbox/r2.js';
import { startDiscardSink } from '../../src/sandbox/discard-sink.js';

// Transfers of tens of MiB through the bundle on a shared 2-core machine.
jest.setTimeout(120_000);

const MiB = 2 ** 20;
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const bucket = 'vault';

let emu: R2Emulator;
const stopLater: (() => Promise<void>)[] = [];
let s3: S3Client;

const client = (
  over: {
    secretAccessKey?: string;
    accessKeyId?: string;
    maxAttempts?: number;
    requestTimeoutMs?: number;
  } = {},
): S3Client =>
  createR2Client({
    endpoint: emu.endpoint,
    accessKeyId: over.accessKeyId ?? emu.accessKeyId,
    secretAccessKey: over.secretAccessKey ?? emu.secretAccessKey,
    maxAttempts: over.maxAttempts ?? 1,
    ...(over.requestTimeoutMs ? { requestTimeoutMs: over.requestTimeoutMs } : {}),
  });

async function download(key: string, c = s3): Promise<Buffer> {
  const out = await c.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

/** Uploads parts of the given sizes and tries to complete; returns the Complete error, if any. */
async function multipart(
  key: string,
  sizes: number[],
): Promise<{
  error?: Error & { Code?: string };
  data: Buffer;
  etag?: string;
  partEtags: string[];
}> {
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
  );
  const chunks = sizes.map((n) => randomBytes(n));
  const parts = [];
  for (const [i, body] of chunks.entries()) {
    const r = await s3.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: i + 1, Body: body }),
    );
    parts.push({ PartNumber: i + 1, ETag: r.ETag! });
  }
  const partEtags = parts.map((p) => p.ETag);
  try {
    const done = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: parts },
      }),
    );
    return { data: Buffer.concat(chunks), etag: done.ETag!, partEtags };
  } catch (error) {
    return { error: error as Error, data: Buffer.concat(chunks), partEtags };
  }
}

beforeAll(async () => {
  emu = await startR2Emulator({ buckets: [bucket] });
  s3 = client();
});
afterAll(async () => {
  for (const stop of stopLater) await stop();
  s3?.destroy();
  await emu?.stop();
});
beforeEach(() => {
  emu.clearFaults();
  emu.resetCounts();
});

describe('R2 emulator: storage through the rules proxy', () => {
  it('returns the uploaded bytes (sha256) for PutObject and an R2-correct multipart upload', async () => {
    const small = randomBytes(MiB + 17);
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'a/small.bin',
        Body: small,
        Metadata: { sha256: sha256(small) },
      }),
    );
    expect(sha256(await download('a/small.bin'))).toBe(sha256(small));
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'a/small.bin' }));
    expect(head.Metadata?.sha256).toBe(sha256(small));

    const { error, data } = await multipart('a/big.bin', [5 * MiB, 5 * MiB, 3 * MiB + 5]);
    expect(error).toBeUndefined();
    expect(sha256(await download('a/big.bin'))).toBe(sha256(data));
  });

  it('gives a multipart object R2’s ETag (MD5 of the part MD5s, "-<count>"), in the reply and on HEAD', async () => {
    const sizes = [5 * MiB, 2 * MiB];
    const { error, data, etag, partEtags } = await multipart('a/etag.bin', sizes);
    expect(error).toBeUndefined();
    // Each part's ETag is the MD5 of its bytes; the object's is computed from those.
    const md5 = (b: Buffer) => createHash('md5').update(b).digest();
    const expected = `"${createHash('md5')
      .update(Buffer.concat([md5(data.subarray(0, 5 * MiB)), md5(data.subarray(5 * MiB))]))
      .digest('hex')}-2"`;
    expect(partEtags).toEqual([
      `"${md5(data.subarray(0, 5 * MiB)).toString('hex')}"`,
      `"${md5(data.subarray(5 * MiB)).toString('hex')}"`,
    ]);
    expect(etag).toBe(expected);
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'a/etag.bin' }));
    expect(head.ETag).toBe(expected);
    expect(sha256(await download('a/etag.bin'))).toBe(sha256(data));
  });

  it('rejects unequal non-trailing parts at Complete with R2 error text', async () => {
    const { error } = await multipart('rules/unequal.bin', [6 * MiB, 5 * MiB, MiB]);
    expect(error?.name).toBe('InvalidPart');
    expect(error?.message).toBe('All non-trailing parts must have the same length.');
    await expect(
      s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'rules/unequal.bin' })),
    ).rejects.toThrow();
  });

  it('rejects a non-trailing part under 5 MiB at Complete', async () => {
    const { error } = await multipart('rules/small-part.bin', [4 * MiB, 4 * MiB]);
    expect(error?.name).toBe('EntityTooSmall');
  });

  it('rejects a trailing part larger than the others', async () => {
    const { error } = await multipart('rules/big-tail.bin', [5 * MiB, 6 * MiB]);
    expect(error?.message).toBe('All non-trailing parts must have the same length.');
  });

  it('rejects part numbers out of range and parts of unknown uploads', async () => {
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'rules/n.bin' }),
    );
    await expect(
      s3.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: 'rules/n.bin',
          UploadId,
          PartNumber: 10_001,
          Body: Buffer.alloc(10),
        }),
      ),
    ).rejects.toMatchObject({ name: 'InvalidArgument' });
    await expect(
      s3.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: 'rules/n.bin',
          UploadId: 'abcdef',
          PartNumber: 1,
          Body: Buffer.alloc(10),
        }),
      ),
    ).rejects.toMatchObject({ name: 'NoSuchUpload' });
  });

  it('rejects metadata over 8,192 bytes and accepts it at the limit', async () => {
    const big = { a: 'x'.repeat(8192) }; // 1 + 8192 bytes
    await expect(
      s3.send(
        new PutObjectCommand({ Bucket: bucket, Key: 'rules/meta', Body: 'x', Metadata: big }),
      ),
    ).rejects.toMatchObject({
      name: 'MetadataTooLarge',
    });
    await expect(
      s3.send(
        new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'rules/meta', Metadata: big }),
      ),
    ).rejects.toMatchObject({ name: 'MetadataTooLarge' });
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'rules/meta',
        Body: 'x',
        Metadata: { a: 'x'.repeat(8191) },
      }),
    );
  });

  it('answers 412 PreconditionFailed to If-None-Match: * on an existing key', async () => {
    await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'rules/once', Body: 'first', IfNoneMatch: '*' }),
    );
    const err = await s3
      .send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'rules/once',
          Body: 'second',
          IfNoneMatch: '*',
        }),
      )
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } });
    expect((await download('rules/once')).toString()).toBe('first');
  });

  it('rejects flexible checksum headers (x-amz-checksum-*)', async () => {
    await expect(
      s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: 'rules/crc',
          Body: 'data',
          ChecksumAlgorithm: 'CRC32',
        }),
      ),
    ).rejects.toMatchObject({ name: 'NotImplemented', $metadata: { httpStatusCode: 501 } });
  });

  it('is sent no Expect: 100-continue by the R2 client (a round trip per part saved)', async () => {
    const body = randomBytes(3 * MiB);
    emu.resetCounts();
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'expect/ours', Body: body }));
    // The SDK's default (checksums aside) asks for it on bodies from 2 MiB: the record tells.
    const sdkDefault = new S3Client({
      endpoint: emu.endpoint,
      region: 'auto',
      forcePathStyle: true,
      credentials: { accessKeyId: emu.accessKeyId, secretAccessKey: emu.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    await sdkDefault.send(new PutObjectCommand({ Bucket: bucket, Key: 'expect/sdk', Body: body }));
    sdkDefault.destroy();
    expect(emu.requests().map((r) => [r.key, r.expect])).toEqual([
      ['expect/ours', undefined],
      ['expect/sdk', '100-continue'],
    ]);
  });

  it('refuses a wrong secret and a wrong access key id with 403', async () => {
    const wrongSecret = client({ secretAccessKey: 'not-the-secret' });
    await expect(
      wrongSecret.send(new ListObjectsV2Command({ Bucket: bucket })),
    ).rejects.toMatchObject({
      name: 'SignatureDoesNotMatch',
      $metadata: { httpStatusCode: 403 },
    });
    await expect(
      wrongSecret.send(new PutObjectCommand({ Bucket: bucket, Key: 'rules/nope', Body: 'x' })),
    ).rejects.toMatchObject({
      $metadata: { httpStatusCode: 403 },
    });
    const wrongKey = client({ accessKeyId: 'someone-else' });
    await expect(wrongKey.send(new ListObjectsV2Command({ Bucket: bucket }))).rejects.toMatchObject(
      {
        name: 'InvalidAccessKeyId',
        $metadata: { httpStatusCode: 403 },
      },
    );
    wrongSecret.destroy();
    wrongKey.destroy();
    await expect(
      s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'rules/nope' })),
    ).rejects.toMatchObject({ name: 'NotFound' });
  });

  it('serves a presigned GET (query auth) with a Range, and refuses an expired or tampered one with 403', async () => {
    const body = randomBytes(MiB + 5);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'presigned/a b', Body: body }));
    const command = () => new GetObjectCommand({ Bucket: bucket, Key: 'presigned/a b' });
    const url = await getSignedUrl(s3, command(), { expiresIn: 3600 });
    const ranged = await fetch(url, { headers: { range: 'bytes=1000-' } });
    expect(ranged.status).toBe(206);
    expect(sha256(new Uint8Array(await ranged.arrayBuffer()))).toBe(sha256(body.subarray(1000)));
    const [get] = emu.requests().filter((r) => r.operation === 'GetObject');
    expect(get).toMatchObject({
      presigned: true,
      range: 'bytes=1000-',
      replyBytes: MiB + 5 - 1000,
    });

    const signedLongAgo = await getSignedUrl(s3, command(), {
      expiresIn: 60,
      signingDate: new Date(Date.now() - 3600_000),
    });
    const expired = await fetch(signedLongAgo);
    expect(expired.status).toBe(403);
    expect(await expired.text()).toContain('Request has expired');
    const tampered = await fetch(url.replace(/X-Amz-Signature=../, 'X-Amz-Signature=00'));
    expect(tampered.status).toBe(403);
    expect(await tampered.text()).toContain('SignatureDoesNotMatch');
  });
});

describe('R2 emulator: multipart bookkeeping s3rver lacks', () => {
  it('lists stored parts and pending uploads, and aborts', async () => {
    const key = 'mp/resume.bin';
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
    );
    const body = randomBytes(5 * MiB);
    const p1 = await s3.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: body }),
    );
    await s3.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 3, Body: body }),
    );
    const parts = await s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId }));
    expect(parts.Parts?.map((p) => [p.PartNumber, p.Size, p.ETag])).toEqual([
      [1, 5 * MiB, p1.ETag],
      [3, 5 * MiB, p1.ETag],
    ]);
    await emu.setUploadInitiated(bucket, UploadId!, new Date('2020-01-02T03:04:05Z'));
    const uploads = await s3.send(
      new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: 'mp/' }),
    );
    expect(uploads.Uploads?.map((u) => [u.Key, u.UploadId, u.Initiated?.toISOString()])).toEqual([
      [key, UploadId, '2020-01-02T03:04:05.000Z'],
    ]);
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId }));
    expect(
      (await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: 'mp/' }))).Uploads ??
        [],
    ).toEqual([]);
    await expect(
      s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId })),
    ).rejects.toMatchObject({ name: 'NoSuchUpload' });
    expect(emu.counts().byOperation).toMatchObject({
      CreateMultipartUpload: 1,
      UploadPart: 2,
      ListParts: 2,
      ListMultipartUploads: 2,
      AbortMultipartUpload: 1,
    });
  });
});

describe('R2 emulator: counts', () => {
  it('counts Class A and Class B operations by name', async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'count/one', Body: 'one' }));
    await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'count/' }));
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'count/one' }));
    await download('count/one');
    await download('count/one');
    expect(emu.counts()).toEqual({
      classA: 2,
      classB: 3,
      byOperation: { PutObject: 1, ListObjectsV2: 1, HeadObject: 1, GetObject: 2 },
    });
    emu.resetCounts();
    expect(emu.counts()).toEqual({ classA: 0, classB: 0, byOperation: {} });
  });

  it('lists in pages of at most 1,000 keys (truncated pages work)', async () => {
    await Promise.all(
      Array.from({ length: 1001 }, (_, i) =>
        s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: `many/${String(i).padStart(4, '0')}`,
            Body: 'x',
          }),
        ),
      ),
    );
    emu.resetCounts();
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: 'many/', ContinuationToken: token }),
      );
      keys.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.NextContinuationToken;
    } while (token);
    expect(keys).toHaveLength(1001);
    expect(emu.counts().byOperation).toEqual({ ListObjectsV2: 2 });
  });
});

describe('R2 emulator: faults', () => {
  it('answers 503 SlowDown on the n-th matching request, then serves normally', async () => {
    emu.addFault({ operation: 'PutObject', nth: 2, action: 'status', status: 503 });
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'f/1', Body: '1' }));
    await expect(
      s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'f/2', Body: '2' })),
    ).rejects.toMatchObject({
      name: 'SlowDown',
      $metadata: { httpStatusCode: 503 },
    });
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'f/2', Body: '2' }));
    expect(emu.requests().map((r) => [r.key, r.status, r.fault])).toEqual([
      ['f/1', 200, undefined],
      ['f/2', 503, 'status'],
      ['f/2', 200, undefined],
    ]);
  });

  it('answers 500 InternalError by key pattern, `times` times', async () => {
    emu.addFault({ keyPattern: /^f\/five/, times: 2, action: 'status' });
    const retrying = client({ maxAttempts: 3 });
    await retrying.send(new PutObjectCommand({ Bucket: bucket, Key: 'f/five', Body: '5' }));
    retrying.destroy();
    expect(emu.requests().map((r) => r.status)).toEqual([500, 500, 200]);
  });

  it('resets the connection mid-body on an upload, and nothing is stored', async () => {
    emu.addFault({ operation: 'PutObject', action: 'reset' });
    const err = await s3
      .send(new PutObjectCommand({ Bucket: bucket, Key: 'f/reset', Body: randomBytes(2 * MiB) }))
      .catch((e: unknown) => e);
    expect(String((err as { code?: string }).code ?? err)).toMatch(
      /ECONNRESET|EPIPE|socket hang up/,
    );
    await expect(
      s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'f/reset' })),
    ).rejects.toMatchObject({ name: 'NotFound' });
  });

  it('resets a download after part of the response body', async () => {
    const data = randomBytes(3 * MiB);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'f/get', Body: data }));
    emu.addFault({ operation: 'GetObject', action: 'reset', resetAfterBytes: MiB });
    await expect(download('f/get')).rejects.toThrow();
    expect(sha256(await download('f/get'))).toBe(sha256(data));
  });

  it('loses the reply of a request it served: the Complete happened, the client saw a cut', async () => {
    emu.addFault({ operation: 'CompleteMultipartUpload', action: 'lose-reply' });
    const { error, data } = await multipart('f/lost-reply', [5 * MiB, MiB]);
    expect(String((error as { code?: string })?.code ?? error)).toMatch(
      /ECONNRESET|EPIPE|socket hang up/,
    );
    expect(sha256(await download('f/lost-reply'))).toBe(sha256(data));
    const completes = emu.requests().filter((r) => r.operation === 'CompleteMultipartUpload');
    expect(completes.map((r) => r.fault)).toEqual(['lose-reply']);
  });

  it('stalls a request: a client timeout shorter than the stall fails it', async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'f/stall', Body: 'x' }));
    emu.addFault({ operation: 'HeadObject', action: 'stall', stallMs: 800 });
    const impatient = client({ requestTimeoutMs: 200 });
    await expect(
      impatient.send(new HeadObjectCommand({ Bucket: bucket, Key: 'f/stall' })),
    ).rejects.toThrow();
    impatient.destroy();
    emu.addFault({ operation: 'HeadObject', action: 'stall', stallMs: 100 });
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'f/stall' }));
    expect(emu.requests().filter((r) => r.fault === 'stall')).toHaveLength(2);
  });

  it('refuses a signed body damaged on the way with 400 and keeps the old object; stores an unsigned one damaged', async () => {
    const mismatch = { name: 'XAmzContentSHA256Mismatch', $metadata: { httpStatusCode: 400 } };
    const old = randomBytes(MiB);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'f/damaged', Body: old }));
    emu.addFault({ operation: 'PutObject', action: 'corrupt' });
    await expect(
      s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'f/damaged', Body: randomBytes(MiB) })),
    ).rejects.toMatchObject(mismatch);
    expect(sha256(await download('f/damaged'))).toBe(sha256(old));

    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'f/damaged-mp' }),
    );
    emu.addFault({ operation: 'UploadPart', action: 'corrupt', corruptAtByte: 5 * MiB - 1 });
    const part = { Bucket: bucket, Key: 'f/damaged-mp', UploadId, PartNumber: 1 };
    await expect(
      s3.send(new UploadPartCommand({ ...part, Body: randomBytes(5 * MiB) })),
    ).rejects.toMatchObject(mismatch);
    const listed = await s3.send(new ListPartsCommand(part));
    expect(listed.Parts ?? []).toEqual([]);
    await s3.send(new AbortMultipartUploadCommand(part));

    // A stream body goes out as UNSIGNED-PAYLOAD: nothing can tell the damage apart.
    const fresh = randomBytes(MiB);
    emu.addFault({ operation: 'PutObject', action: 'corrupt', corruptAtByte: 10 });
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'f/unsigned',
        Body: Readable.from([fresh]),
        ContentLength: fresh.length,
      }),
    );
    const stored = await download('f/unsigned');
    expect(stored.length).toBe(fresh.length);
    expect([...stored.keys()].filter((i) => stored[i] !== fresh[i])).toEqual([10]);
  });

  it('refuses an unsigned body that does not match its Content-MD5 (BadDigest), keeps the old object, and refuses a malformed Content-MD5 (InvalidDigest)', async () => {
    const md5 = (b: Buffer) => createHash('md5').update(b).digest('base64');
    // A stream body goes out as UNSIGNED-PAYLOAD: only the Content-MD5 can name the damage.
    const unsignedPut = (key: string, body: Buffer, contentMd5: string) =>
      s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: Readable.from([body]),
          ContentLength: body.length,
          ContentMD5: contentMd5,
        }),
      );
    const old = randomBytes(MiB);
    await unsignedPut('f/md5', old, md5(old));
    const fresh = randomBytes(MiB);
    emu.addFault({ operation: 'PutObject', action: 'corrupt', corruptAtByte: 10 });
    await expect(unsignedPut('f/md5', fresh, md5(fresh))).rejects.toMatchObject({
      name: 'BadDigest',
      $metadata: { httpStatusCode: 400 },
    });
    expect(sha256(await download('f/md5'))).toBe(sha256(old));

    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'f/md5-mp' }),
    );
    const part = { Bucket: bucket, Key: 'f/md5-mp', UploadId, PartNumber: 1 };
    const body = randomBytes(5 * MiB);
    emu.addFault({ operation: 'UploadPart', action: 'corrupt', corruptAtByte: 5 * MiB - 1 });
    await expect(
      s3.send(
        new UploadPartCommand({
          ...part,
          Body: Readable.from([body]),
          ContentLength: body.length,
          ContentMD5: md5(body),
        }),
      ),
    ).rejects.toMatchObject({ name: 'BadDigest' });
    expect((await s3.send(new ListPartsCommand(part))).Parts ?? []).toEqual([]);
    await s3.send(new AbortMultipartUploadCommand(part));

    await expect(unsignedPut('f/md5', fresh, 'not-an-md5')).rejects.toMatchObject({
      name: 'InvalidDigest',
      $metadata: { httpStatusCode: 400 },
    });
    expect(sha256(await download('f/md5'))).toBe(sha256(old));
  });

  it('still reads the whole body of a signed part it refuses before using it (NoSuchUpload)', async () => {
    emu.resetCounts();
    const part = { Bucket: bucket, Key: 'f/no-upload', UploadId: 'nope', PartNumber: 1 };
    await expect(
      s3.send(new UploadPartCommand({ ...part, Body: randomBytes(8 * MiB) })),
    ).rejects.toMatchObject({ name: 'NoSuchUpload' });
    // A body left unread would hold the client's socket (and its buffer) forever.
    for (let i = 0; i < 100 && emu.requests()[0]?.bodyBytes === undefined; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(emu.requests().map((r) => [r.operation, r.status, r.bodyBytes])).toEqual([
      ['UploadPart', 404, 8 * MiB],
    ]);
  });

  it('lets tests corrupt stored bytes (for download verification tests)', async () => {
    await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'f/flip', Body: Buffer.alloc(1000, 1) }),
    );
    const file = emu.objectPath(bucket, 'f/flip');
    const bytes = await readFile(file);
    bytes[500] = 0;
    await writeFile(file, bytes);
    expect((await download('f/flip'))[500]).toBe(0);
  });
});

describe('R2 emulator: bucket lock rules', () => {
  afterEach(() => emu.clearLockRules());
  const put = (key: string, body = 'v1') =>
    s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  const del = (key: string) => s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  /** The S3 error of a request, or undefined when it succeeded. */
  const refusal = async (p: Promise<unknown>) => {
    try {
      await p;
      return undefined;
    } catch (err) {
      const e = err as Error & { $metadata?: { httpStatusCode?: number } };
      return { name: e.name, status: e.$metadata?.httpStatusCode, message: e.message };
    }
  };

  it('refuses deleting or overwriting a young object under the prefix with 403 ObjectLockedByBucketPolicy, set at run time', async () => {
    await put('locked/a.txt');
    await put('open/a.txt');
    emu.addLockRule({ prefix: 'locked/', maxAgeSeconds: 3600 });
    expect(await refusal(del('locked/a.txt'))).toEqual({
      name: 'ObjectLockedByBucketPolicy',
      status: 403,
      message: 'Object is protected by a bucket lock rule and cannot be modified or deleted.',
    });
    expect((await refusal(put('locked/a.txt', 'v2')))?.name).toBe('ObjectLockedByBucketPolicy');
    expect((await download('locked/a.txt')).toString()).toBe('v1');
    // New keys under the prefix can be created; other prefixes are not held.
    expect(await refusal(put('locked/new.txt'))).toBeUndefined();
    expect(await refusal(del('open/a.txt'))).toBeUndefined();
    const record = emu.requests().find((r) => r.operation === 'DeleteObject');
    expect(record?.status).toBe(403);
    emu.clearLockRules();
    expect(await refusal(del('locked/a.txt'))).toBeUndefined();
  });

  it('goes by the object’s age: an object older than the rule can be deleted', async () => {
    await put('aged/old.txt');
    await put('aged/young.txt');
    await emu.setObjectModified(bucket, 'aged/old.txt', new Date(Date.now() - 2 * 3600_000));
    emu.addLockRule({ prefix: 'aged/', maxAgeSeconds: 3600 });
    expect(await refusal(del('aged/old.txt'))).toBeUndefined();
    expect((await refusal(del('aged/young.txt')))?.name).toBe('ObjectLockedByBucketPolicy');
  });

  it('refuses a multipart Complete and a DeleteObjects batch over a held key; a rule given at start applies', async () => {
    const locked = await startR2Emulator({
      buckets: [bucket],
      lockRules: [{ prefix: '', maxAgeSeconds: Infinity }],
    });
    stopLater.push(() => locked.stop());
    const c = createR2Client({
      endpoint: locked.endpoint,
      accessKeyId: locked.accessKeyId,
      secretAccessKey: locked.secretAccessKey,
      maxAttempts: 1,
    });
    // The SDK adds a flexible checksum to DeleteObjects, which the R2 rules refuse first.
    c.middlewareStack.add(
      (next) => (args) => {
        const headers = (args.request as { headers: Record<string, string> }).headers;
        for (const name of Object.keys(headers))
          if (/^x-amz-(checksum-|sdk-checksum)/.test(name)) delete headers[name];
        return next(args);
      },
      { step: 'build', priority: 'low' },
    );
    await c.send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: 'v1' }));
    const { UploadId } = await c.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'k' }),
    );
    const part = await c.send(
      new UploadPartCommand({ Bucket: bucket, Key: 'k', UploadId, PartNumber: 1, Body: 'v2' }),
    );
    expect(
      (
        await refusal(
          c.send(
            new CompleteMultipartUploadCommand({
              Bucket: bucket,
              Key: 'k',
              UploadId,
              MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag! }] },
            }),
          ),
        )
      )?.name,
    ).toBe('ObjectLockedByBucketPolicy');
    expect(
      (
        await refusal(
          c.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: 'k' }] } })),
        )
      )?.name,
    ).toBe('ObjectLockedByBucketPolicy');
    // Aborting an upload is no change to an object: allowed.
    expect(
      await refusal(
        c.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'k', UploadId })),
      ),
    ).toBeUndefined();
    c.destroy();
  });

  it('has a no-delete key pair: it reads and writes, and every delete gets 403 AccessDenied', async () => {
    const noDelete = client(emu.noDeleteKey);
    await noDelete.send(new PutObjectCommand({ Bucket: bucket, Key: 'nd/a.txt', Body: 'x' }));
    expect((await download('nd/a.txt', noDelete)).toString()).toBe('x');
    const { UploadId } = await noDelete.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'nd/b' }),
    );
    for (const request of [
      noDelete.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'nd/a.txt' })),
      noDelete.send(
        new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: 'nd/a.txt' }] } }),
      ),
      noDelete.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'nd/b', UploadId })),
    ])
      expect(await refusal(request)).toMatchObject({ name: 'AccessDenied', status: 403 });
    expect((await download('nd/a.txt')).toString()).toBe('x');
    // The main key still may.
    expect(await refusal(del('nd/a.txt'))).toBeUndefined();
    noDelete.destroy();
  });
});

describe('discard sink', () => {
  it('takes a lib-storage multipart upload, drops the bytes and remembers the size and R2 ETag', async () => {
    const sink = await startDiscardSink();
    stopLater.push(() => sink.stop());
    const c = createR2Client({
      endpoint: sink.endpoint,
      accessKeyId: sink.accessKeyId,
      secretAccessKey: sink.secretAccessKey,
    });
    const body = randomBytes(12 * MiB);
    const up = new Upload({
      client: c,
      params: { Bucket: 'b', Key: 'k', Body: body },
      partSize: 5 * MiB,
      queueSize: 2,
    });
    await up.done();
    // It keeps sizes and R2's ETags (no bytes), so an uploader's check of what it wrote passes.
    const md5 = (b: Buffer) => createHash('md5').update(b).digest();
    const partMd5s = [0, 5, 10].map((at) => md5(body.subarray(at * MiB, (at + 5) * MiB)));
    const head = await c.send(new HeadObjectCommand({ Bucket: 'b', Key: 'k' }));
    expect(head.ContentLength).toBe(12 * MiB);
    expect(head.ETag).toBe(`"${md5(Buffer.concat(partMd5s)).toString('hex')}-3"`);
    const put = await c.send(new PutObjectCommand({ Bucket: 'b', Key: 'small', Body: 'abc' }));
    expect(put.ETag).toBe(`"${md5(Buffer.from('abc')).toString('hex')}"`);
    await expect(
      c.send(new HeadObjectCommand({ Bucket: 'b', Key: 'other' })),
    ).rejects.toMatchObject({
      name: 'NotFound',
    });
    const list = await c.send(new ListObjectsV2Command({ Bucket: 'b' }));
    expect(list.Contents ?? []).toEqual([]);
    expect(sink.stats().bytes).toBe(12 * MiB + 3);
    c.destroy();
  });
});

describe('start-up', () => {
  it('fails with a clear message without --openssl-legacy-provider', () => {
    const env = { ...process.env, NODE_OPTIONS: '' };
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        "import('./src/sandbox/r2.ts').then((m) => m.startR2Emulator()).catch((e) => { console.error(e.message); process.exit(3); })",
      ],
      { env, encoding: 'utf8' },
    );
    expect(r.status).toBe(3);
    expect(r.stderr).toContain('--openssl-legacy-provider');
  });
});
