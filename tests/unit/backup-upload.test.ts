// The stream uploader against a recording stub of the S3 client: part layout, retries (a 500 and
// a body R2 found damaged), abort on every failure, the in-transit proof (every ETag R2 answers
// checked, one HEAD), and the inputs of backup-verda. That R2 really checks the signed body hash
// is tested against the emulator (backup-faults, corrupt fault), and so is the proof (lying faults).
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from '@jest/globals';
import { generateHybridIdentity, identityToRecipient } from 'age-encryption';
import { parseBackupInputs } from '../../src/actions/backup-verda/inputs.js';
import { parseRecipients } from '../../src/lib/age-stream.js';
import { InputError } from '../../src/lib/errors.js';
import { inputsFromRecord } from '../../src/lib/inputs.js';
import { BufferPool } from '../../src/lib/limits.js';
import { R2Store, multipartEtag } from '../../src/lib/r2-store.js';
import { uploadStream } from '../../src/lib/r2-stream-upload.js';
import { partSizeForSize, partsWarning } from '../../src/backup/run-backup.js';

const MiB = 2 ** 20;

interface Call {
  name: string;
  input: Record<string, unknown>;
  /** The bytes sent, as the HTTP handler would have read them at send time. */
  body?: Buffer | undefined;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function bodyBytes(body: unknown): Promise<Buffer | undefined> {
  if (body === undefined) return body;
  // A copy: the uploader reuses its part buffers once a part is stored.
  if (Buffer.isBuffer(body)) return Buffer.from(body);
  const chunks: Buffer[] = [];
  for await (const c of body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** What the stub answers instead of the truth: an ETag (by operation), or a size on HEAD. */
interface Lies {
  UploadPart?: (partNumber: number) => string | undefined;
  PutObject?: string;
  CompleteMultipartUpload?: string;
  HeadObjectSize?: number;
}

/**
 * A stub S3 client: answers like R2 (a part's or a PutObject's ETag = MD5 of the body, a
 * Complete's = the multipart ETag of the parts listed, HEAD = the size and ETag stored) unless
 * `fail` or `lies` say otherwise.
 */
function stubClient(
  fail: (call: Call, n: number) => Error | undefined = () => undefined,
  lies: Lies = {},
) {
  const calls: Call[] = [];
  const stored = new Map<unknown, { size: number; etag: string }>();
  let inFlight = 0;
  let maxInFlight = 0;
  const client = {
    async send(command: { constructor: { name: string }; input: Record<string, unknown> }) {
      const call: Call = {
        name: command.constructor.name.replace(/Command$/, ''),
        input: command.input,
      };
      calls.push(call);
      const n = calls.filter((c) => c.name === call.name).length;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      call.body = await bodyBytes(command.input.Body);
      await new Promise((r) => setTimeout(r, 2));
      inFlight--;
      const failure = fail(call, n);
      if (failure instanceof Error) throw failure;
      const md5 = call.body ? createHash('md5').update(call.body).digest('hex') : '';
      const etag = `"${md5}"`;
      const key = call.input.Key;
      switch (call.name) {
        case 'CreateMultipartUpload':
          return { UploadId: 'up-1' };
        case 'UploadPart': {
          const lie = lies.UploadPart?.(call.input.PartNumber as number);
          return { ETag: lie ?? etag };
        }
        case 'PutObject':
          stored.set(key, { size: call.body?.length ?? 0, etag });
          return { ETag: lies.PutObject ?? etag };
        case 'CompleteMultipartUpload': {
          const listed = (call.input.MultipartUpload as { Parts: { ETag: string }[] }).Parts;
          const whole = `"${multipartEtag(listed.map((p) => p.ETag))}"`;
          stored.set(key, { size: totalParts(calls, key), etag: whole });
          return { ETag: lies.CompleteMultipartUpload ?? whole };
        }
        case 'HeadObject': {
          const o = stored.get(key);
          return { ContentLength: lies.HeadObjectSize ?? o?.size, ETag: o?.etag };
        }
        default:
          return {};
      }
    },
  };
  return { client: client as unknown as S3Client, calls, maxInFlight: () => maxInFlight };
}

function totalParts(calls: Call[], key: unknown): number {
  const last = new Map<number, number>();
  for (const c of calls)
    if (c.name === 'UploadPart' && c.input.Key === key)
      last.set(c.input.PartNumber as number, c.body?.length ?? 0);
  return [...last.values()].reduce((a, b) => a + b, 0);
}

function source(size: number, chunk = 256 * 1024): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) {
        this.push(null);
        return;
      }
      const n = Math.min(chunk, size - sent);
      this.push(Buffer.alloc(n, sent % 251));
      sent += n;
    },
  });
}

