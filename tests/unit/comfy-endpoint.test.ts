// The ComfyUI endpoint client reads /history as untrusted: an output file name that could start a
// runner command in the log (a newline) or break the summary's table (a `|`) is not taken.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { memoryLogger } from '../../src/lib/logger.js';
import { ComfyEndpoint } from '../../src/serverless/comfy.js';

const names = ['ok.png', 'evil\n::error::pwned.png', 'a|b.png', 'sub/dir.png'];
let server: http.Server;
let url: string;

beforeAll(async () => {
  server = http.createServer((_req, res) => {
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
