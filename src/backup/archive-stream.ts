// One item's journey: remote tar | compressor → SSH channel → age encryption → sha256 → R2
// multipart, in one stream with backpressure end to end (no temp files). The object becomes
// visible only after the remote command exited cleanly; otherwise the upload is aborted.
import { PassThrough, pipeline } from 'node:stream';
import { encryptStream } from '../lib/age-stream.js';
import { OpsError } from '../lib/errors.js';
import type { BufferPool } from '../lib/limits.js';
import type { R2Store } from '../lib/r2-store.js';
import { uploadStream, type StreamUploadResult } from '../lib/r2-stream-upload.js';
import type { SshConnection } from '../lib/ssh.js';
import { changedWhileReading, parseTarTotals } from './remote-commands.js';

export interface ItemStreamOptions {
  conn: SshConnection;
  itemId: string;
  command: string;
  recipients: string[];
  store: R2Store;
  key: string;
  partSize: number;
  pool?: BufferPool;
  concurrency?: number;
}

export interface ItemStreamResult {
  stored: StreamUploadResult;
  archiveBytes: number;
  tarBytes: number | null;
  warning?: string;
  ms: number;
}

function stderrTail(text: string): string {
  const lines = text
    .trim()
    .split('\n')
    .filter((l) => !/^Total bytes written:/.test(l));
  return lines.slice(-5).join(' | ');
}

export async function streamItem(opts: ItemStreamOptions): Promise<ItemStreamResult> {
  const started = Date.now();
  // Exit 1 is judged below (tar's "file changed as we read it" is fine, sudo's refusal is not).
  const exec = opts.conn.exec(opts.command, { allowedExitCodes: [0, 1] });
  let archiveBytes = 0;
  const counter = new PassThrough({
    transform(chunk: Buffer, _enc, cb) {
      archiveBytes += chunk.length;
      cb(null, chunk);
    },
  });
  // pipeline() carries a failed SSH stream (drop, signal, bad exit) into the encryption and upload.
  pipeline(exec.stdout, counter, () => {});
  const encrypted = await encryptStream(opts.recipients, counter);

  let warning: string | undefined;
  const upload = uploadStream({
    store: opts.store,
    key: opts.key,
    body: encrypted,
    contentType: 'application/octet-stream',
    partSize: opts.partSize,
    ...(opts.pool ? { pool: opts.pool } : {}),
    ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
    beforeComplete: async () => {
      const result = await exec.done;
      if (result.code === 1) {
        const stderr = exec.stderrText();
        if (!changedWhileReading(stderr)) {
          throw new OpsError(
            `item ${opts.itemId}: the remote archive command exited with code 1: ${stderrTail(stderr) || 'no message'}`,
          );
        }
        warning = `item ${opts.itemId}: files changed while they were read (tar exit 1), archive kept: ${stderrTail(stderr)}`;
      }
      if (archiveBytes === 0)
        throw new OpsError(`item ${opts.itemId}: the host sent an empty archive`);
    },
  });
  let stored: StreamUploadResult;
  try {
    stored = await upload;
  } catch (err) {
    // Stop reading; closing the connection afterwards ends the remote command.
    encrypted.destroy();
    counter.destroy();
    throw err;
  }
  return {
    stored,
    archiveBytes,
    tarBytes: parseTarTotals(exec.stderrText()) ?? null,
    ...(warning ? { warning } : {}),
    ms: Date.now() - started,
  };
}
