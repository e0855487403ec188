// Retention: keep the newest backup of each of the last N days, weeks and months that have
// backups (like restic's --keep-daily/weekly/monthly, so a week of failed nights never wipes
// the history), delete the rest. The backup just written is always kept.
import { InputError } from '../lib/errors.js';

export interface RetentionPolicy {
  daily: number;
  weekly: number;
  monthly: number;
}

const RULES = ['daily', 'weekly', 'monthly'] as const;
const EXPECTED =
  'comma-separated daily=N,weekly=N,monthly=N (each at most once, N from 0 to 1000), e.g. daily=7,weekly=4,monthly=6';

export function parseRetention(input: string, value: string): RetentionPolicy {
  const policy: RetentionPolicy = { daily: 0, weekly: 0, monthly: 0 };
  const seen = new Set<string>();
  const parts = value.split(',').map((p) => p.trim());
  if (value.trim() === '' || parts.some((p) => p === ''))
    throw new InputError(input, value, EXPECTED);
  for (const part of parts) {
    const m = /^(daily|weekly|monthly)\s*=\s*(\d{1,4})$/.exec(part);
    const rule = RULES.find((r) => r === m?.[1]);
    const n = Number(m?.[2]);
    if (!rule || seen.has(rule) || n > 1000) throw new InputError(input, value, EXPECTED);
    seen.add(rule);
    policy[rule] = n;
  }
  return policy;
}

export function formatRetention(p: RetentionPolicy): string {
  return RULES.map((r) => `${r}=${p[r]}`).join(',');
}

/** ISO 8601 week of a UTC date, e.g. 2026-W48. */
export function isoWeek(date: Date): string {
  const d = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  const day = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((d.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

const bucketOf: Record<(typeof RULES)[number], (d: Date) => string> = {
  daily: (d) => d.toISOString().slice(0, 10),
  weekly: isoWeek,
  monthly: (d) => d.toISOString().slice(0, 7),
};

export interface RetentionDecision {
  id: string;
  keep: boolean;
  /** Why it is kept (daily 2026-11-28, weekly 2026-W48, just written, latest.json) or "expired". */
  reasons: string[];
}

/** Decides for every backup (id + time); newest first in the result. `justWritten` is kept. */
export function applyRetention(
  backups: { id: string; time: Date }[],
  policy: RetentionPolicy,
  justWritten: string | undefined,
  keptBecause = 'just written',
): RetentionDecision[] {
  const sorted = [...backups].sort(
    (a, b) => b.time.getTime() - a.time.getTime() || b.id.localeCompare(a.id),
  );
  const reasons = new Map<string, string[]>(sorted.map((b) => [b.id, []]));
  for (const rule of RULES) {
    const buckets = new Set<string>();
    for (const backup of sorted) {
      if (buckets.size >= policy[rule]) break;
      const bucket = bucketOf[rule](backup.time);
      if (buckets.has(bucket)) continue;
      buckets.add(bucket);
      reasons.get(backup.id)?.push(`${rule} ${bucket}`);
    }
  }
  if (justWritten !== undefined) reasons.get(justWritten)?.unshift(keptBecause);
  return sorted.map((b) => {
    const why = reasons.get(b.id) ?? [];
    return { id: b.id, keep: why.length > 0, reasons: why.length > 0 ? why : ['expired'] };
  });
}
