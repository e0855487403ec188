// The HuggingFace fallback pointed at a closed port fails within a bounded time with an error
// naming the URL and the cause in words (R2's case runs through the bundle: under jest's VM
// realm the SDK wraps the socket error and drops its code).
import { describe, expect, it } from '@jest/globals';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { memoryLogger } from '../../src/lib/logger.js';
import { LocalPartialFile } from '../../src/models/partial.js';
import { pullFile, streamFill, urlSource } from '../../src/models/pull.js';
import { closedPort } from '../helpers/closed-port.js';

describe('the HuggingFace fallback on a closed port', () => {
  it('HuggingFace fallback: the download fails within seconds naming the URL and the cause', async () => {
    const port = await closedPort();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'hf-closed-'));
    try {
      const url = `http://127.0.0.1:${port}/org/model/resolve/main/model.safetensors`;
      const begin = Date.now();
      const partial = new LocalPartialFile(dir, 'checkpoints/model.safetensors');
      const err = await pullFile({
        partial,
        path: 'checkpoints/model.safetensors',
        fill: streamFill(partial, urlSource(url), () => {}),
        origin: url,
        logger: memoryLogger(),
      }).catch((e: unknown) => e);
      expect(String(err)).toContain(`GET ${url} got no answer: connection refused (ECONNREFUSED)`);
      expect(Date.now() - begin).toBeLessThan(30_000);
      expect(await readdir(path.join(dir, 'checkpoints')).catch(() => [])).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