const serverError = () =>
  Object.assign(new Error('We encountered an internal error'), {
    $metadata: { httpStatusCode: 500 },
  });
const fast = { baseDelayMs: 1, maxDelayMs: 2 };
/** The one R2 store over the recording stub, retrying fast. */
const storeOf = (client: S3Client) => new R2Store({ client, bucket: 'b', retry: fast });

describe('uploadStream', () => {
  it('uploads equal parts but the last, bounded in flight, and checks the final size', async () => {
    const { client, calls, maxInFlight } = stubClient();
    const size = 5 * 5 * MiB + 123;
    const result = await uploadStream({
      store: storeOf(client),
      key: 'k',
      body: source(size),
      partSize: 5 * MiB,
      concurrency: 2,
    });
    const parts = calls.filter((c) => c.name === 'UploadPart').map((c) => c.body?.length);
    expect(parts).toEqual([5 * MiB, 5 * MiB, 5 * MiB, 5 * MiB, 5 * MiB, 123]);
    expect(maxInFlight()).toBeLessThanOrEqual(2);
    expect(result).toMatchObject({ size, parts: 6 });
    const complete = calls.find((c) => c.name === 'CompleteMultipartUpload')!;
    const listed = (
      complete.input.MultipartUpload as { Parts: { PartNumber: number }[] }
    ).Parts.map((p) => p.PartNumber);
    expect(listed).toEqual([1, 2, 3, 4, 5, 6]);
    expect(calls.map((c) => c.name).at(-1)).toBe('HeadObject');
  });

  it('sends the stream byte for byte and resends a failed part whole', async () => {
    const data = randomBytes(3 * 5 * MiB + 777);
    let failedOnce = 0;
    const { client, calls } = stubClient((call, n) => {
      if (call.name !== 'UploadPart') return undefined;
      return call.input.PartNumber === 2 && n <= 3 && !failedOnce++ ? serverError() : undefined;
    });
    const result = await uploadStream({
      store: storeOf(client),
      key: 'k',
      body: Readable.from([data.subarray(0, 1000), data.subarray(1000)]),
      partSize: 5 * MiB,
    });
    const parts = calls.filter((c) => c.name === 'UploadPart');
    const attempts = (n: number) => parts.filter((c) => c.input.PartNumber === n);
    expect([1, 2, 3, 4].map((n) => attempts(n).length)).toEqual([1, 2, 1, 1]);
    const [first, again] = attempts(2);
    expect(sha256(again!.body!)).toBe(sha256(first!.body!));
    const stored = Buffer.concat([1, 2, 3, 4].map((n) => attempts(n).at(-1)!.body!));
    expect(sha256(stored)).toBe(sha256(data));
    expect(result.sha256).toBe(sha256(data));
  });

  it('sends a small stream as one PutObject of a Buffer (signed by its sha256), after beforeComplete', async () => {
    const { client, calls } = stubClient();
    const order: string[] = [];
    const result = await uploadStream({
      store: storeOf(client),
      key: 'k',
      body: source(1000),
      beforeComplete: async () => {
        order.push(`before:${calls.length}`);
      },
    });
    expect(calls.map((c) => c.name)).toEqual(['PutObject', 'HeadObject']);
    expect(order).toEqual(['before:0']);
    // A Buffer body is what makes the SDK sign the payload hash (a stream would go UNSIGNED).
    expect(Buffer.isBuffer(calls[0]!.input.Body)).toBe(true);
    expect(calls[0]!.input.ContentLength).toBe(1000);
    expect(result.sha256).toBe(createHash('sha256').update(Buffer.alloc(1000, 0)).digest('hex'));
  });

  it('retries a part answered 500 and a part R2 found damaged on the way', async () => {
    const damaged = () =>
      Object.assign(new Error("The provided 'x-amz-content-sha256' header does not match"), {
        name: 'XAmzContentSHA256Mismatch',
        $metadata: { httpStatusCode: 400 },
      });
    const { client, calls } = stubClient((call, n) =>
      call.name === 'UploadPart' && n === 2
        ? serverError()
        : call.name === 'UploadPart' && n === 4
          ? damaged()
          : undefined,
    );
    await uploadStream({
      store: storeOf(client),
      key: 'k',
      body: source(3 * 5 * MiB),
      partSize: 5 * MiB,
    });
    expect(calls.filter((c) => c.name === 'UploadPart')).toHaveLength(5);
    expect(calls.some((c) => c.name === 'AbortMultipartUpload')).toBe(false);
  });

  it('aborts the multipart upload when a part keeps failing, naming the key', async () => {
    const { client, calls } = stubClient((call) =>
      call.name === 'UploadPart' ? serverError() : undefined,
    );
    await expect(
      uploadStream({
        store: storeOf(client),
        key: 'backups/x',
        body: source(12 * MiB),
        partSize: 5 * MiB,
      }),
    ).rejects.toThrow(
      /R2 UploadPart backups\/x part \d failed: We encountered an internal error \(HTTP 500\)/,
    );
    expect(calls.at(-1)?.name).toBe('AbortMultipartUpload');
    expect(calls.some((c) => c.name === 'CompleteMultipartUpload')).toBe(false);
  });

  it('aborts when the source fails or beforeComplete refuses, and never completes', async () => {
    for (const variant of ['source', 'before'] as const) {
      const { client, calls } = stubClient();
      const body =
        variant === 'source'
          ? Readable.from(
              (async function* () {
                yield Buffer.alloc(6 * MiB);
                throw new Error('connection dropped');
              })(),
            )
          : source(6 * MiB);
      await expect(
        uploadStream({
          store: storeOf(client),
          key: 'k',
          body,
          partSize: 5 * MiB,
          beforeComplete: async () => {
            throw new Error('tar exited with code 2');
          },
        }),
      ).rejects.toThrow(variant === 'source' ? /connection dropped/ : /tar exited with code 2/);
      expect(calls.map((c) => c.name)).toContain('AbortMultipartUpload');
      expect(calls.map((c) => c.name)).not.toContain('CompleteMultipartUpload');
    }
  });

  it('takes its part buffers from a shared pool: a second upload allocates none', async () => {
    class CountingPool extends BufferPool {
      allocated = 0;
      override get(size: number): Buffer {
        const idle = (this as unknown as { idle: Map<number, Buffer[]> }).idle.get(size) ?? [];
        if (idle.length === 0) this.allocated++;
        return super.get(size);
      }
    }
    const pool = new CountingPool();
    const { client } = stubClient();
    // Ends on a part boundary, then with a short last part, then as one small PutObject.
    for (const [key, size] of [
      ['a', 4 * 5 * MiB],
      ['b', 3 * 5 * MiB + 10],
      ['c', 1000],
      ['d', 2 * 5 * MiB + 10],
    ] as const)
      await uploadStream({
        store: storeOf(client),
        key,
        body: source(size),
        pool,
        partSize: 5 * MiB,
      });
    // concurrency 2: two parts in flight and one filling.
    expect(pool.allocated).toBe(3);
  });

  it('proves what R2 holds from its answers: ETags checked, one HEAD, no GET', async () => {
    const data = randomBytes(2 * 5 * MiB + 99);
    const { client, calls } = stubClient();
    await uploadStream({
      store: storeOf(client),
      key: 'k',
      body: Readable.from([data]),
      partSize: 5 * MiB,
    });
    expect(calls.map((c) => c.name)).toEqual([
      'CreateMultipartUpload',
      'UploadPart',
      'UploadPart',
      'UploadPart',
      'CompleteMultipartUpload',
      'HeadObject',
    ]);
    // The parts listed at Complete are the MD5s of the bytes sent, not whatever R2 said.
    const md5 = (b: Buffer) => `"${createHash('md5').update(b).digest('hex')}"`;
    const listed = (
      calls.find((c) => c.name === 'CompleteMultipartUpload')!.input.MultipartUpload as {
        Parts: { ETag: string }[];
      }
    ).Parts.map((p) => p.ETag);
    expect(listed).toEqual(
      [data.subarray(0, 5 * MiB), data.subarray(5 * MiB, 10 * MiB), data.subarray(10 * MiB)].map(
        md5,
      ),
    );
  });

  const lying = async (lies: Lies, size: number) => {
    const { client, calls } = stubClient(undefined, lies);
    const err = await uploadStream({
      store: storeOf(client),
      key: 'backups/1/models.tar.zst.age',
      body: source(size),
      partSize: 5 * MiB,
    }).then(
      () => new Error('uploaded, nothing refused'),
      (e: unknown) => e as Error,
    );
    return { err, calls };
  };
  const otherMd5 = 'ffffffffffffffffffffffffffffffff';

  it('fails when a part ETag is not the MD5 of the bytes sent, naming key, part, expected and found', async () => {
    const { err, calls } = await lying(
      { UploadPart: (n) => (n === 2 ? `"${otherMd5}"` : undefined) },
      12 * MiB,
    );
    const sent = calls.filter((c) => c.name === 'UploadPart' && c.input.PartNumber === 2)[0]!.body!;
    const expected = createHash('md5').update(sent).digest('hex');
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toBe(
      `R2 UploadPart backups/1/models.tar.zst.age part 2: ETag ${otherMd5}, expected ${expected} ` +
        `(the MD5 of the ${5 * MiB} bytes sent); R2 holds other bytes than were sent`,
    );
    // Not retried, never completed, aborted.
    expect(calls.filter((c) => c.name === 'UploadPart' && c.input.PartNumber === 2)).toHaveLength(
      1,
    );
    expect(calls.map((c) => c.name)).not.toContain('CompleteMultipartUpload');
    expect(calls.at(-1)?.name).toBe('AbortMultipartUpload');
  });

  it('fails when the Complete ETag is not the multipart ETag of the parts sent (a stale part assembled)', async () => {
    const stale = `"${otherMd5}-3"`;
    const { err, calls } = await lying({ CompleteMultipartUpload: stale }, 12 * MiB);
    const parts = calls.filter((c) => c.name === 'UploadPart').map((c) => c.body!);
    const expected = multipartEtag(parts.map((b) => createHash('md5').update(b).digest('hex')));
    expect(err.message).toBe(
      `R2 CompleteMultipartUpload backups/1/models.tar.zst.age: ETag ${otherMd5}-3, expected ${expected} ` +
        '(the multipart ETag of the 3 part(s) sent); R2 holds other bytes than were sent',
    );
    expect(calls.map((c) => c.name)).not.toContain('HeadObject');
  });

  it('fails when a PutObject ETag is not the MD5 of the body', async () => {
    const { err } = await lying({ PutObject: `"${otherMd5}"` }, 1000);
    const expected = createHash('md5').update(Buffer.alloc(1000, 0)).digest('hex');
    expect(err.message).toBe(
      `R2 PutObject backups/1/models.tar.zst.age: ETag ${otherMd5}, expected ${expected} ` +
        '(the MD5 of the 1000 bytes sent); R2 holds other bytes than were sent',
    );
  });

  it.each([
    ['multipart', 12 * MiB],
    ['single PutObject', 1000],
  ])('fails when HEAD gives another size after a %s upload', async (_kind, size) => {
    const { err, calls } = await lying({ HeadObjectSize: size - 1 }, size);
    const md5s = calls
      .filter((c) => c.name === 'UploadPart' || c.name === 'PutObject')
      .map((c) => createHash('md5').update(c.body!).digest('hex'));
    const etag = size > 5 * MiB ? multipartEtag(md5s) : md5s[0];
    expect(err.message).toBe(
      `R2 HeadObject backups/1/models.tar.zst.age after upload: ${size - 1} bytes, ETag ${etag}, ` +
        `expected ${size} bytes, ETag ${etag}`,
    );
  });

  it('refuses parts below R2 minimum', async () => {
    const { client } = stubClient();
    await expect(
      uploadStream({ store: storeOf(client), key: 'k', body: source(1), partSize: MiB }),
    ).rejects.toThrow(/5 MiB minimum/);
  });
});

