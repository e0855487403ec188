// Job summaries: a backup's items, facts and retention decisions; a restore drill's results.
import { formatBytes, formatDuration } from '../lib/format.js';
import { factsTable, type Table } from '../lib/summary.js';
import type { DrillResult } from './restore-drill.js';
import type { BackupResult } from './run-backup.js';
import type { PruneResult, RetentionRunResult } from './run-retention.js';

export function backupReport(
  result: BackupResult,
  opts: { bucket: string; prefix: string },
): (string | Table)[] {
  const parts: (string | Table)[] = [];
  parts.push(
    result.dryRun
      ? `## Backup dry run: nothing was uploaded or deleted`
      : `## Backup ${result.backupId}: ${result.items.length} item(s), ${formatBytes(result.bytes)} stored`,
  );
  parts.push(itemsTable(result));
  const disks = Object.entries(result.facts.disks).map(([name, d]): [string, string] => [
    `disk ${name}`,
    d.filesystem
      ? `${formatBytes(d.usedBytes)} used of ${formatBytes(d.sizeBytes)} (${d.path})`
      : `unavailable (${d.path})`,
  ]);
  parts.push(
    factsTable('Backup', [
      ['backup id', result.backupId],
      ['manifest', result.dryRun ? '-' : `s3://${opts.bucket}/${result.manifestKey}`],
      ['previous latest', result.previousLatest?.backupId ?? '-'],
      ['host key', result.hostFingerprint],
      ['hostname', result.facts.hostname || '-'],
      ['os', result.facts.os || '-'],
      ['tailscale ip', result.facts.tailscaleIp || '-'],
      ['compression', result.compressor],
      ...disks,
    ]),
  );
  if (result.skipped.length > 0) {
    parts.push({
      title: 'Skipped',
      headers: ['Item', 'Why'],
      rows: result.skipped.map((s) => [s.id, s.reason]),
    });
  }
  if (result.retentionSkipped)
    parts.push(
      '**Retention**: not applied by this run (it runs as its own job, `mode: retention`).',
    );
  else parts.push(...retentionTables(result, result.dryRun));
  if (result.warnings.length > 0)
    parts.push(`**Warnings**\n\n${result.warnings.map((w) => `- ${w}`).join('\n')}`);
  return parts;
}

/** A dry run's plan per item, or what each item stored. */
function itemsTable(result: BackupResult): Table {
  if (result.dryRun) {
    return {
      title: 'Plan',
      headers: ['Item', 'Action', 'Paths', 'Missing on the host'],
      rows: result.plan.map((p) => [p.id, p.action, p.paths.join(' '), p.missing.join(' ') || '-']),
    };
  }
  return {
    title: 'Items',
    headers: ['Item', 'Size (tar)', 'Compressed', 'Stored (age)', 'sha256', 'Time'],
    rows: result.items.map((i) => [
      i.id,
      i.tarBytes === null ? '?' : formatBytes(i.tarBytes),
      formatBytes(i.archiveBytes),
      formatBytes(i.storedBytes),
      `\`${i.sha256.slice(0, 12)}\``,
      formatDuration(i.seconds * 1000),
    ]),
  };
}

/** The job summary of a restore drill: per item what was restored and how it compared. */
export function drillReport(
  result: DrillResult,
  opts: { bucket: string; prefix: string; maxAge: string },
): (string | Table)[] {
  const total = result.downloadSeconds + result.restoreSeconds;
  return [
    `## Restore drill of backup ${result.backupId}: ${result.items.length} item(s) restored, equal to their archives`,
    {
      title: 'Items',
      headers: [
        'Item',
        'Stored (age)',
        'sha256',
        'Restored by RESTORE.sh',
        'Compared with the archive',
      ],
      rows: result.items.map((i) => [
        i.id,
        formatBytes(i.storedBytes),
        'matches the manifest',
        `${i.members} member(s)`,
        i.ownershipIgnored
          ? `equal (owners not compared for ${i.ownershipIgnored}: not root)`
          : 'equal',
      ]),
    },
    factsTable('Drill', [
      ['backup', `s3://${opts.bucket}/${opts.prefix}/${result.backupId}/`],
      ['finished', result.finishedAt],
      [
        'age',
        `${result.ageHours.toFixed(1)} h${result.stale ? ` — STALE (max-age ${opts.maxAge})` : ''}`,
      ],
      [
        'download',
        `${formatBytes(result.downloadedBytes)} in ${formatDuration(result.downloadSeconds * 1000)}`,
      ],
      ['RESTORE.sh', formatDuration(result.restoreSeconds * 1000)],
      ['comparison', formatDuration(result.checkSeconds * 1000)],
      ['time to restore (download + RESTORE.sh)', formatDuration(total * 1000)],
    ]),
  ];
}

/** The retention decisions, and what R2 refused to delete (bucket lock rules). */
function retentionTables(
  result: Pick<PruneResult, 'retention' | 'deleted' | 'refused'>,
  dryRun: boolean,
): Table[] {
  const refused = new Map(result.refused.map((b) => [b.id, b]));
  const tables: Table[] = [
    {
      title: dryRun ? 'Retention (what a real run would decide)' : 'Retention',
      headers: ['Backup', 'Decision', 'Why'],
      rows: result.retention.map((d) => [
        d.id,
        d.keep
          ? 'keep'
          : result.deleted.includes(d.id)
            ? 'deleted'
            : refused.has(d.id)
              ? refused.get(d.id)?.intact
                ? 'kept: R2 refused the delete (locked)'
                : 'partly deleted: its manifest is gone (locked objects remain)'
              : 'delete',
        d.reasons.join(', '),
      ]),
    },
  ];
  if (result.refused.length > 0) {
    tables.push({
      title: 'Refused by R2 (a bucket lock rule, or a token without delete rights)',
      headers: ['Backup', 'Object', 'R2 said', 'State'],
      rows: result.refused.flatMap((b) =>
        b.refused.map((r) => [
          b.id,
          r.key,
          r.code,
          b.intact ? 'whole backup kept' : 'no manifest: a later run removes it',
        ]),
      ),
    });
  }
  return tables;
}

/** The job summary of a retention-only run (mode: retention). */
export function retentionReport(
  result: RetentionRunResult,
  opts: { bucket: string; prefix: string },
): (string | Table)[] {
  const parts: (string | Table)[] = [
    result.dryRun
      ? '## Retention dry run: nothing was deleted'
      : `## Retention: ${result.deleted.length} backup(s) deleted, ${result.refused.length} refused by R2`,
    factsTable('Retention', [
      ['bucket', `s3://${opts.bucket}/${opts.prefix}/`],
      ['latest (always kept)', result.latest?.backupId ?? '-'],
      ['stale multipart uploads aborted', String(result.aborted)],
    ]),
    ...retentionTables(result, result.dryRun),
  ];
  if (result.warnings.length > 0)
    parts.push(`**Warnings**\n\n${result.warnings.map((w) => `- ${w}`).join('\n')}`);
  return parts;
}
