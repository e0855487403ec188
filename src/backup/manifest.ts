// Where a backup lives in the bucket and what its manifest.json records. The manifest is written
// last: a backup exists exactly when its manifest does.
import { z } from 'zod';
import { OpsError } from '../lib/errors.js';
import { schemaProblems } from '../lib/schema.js';
import type { ItemStreamResult } from './archive-stream.js';
import { absolutePath } from '../lib/safe-path.js';
import { ITEM_ID_RE, type BackupItem } from './config.js';
import { hostFactsSchema, hostText } from './facts.js';
import { CHECK_IDS, type CheckId } from '../host/checks.js';
import { hostShapeSchema } from '../host/shape.js';
import { ITEM_STEPS } from './restore-steps.js';
import type { PlannedItem } from './plan.js';
import { COMPRESSOR_NAMES, COMPRESSORS, type Compressor } from './remote-commands.js';

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
  const [, y, mo, d, h, mi, s] = m.map(Number);
  const date = new Date(Date.UTC(y ?? 0, (mo ?? 1) - 1, d, h, mi, s));
  return backupIdFor(date) === id ? date : undefined;
}

export const backupKeys = (prefix: string, id: string) => ({
  dir: `${prefix}/${id}/`,
  manifest: `${prefix}/${id}/manifest.json`,
  signature: `${prefix}/${id}/manifest.json.sig`,
  restoreScript: `${prefix}/${id}/RESTORE.sh`,
  item: (itemId: string, extension: string) => `${prefix}/${id}/${itemId}.${extension}.age`,
});

export type BackupKeys = ReturnType<typeof backupKeys>;

export const latestKey = (prefix: string) => `${prefix}/latest.json`;

const SHA256_HEX = z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256 in hex');
const bytes = z.number().int().nonnegative();
/** `SHA256:` and 43 base64 characters, as ssh-keygen -l prints a host key. */
export const FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;
const SEMVER_RE = /^\d{1,5}\.\d{1,5}\.\d{1,5}(?:-[0-9A-Za-z.-]{1,40})?$/;
const USER_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/;
const HOST_RE = /^[A-Za-z0-9.:_-]{1,253}$/;
/** age recipients: X25519 (age1 + bech32) or an SSH public key, one line each. */
const RECIPIENT_RE = /^(?:age1[02-9ac-hj-np-z]{58}|(?:ssh-ed25519|ssh-rsa) [A-Za-z0-9+/]+={0,2})$/;

export const manifestItemSchema = z.strictObject({
  id: z.string().regex(ITEM_ID_RE, 'must be an item id as in config/backup.yml'),
  description: hostText(500),
  // Checked as the config checks them: they become paths on the machine restoring.
  paths: z.array(absolutePath('path', { glob: true })).min(1),
  /** Host paths that were absent (optional items, or globs that matched nothing). */
  missingPaths: z.array(absolutePath('missing path', { glob: true })),
  required: z.boolean(),
  sudo: z.boolean(),
  restoreTo: absolutePath('restoreTo'),
  /** The RESTORE.sh step that restores it (backups before steps: project). */
  step: z.enum(ITEM_STEPS).default('project'),
  /** As the config said at backup time; a restore runs its own config's, never these. */
  afterRestore: z.array(hostText(1000)),
  key: z.string(),
  compression: z.enum(COMPRESSOR_NAMES),
  /** Uncompressed tar bytes (GNU tar --totals), when tar reported them. */
  tarBytes: bytes.nullable(),
  /** Compressed bytes received from the host. */
  archiveBytes: bytes,
  /** Encrypted bytes stored in R2, and their sha256. */
  storedBytes: bytes,
  sha256: SHA256_HEX,
  seconds: z.number().nonnegative(),
});

const manifestFields = z.strictObject({
  format: z.literal(MANIFEST_FORMAT),
  backupId: z.string().regex(ID_RE, 'must be a backup id such as 20261128T021500Z'),
  tool: z.strictObject({
    name: z.literal(TOOL_NAME),
    version: z.string().regex(SEMVER_RE, 'must be a version such as 0.1.0'),
  }),
  startedAt: z.iso.datetime(),
  finishedAt: z.iso.datetime(),
  host: z.strictObject({
    address: z.string().regex(HOST_RE, 'must be a host name or address'),
    port: z.number().int().min(1).max(65535),
    user: z.string().regex(USER_RE, 'must be a user name'),
    fingerprint: z.string().regex(FINGERPRINT_RE, 'must be SHA256:<43 base64 characters>'),
    hostRoot: absolutePath('host.hostRoot'),
  }),
  facts: hostFactsSchema,
  encryption: z.strictObject({
    format: z.literal('age'),
    recipients: z.array(z.string().regex(RECIPIENT_RE, 'must be an age recipient')).min(1),
  }),
  items: z.array(manifestItemSchema),
  /** The host RESTORE.sh rebuilds and the checks of its verify step, as configured at backup time. */
  rebuild: z
    .strictObject({
      host: hostShapeSchema,
      checks: z.array(
        z.strictObject({
          id: z.enum(CHECK_IDS as [CheckId, ...CheckId[]]),
          level: z.enum(['required', 'optional']),
        }),
      ),
    })
    .prefault({ host: {}, checks: [] }),
  skipped: z.array(z.strictObject({ id: z.string().regex(ITEM_ID_RE), reason: hostText(2000) })),
  restoreScript: z.strictObject({ key: z.string(), sha256: SHA256_HEX, bytes }),
});

