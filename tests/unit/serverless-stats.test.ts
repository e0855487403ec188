// The load test's maths: nearest-rank percentiles, the replica curve, and where a cold start went.
import { describe, expect, it } from '@jest/globals';
import { percentile, replicaCurve } from '../../src/serverless/stats.js';
import { coldStartPhases, slowestPhase } from '../../src/serverless/workload.js';

describe('percentile (nearest rank)', () => {
  it('takes the value at rank ceil(p/100 × n) of the sorted values', () => {
    const oneToTwenty = Array.from({ length: 20 }, (_, i) => 20 - i);
    expect(percentile(oneToTwenty, 50)).toBe(10);
    expect(percentile(oneToTwenty, 95)).toBe(19);
    expect(percentile(oneToTwenty, 100)).toBe(20);
    expect(percentile(oneToTwenty, 0)).toBe(1);
    // 15 jobs, the seed's number: p95 is the 15th (ceil(14.25)), p50 the 8th.
    const fifteen = [31, 12, 45, 12, 18, 22, 40, 19, 25, 33, 12, 14, 16, 28, 60];
    expect(percentile(fifteen, 50)).toBe(22);
    expect(percentile(fifteen, 95)).toBe(60);
    expect(percentile([7], 95)).toBe(7);
  });

  it('has no percentile of nothing, and refuses p outside 0..100', () => {
    expect(percentile([], 50)).toBeUndefined();
    expect(() => percentile([1], 101)).toThrow('percentile takes p from 0 to 100, got 101');
    expect(() => percentile([1], Number.NaN)).toThrow(RangeError);
  });
});

describe('replicaCurve', () => {
  it('draws running (#) and starting (+) replicas per time slot with axes', () => {
    const samples = [
      { atMs: 0, total: 1, running: 1 },
      { atMs: 10_000, total: 4, running: 1 },
      { atMs: 20_000, total: 4, running: 4 },
      { atMs: 30_000, total: 4, running: 4 },
      { atMs: 40_000, total: 2, running: 2 },
    ];
    expect(replicaCurve(samples, { height: 4 })).toEqual([
      '4 | +##',
      '3 | +##',
      '2 | +###',
      '1 |#####',
      '0 +-----',
      '   0 s 40 s',
    ]);
  });

  it('keeps the peak of each slot when there are more samples than columns', () => {
    const samples = Array.from({ length: 100 }, (_, i) => ({
      atMs: i * 1000,
      total: i === 37 ? 9 : 1,
      running: 1,
    }));
    const rows = replicaCurve(samples, { width: 10, height: 3 });
    expect(rows[0]).toBe('9 |   +');
    expect(rows[3]).toBe('0 +----------');
    expect(replicaCurve([])).toEqual(['(no replica samples)']);
  });
});

describe('cold start phases', () => {
  it('splits first write → output into pull, start, queue, first job and fetch', () => {
    const phases = coldStartPhases({
      from: 1_000,
      healthyAt: 11_000,
      readyAt: 31_000,
      job: {
        index: 1,
        ok: true,
        serverClock: true,
        submittedAt: 32_000,
        startedAt: 33_000,
        finishedAt: 43_000,
        outputAt: 44_000,
      },
    });
    expect(phases).toEqual([
      { name: 'pull', ms: 10_000 },
      { name: 'start', ms: 20_000 },
      { name: 'queue', ms: 2_000 },
      { name: 'first job (model load + render)', ms: 10_000 },
      { name: 'output fetch', ms: 1_000 },
    ]);
    expect(slowestPhase(phases)).toEqual({ name: 'start', ms: 20_000 });
  });

  it('leaves out what was not seen, and never runs backwards', () => {
    const phases = coldStartPhases({
      from: 5_000,
      healthyAt: 4_000, // already healthy before this run
      readyAt: 6_000,
      job: { index: 1, ok: true, serverClock: true, outputAt: 9_000 },
    });
    expect(phases).toEqual([
      { name: 'start', ms: 1_000 },
      { name: 'first job (queue, model load, render)', ms: 3_000 },
    ]);
    expect(slowestPhase([])).toBeUndefined();
  });
});
