// Where a download lands before it is trusted: `<file>.partial` beside the final path, appended
// to (resume), measured and hashed where it lives, then renamed into place in one step. One
// implementation for a local directory, one for the GPU host over SSH.
import { createHash, type Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { OpsError } from '../lib/errors.js';
import { resolveInside } from '../lib/safe-path.js';
import { shellQuote } from '../lib/shell.js';
import type { SshConnection } from '../lib/ssh.js';
import { curlConfig, fetchCommand, readAttempt, type HostGet } from './host-fetch.js';

export interface PartialFile {
  /** Bytes already in `<file>.partial` (0 when there is none); creates the parent directory. */
  size(): Promise<number>;
  /**
   * Streams `body` onto the partial (appended, or from the first byte when `fromStart`). Settles
   * only once the writer is done, so what the partial holds is a prefix of the file.
   */
  write(body: Readable, fromStart: boolean): Promise<void>;
  /** Size and sha256 of the whole partial, read where it lives. */
  digest(): Promise<{ size: number; sha256: string }>;
  discard(): Promise<void>;
  /** Renames the partial onto the final path (atomic: same directory). */
  commit(): Promise<void>;
}

/**
 * Feeds a local file to a hash; returns its length. One buffer is read into again and again: a
 * read stream's fresh 1 MiB chunk per read piled up dead (tens of MiB of RSS while a 26 GiB file
 * was hashed) until a scavenge freed them.
 */
export async function hashFile(file: string, sha: Hash): Promise<number> {
  const buf = Buffer.allocUnsafeSlow(2 ** 20);
  const fh = await open(file, 'r');
  try {
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return n;
      sha.update(buf.subarray(0, bytesRead));
      n += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

/** A partial in a local directory. Hashes while writing, so the file is not read a second time. */
export class LocalPartialFile implements PartialFile {
  private readonly final: string;
  private readonly partial: string;
  /** A hash of exactly the partial's bytes, kept while this process wrote them. */
  private running: { sha: Hash; size: number } | undefined;

  constructor(dir: string, rel: string) {
    this.final = resolveInside(dir, rel, 'model path');
    this.partial = `${this.final}.partial`;
  }

  async size(): Promise<number> {
    await mkdir(path.dirname(this.final), { recursive: true });
    try {
      return (await stat(this.partial)).size;
    } catch {
      return 0;
    }
  }

  async write(body: Readable, fromStart: boolean): Promise<void> {
    // The kept prefix is hashed first (a reset costs only this re-read), then every new byte.
    const sha = createHash('sha256');
    const running = { sha, size: fromStart ? 0 : await hashFile(this.partial, sha).catch(() => 0) };
    this.running = undefined;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        sha.update(chunk);
        running.size += chunk.length;
        cb(null, chunk);
      },
    });
    try {
      await pipeline(body, tap, createWriteStream(this.partial, { flags: fromStart ? 'w' : 'a' }));
    } finally {
      this.running = running;
    }
  }

  async digest(): Promise<{ size: number; sha256: string }> {
    const size = (await stat(this.partial)).size;
    if (this.running?.size === size) return { size, sha256: this.running.sha.digest('hex') };
    const sha = createHash('sha256');
    await hashFile(this.partial, sha);
    return { size, sha256: sha.digest('hex') };
  }

  async discard(): Promise<void> {
    this.running = undefined;
    await rm(this.partial, { force: true });
  }

  async commit(): Promise<void> {
    await rename(this.partial, this.final);
  }
}

/**
 * A partial on the GPU host: bytes go into the partial over the SSH connection, the host measures
 * (`stat`) and hashes it, and `mv -f -T` puts it in place. A write from the first byte is hashed
 * on the host as it is written (`tee` into `sha256sum`, on another core), so the file is not read
 * a second time; after an append (a resume) the whole partial is hashed once it is complete.
 */
export class SshPartialFile implements PartialFile {
  private readonly final: string;
  private readonly partial: string;
  /** Size and sha256 of exactly the bytes the last write from the start put into the partial. */
  private written: { size: number; sha256: string } | undefined;

