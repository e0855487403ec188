// Where a backup lives in the bucket and what its manifest.json records. The manifest is written
// last: a backup exists exactly when its manifest does.
import { z } from 'zod';
import type { HostFacts } from './facts.js';
import type { Compressor } from './remote-commands.js';

export const MANIFEST_FORMAT = 'comfyume-ops/backup-manifest/1';
export const TOOL_NAME = 'comfyume-ops backup-verda';

/** Backup ids are UTC timestamps, sortable as text: 20261128T021500Z. */
export function backupIdFor(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

const ID_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

export function parseBackupId(id: string): Date | undefined {
  const m = ID_RE.exec(id);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as number[];
  const date = new Date(Date.UTC(y ?? 0, (mo ?? 1) - 1, d, h, mi, s));
  return backupIdFor(date) === id ? date : undefined;
}

export const backupKeys = (prefix: string, id: string) => ({
  dir: `${prefix}/${id}/`,
  manifest: `${prefix}/${id}/manifest.json`,
  restoreScript: `${prefix}/${id}/RESTORE.sh`,
  item: (itemId: string, extension: string) => `${prefix}/${id}/${itemId}.${extension}.age`,
});

export const latestKey = (prefix: string) => `${prefix}/latest.json`;

export interface ManifestItem {
  id: string;
  description: string;
  paths: string[];
  /** Host paths that were absent (optional items, or globs that matched nothing). */
  missingPaths: string[];
  required: boolean;
  sudo: boolean;
  restoreTo: string;
  afterRestore: string[];
  key: string;
  compression: Compressor;
  /** Uncompressed tar bytes (GNU tar --totals), when tar reported them. */
  tarBytes: number | null;
  /** Compressed bytes received from the host. */
  archiveBytes: number;
  /** Encrypted bytes stored in R2, and their sha256. */
  storedBytes: number;
  sha256: string;
  seconds: number;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  backupId: string;
  tool: { name: string; version: string };
  startedAt: string;
  finishedAt: string;
  host: { address: string; port: number; user: string; fingerprint: string; hostRoot: string };
  facts: HostFacts;
  encryption: { format: 'age'; recipients: string[] };
  items: ManifestItem[];
  skipped: { id: string; reason: string }[];
  restoreScript: { key: string; sha256: string; bytes: number };
}

export interface LatestPointer {
  backupId: string;
  manifestKey: string;
  finishedAt: string;
}

const latestSchema = z.object({
  backupId: z.string(),
  manifestKey: z.string(),
  finishedAt: z.string(),
});

export function parseLatest(text: string): LatestPointer | undefined {
  try {
    const parsed = latestSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
