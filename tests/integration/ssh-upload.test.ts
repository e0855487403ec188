// Streaming data INTO a remote command (SshConnection.writeTo) against the real sshd fixture host:
// bytes land intact, a stalled reader holds the writer back (backpressure), and a bad exit code,
// a signal or a dropped link rejects `done` and fails the pipeline.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { shellQuote } from '../../src/lib/shell.js';
import { connectSsh, type SshConnection } from '../../src/lib/ssh.js';
import { sleep } from '../../src/lib/retry.js';
import { startSshHost, type SshHost } from '../../src/sandbox/ssh-host.js';
import { dropLink } from './ssh-drop.js';

jest.setTimeout(120_000);

const MiB = 2 ** 20;
let host: SshHost;
let conn: SshConnection;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const connect = (h: SshHost) =>
  connectSsh({
    host: h.host,
    port: h.port,
    username: h.user,
    privateKey: h.privateKey,
    fingerprints: [h.hostKeyFingerprint],
  });

/** `total` bytes of `block` repeated, counting what the consumer has pulled so far. */
function counted(block: Buffer, total: number): { stream: Readable; produced: () => number } {
  let produced = 0;
  const stream = new Readable({
    read() {
      if (produced >= total) return void this.push(null);
      const n = Math.min(block.length, total - produced);
      produced += n;
      this.push(block.subarray(0, n));
    },
  });
  return { stream, produced: () => produced };
}

beforeAll(async () => {
  host = await startSshHost({ models: [] });
  conn = await connect(host);
}, 60_000);
afterAll(async () => {
  await conn?.close();
  await host?.stop();
});

describe('writeTo', () => {
  it('streams bytes into a remote file byte for byte, and exec() still works beside it', async () => {
    const data = randomBytes(9 * MiB + 17);
    const file = path.join(host.scratchDir, 'upload one.bin');
    const up = conn.writeTo(`cat > ${shellQuote(file)}`);
    await pipeline(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), up.stdin);
    await expect(up.done).resolves.toEqual({ code: 0 });
    expect(sha256(readFileSync(file))).toBe(sha256(data));
    const r = await conn.run(`sha256sum < ${shellQuote(file)}`);
    expect(r.stdout.slice(0, 64)).toBe(sha256(data));
  });

  it('the stdin stream finishes only after the command exited, with its stdout kept', async () => {
    const up = conn.writeTo('sha256sum');
    const data = randomBytes(3 * MiB);
    await pipeline(Readable.from([data]), up.stdin);
    expect(up.stdoutText().slice(0, 64)).toBe(sha256(data));
  });

  it('holds the writer back while the remote command does not read (backpressure)', async () => {
    const flag = path.join(host.scratchDir, 'go');
    const out = path.join(host.scratchDir, 'slow.bin');
    const block = randomBytes(MiB);
    const total = 96 * MiB;
    const src = counted(block, total);
    const up = conn.writeTo(
      `while [ ! -e ${shellQuote(flag)} ]; do sleep 0.05; done; cat > ${shellQuote(out)}`,
    );
    const piping = pipeline(src.stream, up.stdin);
    // Wait until the producer stops being pulled, then check it is far from the end.
    let last = -1;
    for (let stable = 0; stable < 8;) {
      await sleep(100);
      stable = src.produced() === last ? stable + 1 : 0;
      last = src.produced();
    }
    expect(src.produced()).toBeLessThan(24 * MiB);
    await conn.run(`touch ${shellQuote(flag)}`);
    await piping;
    await up.done;
    const expected = createHash('sha256');
    for (let n = 0; n < total / MiB; n++) expected.update(block);
    expect((await conn.run(`sha256sum < ${shellQuote(out)}`)).stdout.slice(0, 64)).toBe(
      expected.digest('hex'),
    );
  });

  it('rejects done and fails the pipeline on a bad exit code, with the stderr tail', async () => {
    const up = conn.writeTo(`cat > ${shellQuote(path.join(host.scratchDir, 'no/such/dir/x'))}`);
    const piping = pipeline(Readable.from([randomBytes(4 * MiB)]), up.stdin);
    await expect(up.done).rejects.toThrow(/exited with code 1 .*No such file or directory/);
    await expect(piping).rejects.toThrow(/exited with code 1/);
  });

  it('a command that exits 0 without reading all its input is not a success', async () => {
    const up = conn.writeTo('head -c 10 > /dev/null');
    await expect(pipeline(counted(randomBytes(MiB), 64 * MiB).stream, up.stdin)).rejects.toThrow(
      /exited before reading all its input/,
    );
  });

  it('rejects done when the command is killed by a signal', async () => {
    const up = conn.writeTo('kill -KILL $$');
    const piping = pipeline(counted(randomBytes(MiB), 64 * MiB).stream, up.stdin);
    await expect(up.done).rejects.toThrow(/signal (SIG)?KILL/);
    await expect(piping).rejects.toThrow(/signal (SIG)?KILL/);
  });

  it('a failed source ends the input: the command keeps what it got and done reports its exit', async () => {
    const file = path.join(host.scratchDir, 'cut.bin');
    const up = conn.writeTo(`cat > ${shellQuote(file)}`);
    const data = randomBytes(2 * MiB);
    const source = new Readable({ read() {} });
    source.push(data);
    const piping = pipeline(source, up.stdin);
    setTimeout(() => source.destroy(new Error('source reset')), 200);
    await expect(piping).rejects.toThrow(/source reset/);
    await expect(up.done).resolves.toEqual({ code: 0 });
    expect(sha256(readFileSync(file))).toBe(sha256(data));
  });

  it('rejects done and fails the pipeline when the link drops mid-upload', async () => {
    const before = new Set(host.sessionPids());
    const c = await connect(host);
    const up = c.writeTo('echo started; sleep 30; cat > /dev/null');
    const piping = pipeline(counted(randomBytes(MiB), 256 * MiB).stream, up.stdin);
    // Cut the link once the command runs (and the writer is held back by the SSH window).
    for (let i = 0; i < 200 && !up.stdoutText().includes('started'); i++) await sleep(50);
    const link = dropLink(host, before);
    expect(link.killed).toBeGreaterThan(0);
    await expect(up.done).rejects.toThrow(/before it exited/);
    await expect(piping).rejects.toThrow(/before it exited/);
    link.cleanup();
    await c.close();
  });
});
