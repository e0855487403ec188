// The discard sink's resumable mode (what bench/scale.ts kills and resumes against): a push cut
// off mid-file leaves its parts listed there with their MD5s, and the next push sends only the
// parts that are missing.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { memoryLogger } from '../../src/lib/logger.js';
import { createR2Client } from '../../src/lib/r2.js';
import { LocalModelHost, type SequentialReader } from '../../src/models/host.js';
import { syncModels, type SyncModelsOptions } from '../../src/models/sync.js';
import { startDiscardSink, type DiscardSink } from '../../src/sandbox/discard-sink.js';

const MiB = 2 ** 20;
let dir: string;
let sink: DiscardSink;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sink-'));
  mkdirSync(path.join(dir, 'checkpoints'));
  writeFileSync(path.join(dir, 'checkpoints/m.safetensors'), randomBytes(7 * 5 * MiB - 123));
  sink = await startDiscardSink({ resumable: true });
});
afterAll(async () => {
  await sink?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The host whose reader fails once `failAfter` bytes were read (a run that dies mid-file). */
class FailingHost extends LocalModelHost {
  constructor(
    root: string,
    private readonly failAfter: number,
  ) {
    super(root);
  }
  override async reader(file: string): Promise<SequentialReader> {
    const inner = await super.reader(file);
    let read = 0;
    const failAfter = this.failAfter;
    return {
      async read(buf, length) {
        if (read + length > failAfter) throw new Error('killed');
        const n = await inner.read(buf, length);
        read += n;
        return n;
      },
      close: () => inner.close(),
    };
  }
}

describe('discard sink, resumable', () => {
  it('lists a cut-off upload and its parts by MD5; the next push sends only the missing parts', async () => {
    const client = createR2Client({
      endpoint: sink.endpoint,
      accessKeyId: sink.accessKeyId,
      secretAccessKey: sink.secretAccessKey,
    });
    const options = (host: SyncModelsOptions['host']): SyncModelsOptions => ({
      direction: 'push',
      host,
      client,
      bucket: 'vault',
      prefix: 'm/',
      include: ['**/*.safetensors'],
      compare: 'size',
      concurrency: 1,
      partSize: 5 * MiB,
      delete: false,
      dryRun: false,
      hfFallback: false,
    });
    try {
      // Parts 1-3 are read and stored; reading part 4 fails.
      await expect(
        syncModels(options(new FailingHost(dir, 3 * 5 * MiB)), memoryLogger()),
      ).rejects.toThrow(/killed/);
      const first = sink.stats();
      expect(first.parts).toBe(3);
      expect(first.bytes).toBe(15 * MiB);

      const report = await syncModels(options(new LocalModelHost(dir)), memoryLogger());
      const second = sink.stats();
      // 7 parts in all: only 4 to 7 were sent again, 3 reused after their MD5 matched.
      expect(second.parts - first.parts).toBe(4);
      // The parts' bytes, and the small manifest written last.
      const partBytes = 7 * 5 * MiB - 123 - 15 * MiB;
      expect(second.bytes - first.bytes).toBeGreaterThanOrEqual(partBytes);
      expect(second.bytes - first.bytes).toBeLessThan(partBytes + 4096);
      expect(report.files.find((f) => f.action === 'uploaded')?.note).toBe(
        'resumed: 3 of 7 parts already in R2',
      );
      // Completed: nothing left to resume.
      const third = await syncModels(options(new LocalModelHost(dir)), memoryLogger());
      expect(third.uploaded).toBe(1);
      expect(sink.stats().parts - second.parts).toBe(7);
    } finally {
      client.destroy();
    }
  });
});
