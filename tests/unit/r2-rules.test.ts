import { describe, expect, it } from '@jest/globals';
import { SignatureV4 } from '@smithy/signature-v4';
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import {
  S3ErrorReply,
  checkCompletedParts,
  checkRequestHeaders,
  classifyRequest,
  lockingRule,
  metadataSize,
  objectLocked,
  parseCompleteBody,
  parseDeleteBody,
  type S3Request,
} from '../../src/sandbox/r2-rules.js';
import { verifySigV4 } from '../../src/sandbox/sigv4.js';

const MiB = 2 ** 20;

type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytes = (d: SourceData): string | Uint8Array =>
  typeof d === 'string'
    ? d
    : ArrayBuffer.isView(d)
      ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
      : new Uint8Array(d);

/** The hash constructor shape the smithy signer wants, backed by node:crypto. */
class Sha256 {
  private readonly h: Hash | Hmac;
  constructor(secret?: SourceData) {
    this.h = secret ? createHmac('sha256', bytes(secret)) : createHash('sha256');
  }
  update(data: SourceData): void {
    this.h.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return this.h.digest();
  }
}
const req = (
  method: string,
  bucket?: string,
  key?: string,
  query = '',
  headers: S3Request['headers'] = {},
): S3Request => ({
  method,
  bucket,
  key,
  query: new URLSearchParams(query),
  headers,
});

describe('classifyRequest', () => {
  it.each([
    ['GET', 'b', undefined, 'list-type=2', 'ListObjectsV2', 'A'],
    ['GET', 'b', undefined, 'uploads', 'ListMultipartUploads', 'A'],
    ['PUT', 'b', 'k', '', 'PutObject', 'A'],
    ['PUT', 'b', 'k', 'partNumber=1&uploadId=x', 'UploadPart', 'A'],
    ['POST', 'b', 'k', 'uploads', 'CreateMultipartUpload', 'A'],
    ['POST', 'b', 'k', 'uploadId=x', 'CompleteMultipartUpload', 'A'],
    ['GET', 'b', 'k', 'uploadId=x', 'ListParts', 'A'],
    ['GET', 'b', 'k', '', 'GetObject', 'B'],
    ['HEAD', 'b', 'k', '', 'HeadObject', 'B'],
    ['HEAD', 'b', undefined, '', 'HeadBucket', 'B'],
    ['DELETE', 'b', 'k', 'uploadId=x', 'AbortMultipartUpload', 'free'],
    ['DELETE', 'b', 'k', '', 'DeleteObject', 'free'],
  ])('%s /%s/%s?%s is %s (class %s)', (method, bucket, key, query, operation, opClass) => {
    expect(classifyRequest(req(method, bucket, key, query))).toEqual({ operation, opClass });
  });

  it('tells CopyObject from PutObject', () => {
    expect(
      classifyRequest(req('PUT', 'b', 'k', '', { 'x-amz-copy-source': '/b/o' })).operation,
    ).toBe('CopyObject');
  });
});

describe('R2 header rules', () => {
  it('rejects checksum headers, aws-chunked and STREAMING payloads, and missing lengths', () => {
    const put = (h: S3Request['headers']) =>
      checkRequestHeaders(req('PUT', 'b', 'k', '', { 'content-length': '1', ...h }), 'PutObject');
    expect(put({ 'x-amz-checksum-crc32': 'AAAA' })?.code).toBe('NotImplemented');
    expect(put({ 'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' })?.code).toBe(
      'NotImplemented',
    );
    expect(put({ 'content-encoding': 'aws-chunked' })?.code).toBe('NotImplemented');
    expect(put({})).toBeUndefined();
    expect(checkRequestHeaders(req('PUT', 'b', 'k'), 'PutObject')?.status).toBe(411);
  });

  it('counts metadata as names without the prefix plus values', () => {
    expect(metadataSize({ 'x-amz-meta-sha256': 'ab', 'content-type': 'x' })).toBe(8);
    const atLimit = { 'content-length': '0', 'x-amz-meta-a': 'x'.repeat(8191) };
    expect(checkRequestHeaders(req('PUT', 'b', 'k', '', atLimit), 'PutObject')).toBeUndefined();
    const over = { ...atLimit, 'x-amz-meta-a': 'x'.repeat(8192) };
    expect(checkRequestHeaders(req('PUT', 'b', 'k', '', over), 'PutObject')?.code).toBe(
      'MetadataTooLarge',
    );
  });

  it('bounds part numbers', () => {
    const part = (n: string) =>
      checkRequestHeaders(
        req('PUT', 'b', 'k', `partNumber=${n}&uploadId=u`, { 'content-length': '5' }),
        'UploadPart',
      );
    expect(part('0')?.code).toBe('InvalidArgument');
    expect(part('10001')?.code).toBe('InvalidArgument');
    expect(part('10000')).toBeUndefined();
  });
});

