// The stream uploader against a recording stub of the S3 client: part layout, retries (a 500 and
// a body R2 found damaged), abort on every failure, and the inputs of backup-verda. That R2 really
// checks the signed body hash is tested against the emulator (backup-faults, corrupt fault).
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from '@jest/globals';
import { parseBackupInputs } from '../../src/actions/backup-verda/inputs.js';
import { parseRecipients } from '../../src/lib/age-stream.js';
import { InputError } from '../../src/lib/errors.js';
import { inputsFromRecord } from '../../src/lib/inputs.js';
import { uploadStream } from '../../src/lib/r2-stream-upload.js';

const MiB = 2 ** 20;

interface Call {
  name: string;
  input: Record<string, unknown>;
}

/** A stub S3 client: answers like R2 (ETag = MD5 of the body) unless `fail` says otherwise. */
function stubClient(fail: (call: Call, n: number) => Error | undefined = () => undefined) {
  const calls: Call[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const client = {
    async send(command: { constructor: { name: string }; input: Record<string, unknown> }) {
      const call = { name: command.constructor.name.replace(/Command$/, ''), input: command.input };
      calls.push(call);
      const n = calls.filter((c) => c.name === call.name).length;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 2));
      inFlight--;
      const failure = fail(call, n);
      if (failure instanceof Error) throw failure;
      const body = call.input.Body as Buffer | undefined;
      const md5 = body ? createHash('md5').update(body).digest('hex') : '';
      const etag = `"${md5}"`;
      switch (call.name) {
        case 'CreateMultipartUpload':
          return { UploadId: 'up-1' };
        case 'UploadPart':
        case 'PutObject':
          return { ETag: etag };
        case 'HeadObject':
          return { ContentLength: totalParts(calls) };
        default:
          return {};
      }
    },
  };
  return { client: client as unknown as S3Client, calls, maxInFlight: () => maxInFlight };
}

function totalParts(calls: Call[]): number {
  const last = new Map<number, number>();
  for (const c of calls)
    if (c.name === 'UploadPart')
      last.set(c.input.PartNumber as number, (c.input.Body as Buffer).length);
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

describe('uploadStream', () => {
  it('uploads equal parts but the last, bounded in flight, and checks the final size', async () => {
    const { client, calls, maxInFlight } = stubClient();
    const size = 5 * 5 * MiB + 123;
    const result = await uploadStream({
      client,
      bucket: 'b',
      key: 'k',
      body: source(size),
      partSize: 5 * MiB,
      concurrency: 2,
    });
    const parts = calls
      .filter((c) => c.name === 'UploadPart')
      .map((c) => (c.input.Body as Buffer).length);
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

  it('sends a small stream as one PutObject of a Buffer (signed by its sha256), after beforeComplete', async () => {
    const { client, calls } = stubClient();
    const order: string[] = [];
    const result = await uploadStream({
      client,
      bucket: 'b',
      key: 'k',
      body: source(1000),
      beforeComplete: async () => {
        order.push(`before:${calls.length}`);
      },
    });
    expect(calls.map((c) => c.name)).toEqual(['PutObject']);
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
      client,
      bucket: 'b',
      key: 'k',
      body: source(3 * 5 * MiB),
      partSize: 5 * MiB,
      retry: fast,
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
        client,
        bucket: 'b',
        key: 'backups/x',
        body: source(12 * MiB),
        partSize: 5 * MiB,
        retry: fast,
      }),
    ).rejects.toThrow(
      /R2 upload of backups\/x failed: We encountered an internal error \(HTTP 500\)/,
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
          client,
          bucket: 'b',
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

  it('refuses parts below R2 minimum', async () => {
    const { client } = stubClient();
    await expect(
      uploadStream({ client, bucket: 'b', key: 'k', body: source(1), partSize: MiB }),
    ).rejects.toThrow(/5 MiB minimum/);
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
    retention: 'daily=7,weekly=4,monthly=6',
  };
  const parse = (overrides: Record<string, string>) =>
    parseBackupInputs(inputsFromRecord({ ...valid, ...overrides }), '/repo');

  it('parses valid inputs, resolving the config path and the endpoint', () => {
    const parsed = parse({});
    expect(parsed).toMatchObject({
      port: 22,
      configFile: '/repo/config/backup.yml',
      endpoint: 'https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com',
      recipients: [RECIPIENT],
      withModels: false,
      dryRun: false,
      r2TimeoutMs: 120_000,
      verify: 'read-back',
    });
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
    ['dry-run', 'yes', /Input 'dry-run' is invalid: got "yes"; expected true or false/],
    ['r2-timeout', '100ms', /Input 'r2-timeout'/],
    [
      'verify',
      'none',
      /Input 'verify' is invalid: got "none"; expected one of read-back, in-transit/,
    ],
    ['r2-account-id', 'nothex', /Input 'r2-account-id'/],
  ])('rejects %s = %j', (input, value, message) => {
    expect(() => parse({ [input]: value })).toThrow(InputError);
    expect(() => parse({ [input]: value })).toThrow(message);
  });

  it('never repeats a secret identity pasted as a recipient', () => {
    const secret = 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ';
    expect(() => parseRecipients('age-recipients', [secret])).toThrow(/<redacted>/);
    try {
      parseRecipients('age-recipients', [secret]);
    } catch (err) {
      expect((err as Error).message).not.toContain(secret);
    }
  });
});
