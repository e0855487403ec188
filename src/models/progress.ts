// Progress lines: one at each file's start and end (logged by the caller) and, while transfers
// run, one per active file every interval (10 s by default): bytes, MiB/s and ETA.
import { formatBytes, formatDuration, formatRate } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';

interface Active {
  path: string;
  size: number;
  done: number;
  started: number;
}

export class Progress {
  private active = new Set<Active>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Tracks one transfer; call the returned `add` with each chunk's size and `end` when done. */
  begin(path: string, size: number): { add: (n: number) => void; end: () => number } {
    const entry: Active = { path, size, done: 0, started: this.now() };
    this.active.add(entry);
    this.timer ??= setInterval(() => this.report(), this.intervalMs).unref();
    return {
      add: (n) => (entry.done += n),
      end: () => {
        this.active.delete(entry);
        if (this.active.size === 0 && this.timer) {
          clearInterval(this.timer);
          this.timer = undefined;
        }
        return this.now() - entry.started;
      },
    };
  }

  report(): void {
    for (const a of this.active)
      this.logger.info(progressLine(a.path, a.done, a.size, this.now() - a.started));
  }
}

export function progressLine(path: string, done: number, size: number, elapsedMs: number): string {
  const pct = size > 0 ? Math.floor((done / size) * 100) : 100;
  const rate = elapsedMs > 0 ? done / (elapsedMs / 1000) : 0;
  const eta = rate > 0 ? formatDuration(((size - done) / rate) * 1000) : '?';
  return `${path}: ${formatBytes(done)} / ${formatBytes(size)} (${pct}%), ${formatRate(done, elapsedMs)}, ETA ${eta}`;
}