  constructor(
    private readonly conn: SshConnection,
    dir: string,
    rel: string,
  ) {
    this.final = resolveInside(dir, rel, 'model path', path.posix);
    this.partial = `${this.final}.partial`;
  }

  async size(): Promise<number> {
    const p = shellQuote(this.partial);
    const { stdout } = await this.conn.run(
      `mkdir -p -- ${shellQuote(path.posix.dirname(this.final))} && ` +
        `if [ -e ${p} ]; then stat -c %s -- ${p}; else echo 0; fi`,
    );
    return this.parseSize(stdout);
  }

  async write(body: Readable, fromStart: boolean): Promise<void> {
    this.written = undefined;
    const p = shellQuote(this.partial);
    // pipefail: a failed write (tee) fails the command even though sha256sum succeeded.
    const command = fromStart
      ? `bash -o pipefail -c ${shellQuote('tee -- "$1" | sha256sum')} tee-sha256 ${p}`
      : `cat >> ${p}`;
    const upload = this.conn.writeTo(command);
    let size = 0;
    const count = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        cb(null, chunk);
      },
    });
    try {
      await pipeline(body, count, upload.stdin);
    } catch (err) {
      // The remote side got EOF: wait until it has exited, so no later append overlaps it.
      await upload.done.catch(() => undefined);
      throw err;
    }
    await upload.done;
    if (fromStart) this.written = { size, sha256: this.hashOf(upload.stdoutText()) };
  }

  /**
   * pull-via host: the host itself GETs the bytes from `offset` on into the partial (curl, URL on
   * its stdin), hashing the kept prefix and the new bytes as they are written. Returns the bytes
   * added; fails as host-fetch.ts's readAttempt says (a TransientHostGetError may be retried).
   */
  async fetch(get: HostGet, offset: number, path: string): Promise<number> {
    this.written = undefined;
    const upload = this.conn.writeTo(fetchCommand(this.partial, offset, get), {
      allowedExitCodes: Array.from({ length: 256 }, (_, i) => i),
    });
    upload.stdin.end(curlConfig(get.url));
    const { code } = await upload.done;
    const got = readAttempt(
      { path, host: this.conn.host, offset },
      code ?? -1,
      upload.stdoutText(),
      upload.stderrText(),
    );
    this.written = { size: got.size, sha256: got.sha256 };
    return got.bytes;
  }

  async digest(): Promise<{ size: number; sha256: string }> {
    const p = shellQuote(this.partial);
    if (this.written) {
      // The hash taken while writing counts only if the partial is still exactly those bytes' size.
      const size = this.parseSize((await this.conn.run(`stat -c %s -- ${p}`)).stdout);
      if (size === this.written.size) return { size, sha256: this.written.sha256 };
    }
    const { stdout } = await this.conn.run(`stat -c %s -- ${p} && sha256sum < ${p}`);
    const [sizeLine = '', hashLine = ''] = stdout.split('\n');
    return { size: this.parseSize(sizeLine), sha256: this.hashOf(hashLine) };
  }

  private hashOf(text: string): string {
    const sha256 = /^([0-9a-f]{64})\b/.exec(text.trim())?.[1];
    if (!sha256)
      throw new OpsError(`sha256sum on ${this.conn.host} printed ${JSON.stringify(text.trim())}`);
    return sha256;
  }

  async discard(): Promise<void> {
    this.written = undefined;
    await this.conn.run(`rm -f -- ${shellQuote(this.partial)}`);
  }

  async commit(): Promise<void> {
    // -T: never move the file INTO a directory that happens to sit at the final path.
    await this.conn.run(`mv -f -T -- ${shellQuote(this.partial)} ${shellQuote(this.final)}`);
  }

  private parseSize(text: string): number {
    const n = Number(text.trim());
    if (!Number.isSafeInteger(n) || n < 0 || text.trim() === '')
      throw new OpsError(
        `stat of ${this.partial} on ${this.conn.host} printed ${JSON.stringify(text)}`,
      );
    return n;
  }
}