describe('Complete rules', () => {
  const stored = (sizes: number[]) =>
    new Map(sizes.map((size, i) => [i + 1, { partNumber: i + 1, size, etag: `e${i + 1}` }]));
  const parts = (n: number) =>
    Array.from({ length: n }, (_, i) => ({ partNumber: i + 1, etag: `e${i + 1}` }));

  it('accepts equal parts with a smaller tail, and a single small part', () => {
    expect(checkCompletedParts(parts(3), stored([5 * MiB, 5 * MiB, 1]))).toBeUndefined();
    expect(checkCompletedParts(parts(1), stored([10]))).toBeUndefined();
  });

  it('refuses unequal, small, unknown, mis-tagged and unordered parts', () => {
    expect(checkCompletedParts(parts(3), stored([6 * MiB, 5 * MiB, 1]))?.message).toBe(
      'All non-trailing parts must have the same length.',
    );
    expect(checkCompletedParts(parts(2), stored([MiB, MiB]))?.code).toBe('EntityTooSmall');
    expect(checkCompletedParts(parts(3), stored([5 * MiB, 5 * MiB]))?.code).toBe('InvalidPart');
    expect(checkCompletedParts([{ partNumber: 1, etag: 'zz' }], stored([5 * MiB]))?.code).toBe(
      'InvalidPart',
    );
    expect(checkCompletedParts([...parts(2)].reverse(), stored([5 * MiB, 5 * MiB]))?.code).toBe(
      'InvalidPartOrder',
    );
  });

  it('parses the Complete body and refuses an empty one', () => {
    const xml =
      '<CompleteMultipartUpload><Part><ETag>&#34;abc&#34;</ETag><PartNumber>1</PartNumber></Part><Part><PartNumber>2</PartNumber><ETag>&quot;def&quot;</ETag></Part></CompleteMultipartUpload>';
    expect(parseCompleteBody(xml)).toEqual([
      { partNumber: 1, etag: 'abc' },
      { partNumber: 2, etag: 'def' },
    ]);
    expect(parseCompleteBody('<CompleteMultipartUpload/>')).toBeInstanceOf(S3ErrorReply);
  });
});

