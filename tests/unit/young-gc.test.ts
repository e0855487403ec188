// The backup stream's dead chunks are freed early: every YOUNG_GC_EVERY bytes streamed, one minor
// GC runs (seen by a PerformanceObserver of the engine's gc entries), and none before. Parts sent:
// one full GC every FULL_GC_EVERY bytes.
import { describe, expect, it } from '@jest/globals';
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import {
  FULL_GC_EVERY,
  partBytesSent,
  streamedBytes,
  YOUNG_GC_EVERY,
} from '../../src/lib/young-gc.js';

async function gcsDuring(fn: () => void, gcKind: number): Promise<number> {
  const seen: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => seen.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  fn();
  await new Promise((r) => setTimeout(r, 50));
  observer.disconnect();
  const kind = (e: PerformanceEntry & { detail?: { kind?: number } }) => e.detail?.kind;
  return seen.filter((e) => kind(e) === gcKind).length;
}
const minorGcsDuring = (fn: () => void) => gcsDuring(fn, constants.NODE_PERFORMANCE_GC_MINOR);
const fullGcsDuring = (fn: () => void) => gcsDuring(fn, constants.NODE_PERFORMANCE_GC_MAJOR);

describe('young GC while streaming', () => {
  it('runs a minor GC each time YOUNG_GC_EVERY bytes have streamed, and not in between', async () => {
    const every = await minorGcsDuring(() => {
      for (let i = 0; i < 20; i++) streamedBytes(YOUNG_GC_EVERY);
    });
    const between = await minorGcsDuring(() => {
      for (let i = 0; i < 20; i++) streamedBytes(1024);
    });
    expect(every).toBeGreaterThanOrEqual(20);
    // 20 KiB streamed: at most the engine's own occasional scavenge.
    expect(between).toBeLessThanOrEqual(2);
  });

  it('runs a full GC each time FULL_GC_EVERY bytes of parts were sent, and not in between', async () => {
    const every = await fullGcsDuring(() => {
      for (let i = 0; i < 5; i++) partBytesSent(FULL_GC_EVERY);
    });
    const between = await fullGcsDuring(() => {
      for (let i = 0; i < 20; i++) partBytesSent(8 * 2 ** 20);
    });
    expect(every).toBeGreaterThanOrEqual(5);
    // 160 MiB sent: no forced one (at most the engine's own).
    expect(between).toBeLessThanOrEqual(1);
  });
});
