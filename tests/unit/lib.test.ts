import { describe, expect, it } from '@jest/globals';
import { ConfigError, InputError, OpsError, isExpectedError } from '../../src/lib/errors.js';
import { formatBytes, formatDuration, formatRate, formatUsd } from '../../src/lib/format.js';
import {
  createR2Client,
  r2Endpoint,
  r2PartSize,
  r2RequestCost,
  validateBucketName,
} from '../../src/lib/r2.js';
import {
  backoffDelay,
  isTransientNetworkError,
  networkCause,
  networkFailureReason,
  parseRetryAfter,
  retry,
} from '../../src/lib/retry.js';
import { tableToMarkdown, tableToText } from '../../src/lib/summary.js';
import { multipartEtag } from '../../src/lib/r2-store.js';

describe('retry', () => {
  it('retries retryable errors with growing delays and gives up after the attempts', async () => {
    const delays: number[] = [];
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          throw new Error('boom');
        },
        {
          attempts: 4,
          retryable: () => true,
          sleep: async (ms) => void delays.push(ms),
          jitter: 0,
          baseDelayMs: 100,
        },
      ),
    ).rejects.toThrow('boom');
    expect(calls).toBe(4);
    expect(delays).toEqual([100, 200, 400]);
  });
  it('does not retry what is not retryable, and honours Retry-After when longer', async () => {
    let calls = 0;
    await expect(
      retry(async () => Promise.reject(new Error(`x${++calls}`)), { sleep: async () => {} }),
    ).rejects.toThrow('x1');
    const delays: number[] = [];
    const value = await retry(
      async (attempt) => {
        if (attempt < 2) throw Object.assign(new Error('429'), { retryAfter: 7000 });
        return 'ok';
      },
      {
        retryable: () => true,
        retryAfterMs: (e) => (e as { retryAfter?: number }).retryAfter,
        sleep: async (ms) => void delays.push(ms),
        jitter: 0,
        baseDelayMs: 10,
      },
    );
    expect(value).toBe('ok');
    expect(delays).toEqual([7000]);
  });
  it('caps backoff and keeps jitter within bounds', () => {
    expect(backoffDelay(20, { baseDelayMs: 500, maxDelayMs: 30_000, jitter: 0 })).toBe(30_000);
    expect(backoffDelay(1, { baseDelayMs: 1000, jitter: 0.5, random: () => 0 })).toBe(500);
    expect(backoffDelay(1, { baseDelayMs: 1000, jitter: 0.5, random: () => 0.999999 })).toBe(1500);
  });
  it('parses Retry-After seconds and dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(
      parseRetryAfter('Wed, 21 Oct 2015 07:28:10 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')),
    ).toBe(10_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
  it('recognises transient network errors through causes', () => {
    expect(
      isTransientNetworkError(
        new Error('x', { cause: Object.assign(new Error('y'), { code: 'ECONNRESET' }) }),
      ),
    ).toBe(true);
    expect(isTransientNetworkError(new Error('plain'))).toBe(false);
  });
  it('keeps to a deadline: no attempt starts whose delay crosses it, timeouts clipped to what is left', async () => {
    let clock = 0;
    const timeouts: (number | undefined)[] = [];
    const delays: number[] = [];
    await expect(
      retry(
        async (_attempt, budget) => {
          timeouts.push(budget.timeoutMs);
          clock += 1_000; // each attempt takes 1 s
          throw new Error('503');
        },
        {
          attempts: 100,
          deadlineMs: 10_000,
          attemptTimeoutMs: 6_000,
          baseDelayMs: 1_000,
          jitter: 0,
          retryable: () => true,
          now: () => clock,
          sleep: async (ms) => {
            delays.push(ms);
            clock += ms;
          },
        },
      ),
    ).rejects.toThrow('503');
    // t=0 try, 1 wait 1, 2 try, 3 wait 2, 5 try, 6: a 4 s wait would end at 10 = the deadline.
    expect(delays).toEqual([1_000, 2_000]);
    expect(timeouts).toEqual([6_000, 6_000, 5_000]);
    // Without a deadline or attempt timeout the attempt gets no budget at all.
    await retry(async (_a, budget) => expect(budget.timeoutMs).toBeUndefined());
  });
  it('names the cause of a network failure through fetch failed and its causes', () => {
    const failed = (cause: unknown) => new TypeError('fetch failed', { cause });
    const errno = (code: string, message = code) => Object.assign(new Error(message), { code });
    expect(networkCause(failed(errno('ECONNREFUSED')))).toBe('connection refused (ECONNREFUSED)');
    expect(networkCause(failed(errno('ENOTFOUND')))).toBe(
      'DNS lookup failed: no such host (ENOTFOUND)',
    );
    expect(networkCause(failed(errno('EAI_AGAIN')))).toMatch(/^DNS lookup failed .*\(EAI_AGAIN\)$/);
    expect(
      networkCause(failed(errno('DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate'))),
    ).toBe('TLS error: self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT)');
    expect(
      networkCause(
        failed(
          errno(
            'ERR_SSL_WRONG_VERSION_NUMBER',
            `${'8'.repeat(40)}:error:0A00010B:SSL routines:ssl3_get_record:wrong version number`,
          ),
        ),
      ),
    ).toBe('TLS error (ERR_SSL_WRONG_VERSION_NUMBER)');
    expect(networkCause(new DOMException('aborted due to timeout', 'TimeoutError'))).toBe(
      'timed out',
    );
    expect(networkCause(new Error('plain'))).toBeUndefined();
    expect(networkFailureReason(failed(new Error('bad port')))).toBe('bad port');
  });
});