describe('partSizeForSize', () => {
  it.each([
    [0, 5],
    [10 * 2 ** 30, 5],
    [30 * 2 ** 30, 13],
    [2 ** 40, 256],
  ])('sizes an archive last stored at %i bytes with %i MiB parts', (bytes, mib) => {
    expect(partSizeForSize(bytes)).toBe(mib * MiB);
  });
});

describe('partsWarning', () => {
  it('is silent up to half of R2s 10,000 parts and names the part size to set after that', () => {
    expect(partsWarning('home', { parts: 5000, size: 5000 * 5 * MiB }, 5 * MiB)).toBeUndefined();
    expect(partsWarning('home', { parts: 6000, size: 6000 * 5 * MiB - 7 }, 5 * MiB)).toBe(
      "item home took 6000 of R2's 10000 parts (29.3 GiB in 5.00 MiB parts): set part-size to " +
        '12MiB before it grows past 48.8 GiB, where the backup would fail',
    );
    // Sized from the last backup: the next run adapts by itself.
    expect(partsWarning('home', { parts: 6000, size: 6000 * 5 * MiB }, 5 * MiB, true)).toBe(
      "item home took 6000 of R2's 10000 parts (29.3 GiB; it more than doubled since the last " +
        'backup): the next run uses 12MiB parts',
    );
    // Past what 256 MiB parts would comfortably hold: no part-size to suggest.
    expect(partsWarning('home', { parts: 9000, size: 700 * 2 ** 30 }, 80 * MiB)).toMatch(
      /even 256MiB parts leave little room; split the item/,
    );
  });
});

