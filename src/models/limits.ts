// Bounded concurrency and bounded memory for transfers: a semaphore of in-flight requests and a
// pool of part buffers, so memory is about partSize × concurrency whatever the file sizes.
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

/** Reuses part buffers by size; at most `keep` idle buffers of each size are retained. */
export class BufferPool {
  private idle = new Map<number, Buffer[]>();
  constructor(readonly keep: number) {}

  get(size: number): Buffer {
    return this.idle.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
  }

  put(buf: Buffer): void {
    const list = this.idle.get(buf.length) ?? [];
    if (list.length < this.keep) list.push(buf);
    this.idle.set(buf.length, list);
  }
}

/** Runs fn over items with at most `limit` running at once; the first failure is thrown after all settle. */
export async function forEachLimit<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure;
}
