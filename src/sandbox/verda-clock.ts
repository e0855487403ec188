/**
 * The Verda emulator's clock: emulated milliseconds that run `timeScale` times faster than real
 * time, can be pushed forward by hand (`advance`) and optionally tick forward on every request,
 * which makes status transitions deterministic for a client running in another process.
 */
export interface EmulatedClockOptions {
  /** Emulated ms per real ms; 0 freezes the clock (only advance/tick move it). Default 1. */
  timeScale?: number;
  /** Where emulated time starts (epoch ms); default now, rounded down to a whole second. */
  startAt?: number;
  /** Real time source, for tests of the clock itself. */
  realNow?: () => number;
}

export class EmulatedClock {
  private readonly realStart: number;
  private readonly start: number;
  private offset = 0;
  private readonly scale: number;
  private readonly realNow: () => number;

  constructor(opts: EmulatedClockOptions = {}) {
    this.realNow = opts.realNow ?? Date.now;
    this.realStart = this.realNow();
    this.start = opts.startAt ?? Math.floor(this.realStart / 1000) * 1000;
    this.scale = opts.timeScale ?? 1;
    if (!(this.scale >= 0)) throw new RangeError(`timeScale must be >= 0, got ${this.scale}`);
  }

  now(): number {
    return Math.floor(this.start + this.offset + (this.realNow() - this.realStart) * this.scale);
  }

  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`advance takes ms >= 0, got ${ms}`);
    this.offset += ms;
  }

  /** Emulated ms since the clock started. */
  elapsed(): number {
    return this.now() - this.start;
  }
}
