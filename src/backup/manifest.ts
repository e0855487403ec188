// Where a backup lives in the bucket and what its manifest.json records. The manifest is written
// last: a backup exists exactly when its manifest does.
import { z } from 'zod';
import { OpsError } from '../lib/errors.js';
import { absolutePath } from './config.js';
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

// What a restore drill needs from a manifest (to restore, and to generate RESTORE.sh again),
// checked; other fields pass through untouched.
const manifestSchema = z
  .object({
    format: z.literal(MANIFEST_FORMAT),
    backupId: z.string().regex(ID_RE),
    finishedAt: z.iso.datetime(),
    tool: z.object({ version: z.string() }).loose(),
    host: z.object({ hostRoot: absolutePath('host.hostRoot'), fingerprint: z.string() }).loose(),
    facts: z.object({ hostname: z.string(), tailscaleIp: z.string() }).loose(),
    encryption: z.object({ format: z.literal('age'), recipients: z.array(z.string()) }),
    items: z.array(
      z
        .object({
          id: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/i),
          description: z.string(),
          afterRestore: z.array(z.string()),
          // Checked as the config checks them: they become paths on the machine restoring.
          paths: z.array(absolutePath('path', { glob: true })).min(1),
          missingPaths: z.array(z.string()),
          restoreTo: absolutePath('restoreTo'),
          key: z.string(),
          compression: z.enum(['zstd', 'gzip']),
          tarBytes: z.number().int().nonnegative().nullable(),
          storedBytes: z.number().int().nonnegative(),
          sha256: z.string().regex(/^[0-9a-f]{64}$/),
        })
        .loose(),
    ),
    restoreScript: z.object({
      key: z.string(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      bytes: z.number().int().nonnegative(),
    }),
  })
  .loose();

/** A stored manifest, checked; the error names the key and the first field that is wrong. */
export function parseManifest(text: string, key: string): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new OpsError(`${key} is not JSON`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new OpsError(
      `${key} is not a ${MANIFEST_FORMAT} manifest: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data as unknown as Manifest;
}

export function parseLatest(text: string): LatestPointer | undefined {
  try {
    const parsed = latestSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
