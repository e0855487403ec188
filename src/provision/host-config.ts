// config/host.yml: the GPU host as code (what provision-host creates on Verda), validated with
// zod (strict: an unknown or misspelt key is an error naming its path).
import { z } from 'zod';
import { InputError } from '../lib/errors.js';
import { parseWithSchema } from '../lib/schema.js';
import { readYamlFile } from '../lib/yaml-file.js';

/** The web console's rule (verda-instances-api.md §3), capped at 60 as dstack does. */
export const HOSTNAME_RE = /^(?=.*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9-]{0,58}[A-Za-z0-9])?$/;

const volume = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(100)
    .regex(/^[\w .-]+$/, 'letters, digits, spaces, dots, dashes and underscores'),
  type: z.enum(['NVMe', 'NVMe_Shared', 'HDD', 'HDD_Shared']),
  'size-gb': z.number().int().min(1).max(100_000),
});

const preset = z.strictObject({
  'instance-type': z
    .string()
    .regex(/^[A-Za-z0-9][\w.]{1,40}$/, 'an instance type such as 1V100.6V'),
  spot: z.boolean().default(false),
  'max-hourly-cost': z.number().positive(),
  /** Set for test presets: the scheduled check deletes such an instance after this long. */
  'max-running-hours': z
    .number()
    .positive()
    .max(24 * 30)
    .optional(),
  /** Overrides the top-level hostname (a test host beside the real one). */
  hostname: z
    .string()
    .regex(HOSTNAME_RE, 'letters, digits and inner dashes, with a letter')
    .optional(),
});

export const hostConfigSchema = z
  .strictObject({
    location: z.string().regex(/^[A-Z]{2,5}-\d{2}$/, 'a location code such as FIN-01'),
    hostname: z.string().regex(HOSTNAME_RE, 'letters, digits and inner dashes, with a letter'),
    image: z
      .string()
      .min(1)
      .max(200)
      .regex(/^[\w.:-]+$/, 'an image type or id'),
    'os-volume-gb': z.number().int().min(1).max(10_000),
    'ssh-key': z.string().min(1).max(200),
    'startup-script': z.string().min(1).optional(),
    volumes: z.strictObject({ models: volume, scratch: volume }),
    'default-preset': z.string(),
    presets: z.record(
      z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits, -'),
      preset,
    ),
  })
  .refine((c) => c['default-preset'] in c.presets, {
    path: ['default-preset'],
    message: 'must name one of presets',
  })
  .refine((c) => c.volumes.models.name !== c.volumes.scratch.name, {
    path: ['volumes', 'scratch', 'name'],
    message: 'must differ from volumes.models.name (volumes are found by name)',
  });

export type HostConfig = z.infer<typeof hostConfigSchema>;
export type HostPreset = z.infer<typeof preset>;
export type HostVolume = z.infer<typeof volume>;

/** What one provision run aims at: the config with its preset chosen. */
export interface HostTarget {
  presetName: string;
  preset: HostPreset;
  hostname: string;
  config: HostConfig;
}

export async function loadHostConfig(file: string): Promise<HostConfig> {
  return parseWithSchema(hostConfigSchema, await readYamlFile(file), file);
}

/** The preset (input `preset`, else the config's default): an unknown name lists the known ones. */
export function hostTarget(config: HostConfig, presetName: string | undefined): HostTarget {
  const name = presetName ?? config['default-preset'];
  const chosen = config.presets[name];
  if (!chosen)
    throw new InputError('preset', name, `one of ${Object.keys(config.presets).join(', ')}`);
  return { presetName: name, preset: chosen, hostname: chosen.hostname ?? config.hostname, config };
}
