// Where model files live: a local directory, or a directory on the GPU host over a pinned SSH
// connection. Listing is one call (a directory walk, or one remote `find -printf`); reads are
// sequential streams; hashing on the remote side is one `sha256sum` call for many files; pull
// writes through a PartialFile (`<file>.partial`, renamed into place once verified).
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { OpsError, errorMessage } from '../lib/errors.js';
import { resolveInside } from '../lib/safe-path.js';
import { shellQuote } from '../lib/shell.js';
import type { SshConnection } from '../lib/ssh.js';
import { LocalPartialFile, SshPartialFile, hashFile, type PartialFile } from './partial.js';

export interface ModelFile {
  /** Relative to the models directory, '/'-separated. */
  path: string;
  size: number;
}

/** Fills a buffer from a file, front to back. */
export interface SequentialReader {
  /** Reads up to `length` bytes into buf[0..]; returns the count (0 at the end). */
  read(buf: Buffer, length: number): Promise<number>;
  close(): Promise<void>;
}

export interface ModelHost {
  readonly label: string;
  list(): Promise<ModelFile[]>;
  reader(file: string): Promise<SequentialReader>;
  /** sha256 hex of each file, read where it lives. */
  sha256(files: string[]): Promise<Map<string, string>>;
  /** Creates the models directory (a pull into a fresh host). */
  prepare(): Promise<void>;
  /** Where a download of `file` is written until it is verified. */
  partial(file: string): PartialFile;
  remove(file: string): Promise<void>;
}

export class LocalModelHost implements ModelHost {
  readonly label: string;
  constructor(readonly dir: string) {
    this.label = dir;
  }

  async list(): Promise<ModelFile[]> {
    const out: ModelFile[] = [];
    const walk = async (rel: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(path.join(this.dir, rel), { withFileTypes: true });
      } catch (err) {
        if (rel === '')
          throw new OpsError(`cannot read the models directory ${this.dir}: ${errorMessage(err)}`);
        throw err;
      }
      for (const e of entries) {
        const child = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(child);
        else if (e.isFile() && !e.name.endsWith('.partial')) {
          out.push({ path: child, size: (await stat(path.join(this.dir, child))).size });
        }
      }
    };
    await walk('');
    return out.sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  async reader(file: string): Promise<SequentialReader> {
    const fh = await open(this.at(file), 'r');
    let position = 0;
    return {
      async read(buf, length) {
        let got = 0;
        while (got < length) {
          const { bytesRead } = await fh.read(buf, got, length - got, position);
          if (bytesRead === 0) break;
          got += bytesRead;
          position += bytesRead;
        }
        return got;
      },
      close: () => fh.close(),
    };
  }

  async prepare(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  partial(file: string): PartialFile {
    return new LocalPartialFile(this.dir, file);
  }

  async remove(file: string): Promise<void> {
    await rm(this.at(file), { force: true });
  }

  async sha256(files: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const f of files) {
      const sha = createHash('sha256');
      await hashFile(this.at(f), sha);
      out.set(f, sha.digest('hex'));
    }
    return out;
  }

  /** A model's path in this directory; never outside it. */
  private at(file: string): string {
    return resolveInside(this.dir, file, 'model path');
  }
}

/** Model files on the GPU host, read over an open pinned SSH connection. */
export class SshModelHost implements ModelHost {
  readonly label: string;
  constructor(
    readonly conn: SshConnection,
    readonly dir: string,
  ) {
    this.label = `${conn.host}:${dir}`;
  }

  async list(): Promise<ModelFile[]> {
    // One command for the whole tree: size and relative path, NUL-terminated (any file name).
    const { stdout } = await this.conn.run(
      `find ${shellQuote(this.dir)} -type f -printf '%s %P\\0'`,
    );
    return stdout
      .split('\0')
      .filter((l) => l !== '')
      .map((line) => {
        const sp = line.indexOf(' ');
        return { path: line.slice(sp + 1), size: Number(line.slice(0, sp)) };
      })
      .filter((f) => !f.path.endsWith('.partial'))
      .sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  async reader(file: string): Promise<SequentialReader> {
    const exec = this.conn.exec(`cat -- ${shellQuote(this.at(file))}`);
    return streamReader(exec.stdout, () => exec.done.then(() => undefined));
  }

  async sha256(files: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (files.length === 0) return out;
    for (const f of files) this.at(f);
    const cmd = `cd ${shellQuote(this.dir)} && sha256sum -- ${files.map(shellQuote).join(' ')}`;
    const { stdout } = await this.conn.run(cmd);
    for (const line of stdout.split('\n')) {
      const m = /^\\?([0-9a-f]{64}) [ *](.+)$/.exec(line);
      if (m?.[1] && m[2]) out.set(m[2], m[1]);
    }
    return out;
  }

  async prepare(): Promise<void> {
    await this.conn.run(`mkdir -p -- ${shellQuote(this.dir)}`);
  }

  partial(file: string): SshPartialFile {
    return new SshPartialFile(this.conn, this.dir, file);
  }

  async remove(file: string): Promise<void> {
    await this.conn.run(`rm -f -- ${shellQuote(this.at(file))}`);
  }

  /** A model's path in this directory on the host; never outside it. */
  private at(file: string): string {
    return resolveInside(this.dir, file, 'model path', path.posix);
  }
}

/** A SequentialReader over a stream; `finish` reports how the producer ended (e.g. exit status). */
export function streamReader(stream: Readable, finish: () => Promise<void>): SequentialReader {
  const it = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let left: Buffer | undefined;
  let ended = false;
  return {
    async read(buf, length) {
      let got = 0;
      while (got < length) {
        if (!left || left.length === 0) {
          if (ended) break;
          const next = await it.next();
          if (next.done) {
            ended = true;
            await finish();
            break;
          }
          left = next.value;
        }
        const n = Math.min(length - got, left.length);
        left.copy(buf, got, 0, n);
        left = left.subarray(n);
        got += n;
      }
      return got;
    },
    async close() {
      if (!ended) stream.destroy();
    },
  };
}