describe('r2 helpers', () => {
  it('computes a multipart ETag as R2 documents it: MD5 of the binary part MD5s, "-<count>"', () => {
    // The two-part example of R2's multipart upload page.
    expect(
      multipartEtag(['"bce6bf66aeb76c7040fdd5f4eccb78e6"', '8165449fc15bbf43d3b674595cbcc406']),
    ).toBe('f77dc0eecdebcd774a2a22cb393ad2ff-2');
  });
  it('sizes parts as max(8 MiB, ceil(size/10000)) rounded up to a MiB', () => {
    const MiB = 2 ** 20;
    expect(r2PartSize(1)).toBe(8 * MiB);
    expect(r2PartSize(26 * 2 ** 30)).toBe(8 * MiB);
    expect(r2PartSize(78 * 2 ** 30)).toBe(8 * MiB);
    expect(r2PartSize(79 * 2 ** 30)).toBe(9 * MiB);
    expect(r2PartSize(200 * 2 ** 30)).toBe(21 * MiB);
    expect(Math.ceil((200 * 2 ** 30) / r2PartSize(200 * 2 ** 30))).toBeLessThanOrEqual(10_000);
  });
  it('builds endpoints from an account id and validates URLs and bucket names', () => {
    expect(r2Endpoint({ accountId: 'f1d627b48ef7a4f687d6ac469c8f1dea' })).toBe(
      'https://f1d627b48ef7a4f687d6ac469c8f1dea.r2.cloudflarestorage.com',
    );
    expect(() => r2Endpoint({ accountId: 'nope' })).toThrow(InputError);
    expect(() => r2Endpoint({ endpoint: 'ftp://x' })).toThrow(/r2-endpoint/);
    expect(() => r2Endpoint({})).toThrow(/r2-endpoint/);
    expect(validateBucketName('bucket', 'comfyume-model-vault-backups')).toBe(
      'comfyume-model-vault-backups',
    );
    expect(() => validateBucketName('bucket', 'Bad_Bucket')).toThrow(
      `Input 'bucket' is invalid: got "Bad_Bucket"`,
    );
  });
  it('configures the client the way R2 needs it', async () => {
    const client = createR2Client({
      endpoint: 'http://127.0.0.1:9',
      accessKeyId: 'a',
      secretAccessKey: 'b',
    });
    expect(await client.config.region()).toBe('auto');
    expect(client.config.forcePathStyle).toBe(true);
    expect(await client.config.requestChecksumCalculation()).toBe('WHEN_REQUIRED');
    expect(await client.config.responseChecksumValidation()).toBe('WHEN_REQUIRED');
    client.destroy();
  });
  it('prices requests per million', () => {
    expect(r2RequestCost(1_000_000, 1_000_000)).toBeCloseTo(4.86);
  });
});

describe('errors, formats and tables', () => {
  it('tells expected errors from bugs', () => {
    expect(isExpectedError(new InputError('a', 'b', 'c'))).toBe(true);
    expect(isExpectedError(new ConfigError('f.yml', ['x: bad']))).toBe(true);
    expect(isExpectedError(new OpsError('down'))).toBe(true);
    expect(isExpectedError(new TypeError('bug'))).toBe(false);
    expect(
      new ConfigError('config/backup.yml', ['items.0.paths: expected absolute']).message,
    ).toContain('config/backup.yml');
  });
  it('formats sizes, durations, rates and money', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(45 * 2 ** 30)).toBe('45.0 GiB');
    expect(formatDuration(1500)).toBe('1.5 s');
    expect(formatDuration(125_000)).toBe('2 m 5 s');
    expect(formatRate(100 * 2 ** 20, 2000)).toBe('50.0 MiB/s');
    expect(formatUsd(143.2)).toBe('$143.20');
  });
  it('renders tables as markdown and text, escaping pipes', () => {
    const t = { title: 'Items', headers: ['item', 'size'], rows: [['a|b', '1 KiB']] };
    expect(tableToMarkdown(t)).toBe(
      '### Items\n\n| item | size |\n| --- | --- |\n| a\\|b | 1 KiB |\n',
    );
    expect(tableToText(t)).toBe('Items\nitem  size\n----  -----\na|b   1 KiB\n');
  });
});