describe('verifySigV4', () => {
  const creds = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret-one' };
  async function signed(secret: string, query: Record<string, string> = {}) {
    const signer = new SignatureV4({
      credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: secret },
      region: 'auto',
      service: 's3',
      sha256: Sha256,
      uriEscapePath: false,
    });
    const r = await signer.sign({
      method: 'GET',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: 9000,
      path: '/bucket/some%20dir/file.safetensors',
      query,
      headers: { host: '127.0.0.1:9000', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    });
    const qs = new URLSearchParams(query).toString().replace(/\+/g, '%20');
    return { method: 'GET', url: r.path + (qs ? `?${qs}` : ''), headers: r.headers };
  }

  it('accepts a request signed by the SDK signer, with and without a query', async () => {
    expect(verifySigV4(await signed(creds.secretAccessKey), creds)).toEqual({
      ok: true,
      accessKeyId: 'AKIDEXAMPLE',
    });
    expect(
      verifySigV4(
        await signed(creds.secretAccessKey, { 'list-type': '2', prefix: 'a b/', uploads: '' }),
        creds,
      ).ok,
    ).toBe(true);
  });

  it('checks against the key pair the request names, one of several (the no-delete key)', async () => {
    const other = { accessKeyId: 'AKIDOTHER', secretAccessKey: 'secret-other' };
    expect(verifySigV4(await signed(creds.secretAccessKey), [other, creds])).toEqual({
      ok: true,
      accessKeyId: 'AKIDEXAMPLE',
    });
    // The secret of another pair does not sign for this key id.
    expect(verifySigV4(await signed(other.secretAccessKey), [other, creds])).toMatchObject({
      ok: false,
      code: 'SignatureDoesNotMatch',
    });
    expect(verifySigV4(await signed(creds.secretAccessKey), [other])).toMatchObject({
      ok: false,
      code: 'InvalidAccessKeyId',
    });
  });

  // The emulator's verifier is written from the SigV4 documentation, independent of the client's
  // signer (that is the point: a client mistake must be refused); @smithy/signature-v4 is the
  // reference both must agree with, on the forms the client and a presigned URL use.
  it('agrees with the reference signer on a presigned URL and on headers with spaces and case', async () => {
    const signer = new SignatureV4({
      credentials: creds,
      region: 'auto',
      service: 's3',
      sha256: Sha256,
      uriEscapePath: false,
    });
    const request = {
      method: 'PUT',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: 9000,
      path: '/bucket/models/loras/a%2Bb%20c%28d%29.safetensors',
      query: { partNumber: '3', uploadId: 'x/y+z=' },
      headers: {
        host: '127.0.0.1:9000',
        'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
        'X-Amz-Meta-Sha256': '  spaced   value ',
        'content-type': 'application/octet-stream',
      },
    };
    const qs = (q: Record<string, string | string[] | null>) =>
      Object.entries(q)
        .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
        .join('&');
    const lower = (h: Record<string, string>) =>
      Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
    const put = await signer.sign(request);
    const asSent = {
      method: 'PUT',
      url: `${put.path}?${qs(put.query as Record<string, string>)}`,
      headers: lower(put.headers),
    };
    expect(verifySigV4(asSent, creds)).toEqual({ ok: true, accessKeyId: 'AKIDEXAMPLE' });
    expect(
      verifySigV4(
        { ...asSent, headers: { ...asSent.headers, 'x-amz-meta-sha256': 'other' } },
        creds,
      ),
    ).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' });

    // As S3's presigner does it: the payload is UNSIGNED-PAYLOAD.
    const url = await signer.presign({
      ...request,
      method: 'GET',
      headers: { host: '127.0.0.1:9000', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    });
    const presigned = {
      method: 'GET',
      url: `${url.path}?${qs(url.query as Record<string, string>)}`,
      headers: { host: '127.0.0.1:9000' },
    };
    expect(verifySigV4(presigned, creds)).toEqual({ ok: true, accessKeyId: 'AKIDEXAMPLE' });
    expect(verifySigV4({ ...presigned, method: 'DELETE' }, creds)).toMatchObject({
      ok: false,
      code: 'SignatureDoesNotMatch',
    });
  });

  it('refuses a wrong secret, a wrong key id, a tampered path and no signature', async () => {
    expect(verifySigV4(await signed('secret-two'), creds)).toMatchObject({
      ok: false,
      code: 'SignatureDoesNotMatch',
    });
    expect(
      verifySigV4(await signed(creds.secretAccessKey), { ...creds, accessKeyId: 'OTHER' }),
    ).toMatchObject({ ok: false, code: 'InvalidAccessKeyId' });
    const good = await signed(creds.secretAccessKey);
    expect(verifySigV4({ ...good, url: '/bucket/other' }, creds)).toMatchObject({
      ok: false,
      code: 'SignatureDoesNotMatch',
    });
    expect(verifySigV4({ method: 'GET', url: '/', headers: {} }, creds)).toMatchObject({
      ok: false,
      code: 'AccessDenied',
    });
  });
});

describe('bucket lock rules', () => {
  const now = new Date('2026-03-10T12:00:00Z');
  const ago = (seconds: number) => new Date(now.getTime() - seconds * 1000);
  const rule = { prefix: 'backups/verda/2', maxAgeSeconds: 6 * 86_400 };

  it('holds an object under the prefix until it is maxAgeSeconds old', () => {
    expect(lockingRule([rule], 'backups/verda/20260309T021700Z/manifest.json', ago(60), now)).toBe(
      rule,
    );
    expect(
      lockingRule([rule], 'backups/verda/20260301T021700Z/a.age', ago(6 * 86_400 - 1), now),
    ).toBe(rule);
    expect(
      lockingRule([rule], 'backups/verda/20260301T021700Z/a.age', ago(6 * 86_400), now),
    ).toBeUndefined();
  });

  it('matches by prefix: latest.json is not under backups/verda/2, and no prefix is the whole bucket', () => {
    expect(lockingRule([rule], 'backups/verda/latest.json', ago(60), now)).toBeUndefined();
    expect(lockingRule([rule], 'models/x.safetensors', ago(60), now)).toBeUndefined();
    const all = { prefix: '', maxAgeSeconds: 60 };
    expect(lockingRule([all], 'anything/at/all', ago(59), now)).toBe(all);
  });

  it('takes the longest rule that covers the key; Infinity is an indefinite lock', () => {
    const short = { id: 'short', prefix: 'backups/', maxAgeSeconds: 3600 };
    const long = { id: 'long', prefix: 'backups/verda/', maxAgeSeconds: 86_400 };
    const forever = { id: 'forever', prefix: 'backups/verda/keep/', maxAgeSeconds: Infinity };
    expect(lockingRule([short, long], 'backups/verda/a', ago(60), now)?.id).toBe('long');
    expect(lockingRule([short, long], 'backups/verda/a', ago(7200), now)?.id).toBe('long');
    expect(lockingRule([short, long], 'backups/other/a', ago(7200), now)).toBeUndefined();
    expect(lockingRule([forever], 'backups/verda/keep/a', ago(1e9), now)?.id).toBe('forever');
  });

  it('answers as R2 does: 403 ObjectLockedByBucketPolicy in an S3 XML error', () => {
    const reply = objectLocked();
    expect([reply.status, reply.code]).toEqual([403, 'ObjectLockedByBucketPolicy']);
    expect(reply.xml('/b/k')).toBe(
      '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ObjectLockedByBucketPolicy</Code>' +
        '<Message>Object is protected by a bucket lock rule and cannot be modified or deleted.</Message>' +
        '<Resource>/b/k</Resource></Error>',
    );
  });

  it('reads the keys of a DeleteObjects body, entities decoded', () => {
    expect(
      parseDeleteBody(
        '<Delete><Object><Key>a/b.txt</Key></Object><Object><Key>c &amp; d&lt;e&gt;</Key></Object><Quiet>true</Quiet></Delete>',
      ),
    ).toEqual(['a/b.txt', 'c & d<e>']);
  });
});
