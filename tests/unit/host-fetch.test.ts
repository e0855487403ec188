// pull-via host's pieces that need no host: the curl config that carries the presigned URL on
// stdin, the remote command (paths and numbers only), and what an attempt's exit code, curl
// report and sha256sum line mean (retried or not, and never a URL in the message).
import { describe, expect, it } from '@jest/globals';
import { OpsError } from '../../src/lib/errors.js';
import {
  TransientHostGetError,
  curlConfig,
  fetchCommand,
  readAttempt,
  redactUrls,
} from '../../src/models/host-fetch.js';

const URL_ =
  'https://acct.r2.cloudflarestorage.com/vault/models/a%20b.safetensors?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=k%2F20260101%2Fauto%2Fs3%2Faws4_request&X-Amz-Signature=abcdef0123';
const SHA = 'a'.repeat(64);
const what = { path: 'loras/a.safetensors', host: 'gpu', offset: 0 };

/** What `fn` threw (undefined when it returned). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('pull-via host', () => {
  it('curl reads the URL from a quoted config line; a line break in it is refused', () => {
    expect(curlConfig(URL_)).toBe(`url = "${URL_}"\n`);
    expect(curlConfig('http://h/a"b\\c')).toBe('url = "http://h/a\\"b\\\\c"\n');
    expect(() => curlConfig('http://h/a\nb')).toThrow(OpsError);
  });

  it('the remote command holds the partial path and numbers, never the URL; http only for an http endpoint', () => {
    const cmd = fetchCommand("/m/it's.partial", 1234, { url: URL_, stallSeconds: 120 });
    expect(cmd).not.toContain('X-Amz');
    expect(cmd).not.toContain('r2.cloudflarestorage.com');
    expect(cmd).toMatch(/ host-fetch '\/m\/it'\\''s\.partial' 1234 https 30 120$/);
    expect(cmd).toContain('curl --config - ');
    expect(cmd).toContain('--fail');
    expect(cmd).not.toMatch(/ -k | --insecure| --retry /);
    expect(fetchCommand('/p', 0, { url: 'http://127.0.0.1:9/b/k', stallSeconds: 1 })).toMatch(
      / \/p 0 http 30 1$/,
    );
  });

  it('an attempt that ended well: the size is the offset plus what came, the sha256 the host took', () => {
    expect(
      readAttempt({ ...what, offset: 10 }, 0, `${SHA}  -\n`, 'comfyume-curl 206 90\n'),
    ).toEqual({ size: 100, sha256: SHA, bytes: 90 });
    expect(() => readAttempt(what, 0, 'garbage', 'comfyume-curl 200 5\n')).toThrow(OpsError);
  });

  it.each([
    [
      403,
      OpsError,
      /loras\/a\.safetensors: R2 answered HTTP 403 to the host's GET on gpu \(Forbidden/,
    ],
    [404, OpsError, /HTTP 404 .*Not Found/],
    [503, TransientHostGetError, /HTTP 503/],
    [429, TransientHostGetError, /HTTP 429/],
  ])('HTTP %i through curl --fail', (status, kind, message) => {
    const err = thrown(() =>
      readAttempt(
        what,
        22,
        '',
        `curl: (22) The requested URL returned error: ${status}\ncomfyume-curl ${status} 0\n`,
      ),
    );
    expect(err).toBeInstanceOf(kind);
    expect(String(err)).toMatch(message);
  });

  it.each([
    [18, TransientHostGetError, 'the connection closed before the whole body came'],
    [56, TransientHostGetError, 'the connection failed while receiving'],
    [28, TransientHostGetError, 'no byte came within the timeout'],
    [33, OpsError, 'cannot resume'],
    [1, OpsError, 'failed (exit 1'],
  ])('curl exit %i', (exit, kind, words) => {
    const err = thrown(() =>
      readAttempt(what, exit, '', `curl: (${exit}) went wrong at ${URL_}\ncomfyume-curl 200 7\n`),
    );
    expect(err).toBeInstanceOf(kind);
    expect(String(err)).toContain(words);
    // Whatever curl printed, no URL or signature reaches the message.
    expect(String(err)).not.toMatch(/X-Amz|abcdef0123|https:/);
  });

  it('redacts URLs and X-Amz query parameters from text', () => {
    expect(redactUrls(`at ${URL_} now`)).toBe('at <url> now');
    expect(redactUrls('?X-Amz-Signature=00ff&x=1')).toBe('?X-Amz-<redacted>&x=1');
  });
});
