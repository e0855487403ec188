// The job summary of a model sync: one row per file and the R2 request cost of the run.
import { formatBytes, formatDuration, formatRate, formatUsd } from '../lib/format.js';
import { factsTable, type Table } from '../lib/summary.js';
import type { SyncReport } from './sync.js';

export function syncTables(r: SyncReport): Table[] {
  const files: Table = {
    title: `Model sync (${r.direction})`,
    headers: ['File', 'Action', 'Size', 'Time', 'Rate', 'Note'],
    rows: r.files.map((f) => [
      f.path,
      f.action,
      formatBytes(f.size),
      f.ms > 0 ? formatDuration(f.ms) : '-',
      f.ms > 0 ? formatRate(f.size, f.ms) : '-',
      f.note ?? '',
    ]),
  };
  const ops = Object.entries(r.requests.byOperation)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([op, n]) => `${op} ${n}`)
    .join(', ');
  const facts = factsTable('R2 requests of this run', [
    ['Compared by', r.compare],
    [
      'Uploaded / downloaded / skipped / deleted',
      `${r.uploaded} / ${r.downloaded} / ${r.skipped} / ${r.deleted}`,
    ],
    ['Bytes moved', formatBytes(r.bytes)],
    ['Class A requests', String(r.requests.classA)],
    ['Class B requests', String(r.requests.classB)],
    ['By operation', ops || 'none'],
    ['Request cost', formatUsd(r.requests.cost)],
    ...staleRow(r),
  ]);
  return [files, facts];
}

/** Shown only when a run aborted stale multipart uploads. */
function staleRow(r: SyncReport): [string, string][] {
  return r.staleAborted > 0 ? [['Stale uploads aborted', String(r.staleAborted)]] : [];
}
