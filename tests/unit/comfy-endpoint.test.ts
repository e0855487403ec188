// The ComfyUI endpoint client reads /history as untrusted: an output file name that could start a
// runner command in the log (a newline) or break the summary's table (a `|`) is not taken. A job
// is submitted again only when ComfyUI cannot have taken it.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { memoryLogger } from '../../src/lib/logger.js';
import { ComfyEndpoint } from '../../src/serverless/comfy.js';

let posts = 0;
/** What POST /prompt does, by how many came before. */
let onPost: (n: number, res: http.ServerResponse) => void = () => undefined;
const names = ['ok.png', 'evil\n::error::pwned.png', 'a|b.png', 'sub/dir.png'];
let server: http.Server;
let url: string;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.method === 'POST') {
      req.resume();
      req.on('end', () => onPost(posts++, res));
      return;
    }
    const images = names.map((filename) => ({ filename, subfolder: '', type: 'output' }));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        p1: { outputs: { '9': { images } }, status: { status_str: 'success', completed: true } },
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/w`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('ComfyEndpoint.state', () => {
  it('takes only plain output file names', async () => {
    const endpoint = new ComfyEndpoint({
      endpointUrl: url,
      inferenceKey: 'dc_test',
      logger: memoryLogger(),
    });
    const state = (await endpoint.state('p1')).value;
    expect(state.state).toBe('success');
    expect(state.state === 'success' ? state.files.map((f) => f.filename) : []).toEqual(['ok.png']);
  });
});

describe('ComfyEndpoint.submit', () => {
  const endpoint = () =>
    new ComfyEndpoint({
      endpointUrl: url,
      inferenceKey: 'dc_test',
      logger: memoryLogger(),
      sleep: async () => undefined,
    });
  const ok = (res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ prompt_id: 'p-1' }));
  };

  it('submits again after a 503 (no replica yet): it was not taken', async () => {
    posts = 0;
    onPost = (n, res) => (n < 2 ? res.writeHead(503).end('no replica') : ok(res));
    expect((await endpoint().submit({}, 60_000)).value).toBe('p-1');
    expect(posts).toBe(3);
  });

  it('never submits again after the connection was cut once the prompt was sent', async () => {
    posts = 0;
    onPost = (n, res) => (n === 0 ? res.socket?.destroy() : ok(res));
    await expect(endpoint().submit({}, 60_000)).rejects.toThrow();
    expect(posts).toBe(1);
  });

  it('never submits again after a 504: the replica may have queued it', async () => {
    posts = 0;
    onPost = (n, res) => (n === 0 ? res.writeHead(504).end('gateway timeout') : ok(res));
    await expect(endpoint().submit({}, 60_000)).rejects.toThrow(/POST \/prompt answered 504/);
    expect(posts).toBe(1);
  });
});