export type ManifestItem = z.infer<typeof manifestItemSchema>;
export type Manifest = z.infer<typeof manifestFields>;

/** One item as stored: its object and what streaming it measured (archive-stream.ts). */
export type StoredItem = { key: string; compression: Compressor } & Pick<
  ItemStreamResult,
  'tarBytes' | 'archiveBytes' | 'stored' | 'ms'
>;

/**
 * The manifest entry of one backed-up item: the config's item, the paths its plan took and
 * missed, and what was stored. The only place an item is built; the key order is the manifest's.
 */
export function manifestItem(
  item: BackupItem,
  planned: Pick<PlannedItem, 'paths' | 'missing'>,
  stored: StoredItem,
): ManifestItem {
  return {
    id: item.id,
    description: item.description,
    paths: planned.paths,
    missingPaths: planned.missing,
    required: item.required,
    sudo: item.sudo,
    restoreTo: item['restore-to'],
    step: item.step,
    afterRestore: item['after-restore'],
    key: stored.key,
    compression: stored.compression,
    tarBytes: stored.tarBytes,
    archiveBytes: stored.archiveBytes,
    storedBytes: stored.stored.size,
    sha256: stored.stored.sha256,
    seconds: Math.round(stored.ms) / 1000,
  };
}

/**
 * The manifest of backup `backupId` under `prefix`, whole: every object it names is this backup's
 * own (`<prefix>/<id>/<item>.<ext>.age`, `<prefix>/<id>/RESTORE.sh`), ids are unique, and the id
 * is the start time.
 */
export function manifestSchema(prefix: string) {
  return manifestFields.superRefine((m, ctx) => {
    const keys = backupKeys(prefix, m.backupId);
    const issue = (path: (string | number)[], message: string) =>
      ctx.addIssue({ code: 'custom', path, message });
    if (backupIdFor(new Date(m.startedAt)) !== m.backupId)
      issue(['startedAt'], `must be the time backup id ${m.backupId} names`);
    if (Date.parse(m.finishedAt) < Date.parse(m.startedAt))
      issue(['finishedAt'], 'must not be before startedAt');
    if (m.restoreScript.key !== keys.restoreScript)
      issue(['restoreScript', 'key'], `must be ${keys.restoreScript}`);
    const seen = new Set<string>();
    m.items.forEach((item, i) => {
      const expected = keys.item(item.id, COMPRESSORS[item.compression].extension);
      if (item.key !== expected) issue(['items', i, 'key'], `must be ${expected}`);
      if (seen.has(item.id)) issue(['items', i, 'id'], `duplicate item id ${item.id}`);
      seen.add(item.id);
    });
  });
}

export const latestSchema = z.strictObject({
  backupId: z.string().regex(ID_RE),
  manifestKey: z.string(),
  finishedAt: z.iso.datetime(),
});

export type LatestPointer = z.infer<typeof latestSchema>;

/** A stored manifest, checked; the error names the key and the first field that is wrong. */
export function parseManifest(text: string, key: string, prefix: string): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new OpsError(`${key} is not JSON`);
  }
  const parsed = manifestSchema(prefix).safeParse(json);
  if (!parsed.success)
    throw new OpsError(
      `${key} is not a ${MANIFEST_FORMAT} manifest: ${schemaProblems(parsed.error)[0]}`,
    );
  if (key !== backupKeys(prefix, parsed.data.backupId).manifest)
    throw new OpsError(`${key} names backup ${parsed.data.backupId}: not its own manifest`);
  return parsed.data;
}

/** latest.json, when it is well formed and names a manifest of its own prefix. */
export function parseLatest(text: string, prefix: string): LatestPointer | undefined {
  try {
    const parsed = latestSchema.safeParse(JSON.parse(text));
    if (!parsed.success) return undefined;
    return parsed.data.manifestKey === backupKeys(prefix, parsed.data.backupId).manifest
      ? parsed.data
      : undefined;
  } catch {
    return undefined;
  }
}