describe('backup-verda inputs', () => {
  const KEY = [
    '-----BEGIN OPENSSH PRIVATE KEY-----',
    'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
    'QyNTUxOQAAACBZNunAChDADQc1c0X6soeRlm24Dq1zMQYFKQeXayfbPQAAAKDUwr4u1MK+',
    'LgAAAAtzc2gtZWQyNTUxOQAAACBZNunAChDADQc1c0X6soeRlm24Dq1zMQYFKQeXayfbPQ',
    'AAAECAt+hYiXAJYlWZaTnnnmphOmcGRombnWWAbm6OkittmFk26cAKEMANBzVzRfqyh5GW',
    'bbgOrXMxBgUpB5drJ9s9AAAAF2NvbWZ5dW1lLWZpeHR1cmUtY2xpZW50AQIDBAUG',
    '-----END OPENSSH PRIVATE KEY-----',
  ].join('\n');
  const RECIPIENT = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
  const valid: Record<string, string> = {
    host: 'verda-gpu',
    port: '22',
    user: 'dev',
    'ssh-private-key': KEY,
    'host-key-fingerprints': 'SHA256:Eo4qlVnPnjoxgxwQ5BcI0YDxbz5mZh/6wyGWim8CwKA',
    config: 'config/backup.yml',
    bucket: 'comfyume-backups',
    prefix: 'backups/verda',
    'r2-account-id': '0123456789abcdef0123456789abcdef',
    'r2-access-key-id': 'AKIAEXAMPLE',
    'r2-secret-access-key': 'secret',
    'age-recipients': RECIPIENT,
    'signing-key': KEY,
    retention: 'daily=7,weekly=4,monthly=6',
  };
  const parse = (overrides: Record<string, string>) =>
    parseBackupInputs(inputsFromRecord({ ...valid, ...overrides }), '/repo');

  it('parses valid inputs, resolving the config path and the endpoint', async () => {
    const parsed = await parse({});
    expect(parsed).toMatchObject({
      ssh: { host: valid.host, port: 22, username: valid.user },
      configFile: '/repo/config/backup.yml',
      endpoint: 'https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com',
      recipients: [RECIPIENT],
      withModels: false,
      dryRun: false,
      r2TimeoutMs: 120_000,
      verify: 'in-transit',
    });
    expect((await parse({ verify: 'read-back' })).verify).toBe('read-back');
  });

  it.each([
    ['host', 'bad host!', /Input 'host'/],
    ['port', '70000', /Input 'port' is invalid: got "70000"/],
    ['user', 'dev;rm', /Input 'user'/],
    ['ssh-private-key', 'not a key', /Input 'ssh-private-key' is invalid: got "<redacted>"/],
    ['host-key-fingerprints', '', /Input 'host-key-fingerprints'/],
    ['bucket', 'Bad_Bucket', /Input 'bucket'/],
    ['prefix', '/backups/verda/', /Input 'prefix'/],
    ['prefix', 'backups/../x', /Input 'prefix'/],
    ['retention', 'weekly=four', /Input 'retention'/],
    ['age-recipients', 'ssh-ed25519 AAAA', /Input 'age-recipients'/],
    [
      'signing-key',
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE',
      /Input 'signing-key'.*Ed25519 private key/,
    ],
    ['signing-key', '', /Input 'signing-key'/],
    ['dry-run', 'yes', /Input 'dry-run' is invalid: got "yes"; expected true or false/],
    ['r2-timeout', '100ms', /Input 'r2-timeout'/],
    [
      'verify',
      'none',
      /Input 'verify' is invalid: got "none"; expected one of read-back, in-transit/,
    ],
    ['r2-account-id', 'nothex', /Input 'r2-account-id'/],
    [
      'part-size',
      '4MiB',
      /Input 'part-size' is invalid: got "4MiB"; expected a size .* from 5MiB to 256MiB/,
    ],
    ['part-size', '1GiB', /Input 'part-size' is invalid: got "1GiB"; expected .* to 256MiB/],
  ])('rejects %s = %j', async (input, value, message) => {
    await expect(parse({ [input]: value })).rejects.toThrow(InputError);
    await expect(parse({ [input]: value })).rejects.toThrow(message);
  });

  it.each([
    ['auto', undefined],
    ['', undefined],
    ['16MiB', 16 * MiB],
  ])('takes part-size %j as %s', async (value, bytes) => {
    expect((await parse({ 'part-size': value })).partSize).toBe(bytes);
  });

  it('never repeats a secret identity pasted as a recipient', async () => {
    const secret = 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ';
    const err = await parseRecipients('age-recipients', [secret]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/<redacted>/);
    expect((err as Error).message).not.toContain(secret);
  });

  it('accepts X25519 and post-quantum recipients; refuses one with a bad checksum', async () => {
    const pq = await identityToRecipient(await generateHybridIdentity());
    expect(await parseRecipients('age-recipients', [RECIPIENT, RECIPIENT])).toEqual([RECIPIENT]);
    expect(await parseRecipients('age-recipients', [pq])).toEqual([pq]);
    const flipped = RECIPIENT.slice(0, -1) + (RECIPIENT.endsWith('q') ? 'p' : 'q');
    await expect(parseRecipients('age-recipients', [flipped])).rejects.toThrow(
      /Input 'age-recipients' is invalid: got "age1/,
    );
  });
});
