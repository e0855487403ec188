// The maths of a load test's report: latency percentiles and a small text curve of the replica
// count over time (ASCII only: it goes to logs, summaries and terminals alike).

/** The nearest-rank percentile (p in 0..100) of the values; undefined when there are none. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile takes p from 0 to 100, got ${p}`);
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

export interface ReplicaSample {
  /** Ms since the load test began (on the API clock when it sends Date headers). */
  atMs: number;
  /** Replicas listed (starting or running). */
  total: number;
  running: number;
}

/**
 * The replica count over time as rows of text: one column per time slot (the largest count seen
 * in it; a slot without a sample repeats the one before), `#` for running replicas and `+` for
 * ones still starting, a y axis with the counts and an x axis from 0 to the last sample.
 */
export function replicaCurve(
  samples: readonly ReplicaSample[],
  opts: { width?: number; height?: number; formatTime?: (ms: number) => string } = {},
): string[] {
  if (samples.length === 0) return ['(no replica samples)'];
  const span = Math.max(...samples.map((s) => s.atMs));
  const width = Math.max(1, Math.min(opts.width ?? 60, samples.length));
  const slots: (ReplicaSample | undefined)[] = Array.from({ length: width }, () => undefined);
  for (const s of samples) {
    const i = span === 0 ? 0 : Math.min(width - 1, Math.floor((s.atMs / span) * width));
    const prev = slots[i];
    if (!prev || s.total > prev.total || (s.total === prev.total && s.running > prev.running))
      slots[i] = s;
  }
  for (let i = 1; i < width; i++) slots[i] ??= slots[i - 1];
  const peak = Math.max(...samples.map((s) => s.total));
  const height = Math.max(1, Math.min(opts.height ?? 8, peak));
  const label = (n: number) => String(n).padStart(String(peak).length);
  const rows: string[] = [];
  for (let level = height; level >= 1; level--) {
    // The count a row stands for: rows split 0..peak evenly, the top row is the peak.
    const threshold = (level / height) * peak;
    const shown = Math.round(threshold);
    const cells = slots.map((s) => {
      if (!s || s.total < threshold - 1e-9) return ' ';
      return s.running >= threshold - 1e-9 ? '#' : '+';
    });
    rows.push(`${label(shown)} |${cells.join('').trimEnd()}`);
  }
  const fmt = opts.formatTime ?? ((ms: number) => `${Math.round(ms / 1000)} s`);
  const end = fmt(span);
  const axis = `${label(0)} +${'-'.repeat(width)}`;
  const times = `${' '.repeat(label(0).length + 2)}${fmt(0)}`;
  return [
    ...rows,
    axis,
    `${times}${' '.repeat(Math.max(1, width - fmt(0).length - end.length))}${end}`,
  ];
}
