// Bounded concurrency and bounded memory for transfers: a semaphore of in-flight requests, a loop
// with a width, and one pool of part buffers, so memory is about partSize × concurrency whatever
// the sizes moved.
export class Semaphore {
  private waiting: (() => void)[] = [];
  private free: number;
  constructor(readonly size: number) {
    this.free = size;
  }

  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

/**
 * Part buffers reused by size; at most `keep` idle buffers of each size are retained. Big blocks
 * that are freed and allocated again cost RSS: after glibc frees one mmap'ed block it raises its
 * mmap threshold, and the next part buffers land in its heap among small buffers, which it can
 * seldom give back. `reserve` allocates the buffers a run will hold at once, before anything else
 * can have raised that threshold.
 */
export class BufferPool {
  private idle = new Map<number, Buffer[]>();
  private reserved = new Set<number>();
  constructor(readonly keep = Infinity) {}

  /** Allocates `count` idle buffers of `size` now; once per size (later calls do nothing). */
  reserve(size: number, count: number): void {
    if (this.reserved.has(size)) return;
    this.reserved.add(size);
    const list = this.idle.get(size) ?? [];
    while (list.length < Math.min(count, this.keep)) list.push(Buffer.allocUnsafeSlow(size));
    this.idle.set(size, list);
  }

  get(size: number): Buffer {
    return this.idle.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
  }

  put(buf: Buffer): void {
    const list = this.idle.get(buf.length) ?? [];
    if (list.length < this.keep) list.push(buf);
    this.idle.set(buf.length, list);
  }
}

/**
 * Runs fn over items with at most `limit` running at once. The first failure stops new items from
 * starting and is thrown once the running ones settled.
 */
export async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const index = next++;
      try {
        await fn(items[index] as T, index);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure !== undefined) throw failure.err;
}
