// config/backup.yml: what to take from the GPU host. Validated strictly (unknown keys, relative
// or '..' paths and duplicate ids are errors) before any connection is opened.
import { z } from 'zod';
import { parseWithSchema } from '../lib/schema.js';
import { parseYamlText, readYamlFile } from '../lib/yaml-file.js';
import { absolutePath, hasControlChars } from '../lib/safe-path.js';
import { hostShapeSchema } from '../host/shape.js';
import { ITEM_STEPS } from './restore-steps.js';

/** Item and disk ids: what the config allows, and what a manifest may name. */
export const ITEM_ID_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** An exclude pattern, relative to each of the item's paths (e.g. .cache, comfy-multi/data/models). */
const excludePattern = z.string().superRefine((value, ctx) => {
  const bad =
    value === '' || value.startsWith('/')
      ? 'must be relative to the item path (no leading /)'
      : hasControlChars(value)
        ? 'must not contain control characters'
        : value.split('/').some((s) => s === '..' || s === '.')
          ? "must not contain '.' or '..' segments"
          : undefined;
  if (bad) ctx.addIssue({ code: 'custom', message: `exclude ${JSON.stringify(value)} ${bad}` });
});

const itemSchema = z.strictObject({
  id: z.string().regex(ITEM_ID_RE, 'id must be 1-63 lowercase letters, digits and hyphens'),
  description: z.string().default(''),
  paths: z.array(absolutePath('path', { glob: true })).min(1, 'paths needs at least one path'),
  exclude: z.array(excludePattern).default([]),
  /** A missing required item fails the backup; a missing optional one is a warning. */
  required: z.boolean().default(true),
  /** Root-owned: read through `sudo -n <read-wrapper>`. */
  sudo: z.boolean().default(false),
  /** Where RESTORE.sh extracts the archive (members are paths relative to the host root). */
  'restore-to': absolutePath('restore-to').default('/'),
  /** The RESTORE.sh step that restores this item (the step then does what the item needs). */
  step: z.enum(ITEM_STEPS).default('project'),
  /** Commands RESTORE.sh runs after extracting this item onto a live system (root '/'). */
  'after-restore': z.array(z.string().min(1)).default([]),
});

const configSchema = z
  .strictObject({
    version: z.literal(1),
    /** The host's "/" as seen over SSH; tests point it at the fixture tree. */
    'host-root': absolutePath('host-root').default('/'),
    /** The root-owned wrapper run through `sudo -n` for sudo items (scripts/host/comfyume-read). */
    'read-wrapper': absolutePath('read-wrapper').default('/usr/local/sbin/comfyume-read'),
    /** Directories whose disk usage is recorded (df), by name. */
    'disk-facts': z
      .record(z.string().regex(ITEM_ID_RE), absolutePath('disk-facts path'))
      .default({}),
    /** Where the model vault lives on the host (with-models). */
    'models-dir': absolutePath('models-dir').optional(),
    items: z.array(itemSchema).min(1, 'items needs at least one item'),
    /** What RESTORE.sh rebuilds the host into and verify-host checks (src/host/shape.ts). */
    host: hostShapeSchema.prefault({}),
  })
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.items.forEach((item, index) => {
      if (seen.has(item.id)) {
        ctx.addIssue({
          code: 'custom',
          path: ['items', index, 'id'],
          message: `duplicate item id ${JSON.stringify(item.id)}`,
        });
      }
      seen.add(item.id);
    });
  });

export type BackupConfig = z.output<typeof configSchema>;
export type BackupItem = BackupConfig['items'][number];

/** Validates parsed YAML; every problem is listed with its field path. */
export function parseBackupConfig(file: string, data: unknown): BackupConfig {
  return parseWithSchema(configSchema, data, file);
}

export function parseBackupConfigText(file: string, text: string): BackupConfig {
  return parseBackupConfig(file, parseYamlText(file, text));
}

export async function loadBackupConfig(file: string): Promise<BackupConfig> {
  return parseBackupConfig(file, await readYamlFile(file));
}

/** A host path as seen on the host: the configured path under host-root. */
export function onHost(config: Pick<BackupConfig, 'host-root'>, path: string): string {
  const root = config['host-root'];
  return root === '/' ? path : `${root.replace(/\/$/, '')}${path}`;
}
