// config/workshop.yml: the desired state of the serverless fleet, validated with zod (strict:
// an unknown or misspelt key is an error naming its path).
import { z } from 'zod';
import { InputError } from '../lib/errors.js';
import { parseWithSchema } from '../lib/schema.js';
import { readYamlFile } from '../lib/yaml-file.js';
import { deploymentNamePattern, envNamePattern, knownComputeNames } from './verda-types.js';

const gpuName = z.enum(knownComputeNames);
const count = z.number().int();
const imageTagPattern = /^(sha256:[0-9a-f]{64}|[\w][\w.-]{0,127})$/;

/** A tag or digest that pins an image: not `latest`, not empty. */
export function isPinnedImageTag(tag: string): boolean {
  return imageTagPattern.test(tag) && tag !== 'latest';
}

const envValue = z.union([z.string(), z.strictObject({ secret: z.string().min(1) })]);

const volume = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('shared'),
    mount_path: z.string().startsWith('/'),
    volume_id: z.string().min(1),
  }),
  z.strictObject({ type: z.literal('scratch'), mount_path: z.string().startsWith('/') }),
  z.strictObject({
    type: z.literal('memory'),
    mount_path: z.literal('/dev/shm'),
    size_in_mb: count.min(1),
  }),
  z.strictObject({
    type: z.literal('secret'),
    mount_path: z.string().startsWith('/'),
    secret_name: z.string().min(1),
    // Absent, never undefined: the mount is then exactly a VolumeMount (verda-types.ts).
    file_names: z.array(z.string()).exactOptional(),
  }),
]);

const preset = z.strictObject({
  gpu: gpuName,
  count: count.min(1).optional(),
  spot: z.boolean(),
  min_replicas: count.min(0).optional(),
  max_replicas: count.min(1).optional(),
});

export const workshopSchema = z
  .strictObject({
    name: z
      .string()
      .max(63)
      .regex(deploymentNamePattern, 'lower-case letters, digits and inner dashes'),
    image: z.strictObject({
      repository: z
        .string()
        .regex(/^[a-z0-9][a-z0-9._\-/:]*[a-z0-9]$/, 'an image repository without tag')
        // A colon may only name a registry port (host:5000/...), never a tag after the last /.
        .refine(
          (r) => !r.slice(r.lastIndexOf('/') + 1).includes(':'),
          'an image repository without tag',
        ),
      tag: z
        .string()
        .refine(isPinnedImageTag, 'a tag other than latest, or sha256:<digest>')
        .optional(),
    }),
    registry_credentials: z.string().min(1).nullable(),
    compute: z.strictObject({ gpu: gpuName, count: count.min(1) }),
    spot: z.boolean(),
    container: z.strictObject({
      port: count.min(1).max(65535),
      health_path: z.string().startsWith('/'),
      command: z.array(z.string()).min(1).optional(),
      env: z
        .record(z.string().regex(envNamePattern, 'an env name like MODELS_DIR'), envValue)
        .default({}),
      volumes: z.array(volume).default([]),
    }),
    scaling: z.strictObject({
      min_replicas: count.min(0),
      max_replicas: count.min(1),
      queue_load: z.number().min(1).max(1000),
      scale_up_delay_seconds: count.min(0),
      scale_down_delay_seconds: count.min(0),
      request_ttl_seconds: count.min(1),
      concurrent_requests_per_replica: count.min(1).max(100),
    }),
    workshop_hours: z.number().positive().default(3),
    // The hard cost cap (USD per hour at max replicas): required, so no run is ever without one;
    // the max-hourly-cost input can only lower it.
    max_hourly_cost_usd: z.number().positive(),
    // The per-workshop cap (USD for workshop_hours at max replicas, every replica busy): the
    // total bill as the hourly cap is the burn rate; required too, and only a reviewed change
    // to the file moves it.
    max_workshop_cost_usd: z.number().positive(),
    default_preset: z.string(),
    presets: z.record(z.string().regex(/^[a-z0-9][a-z0-9-]*$/), preset),
  })
  .superRefine((c, ctx) => {
    if (c.scaling.max_replicas < c.scaling.min_replicas) {
      ctx.addIssue({
        code: 'custom',
        path: ['scaling', 'max_replicas'],
        message: 'must be >= min_replicas',
      });
    }
    if (!(c.default_preset in c.presets)) {
      ctx.addIssue({
        code: 'custom',
        path: ['default_preset'],
        message: `not one of the presets (${Object.keys(c.presets).join(', ')})`,
      });
    }
    const mounts = c.container.volumes.map((v) => v.mount_path);
    if (new Set(mounts).size !== mounts.length) {
      ctx.addIssue({
        code: 'custom',
        path: ['container', 'volumes'],
        message: 'two volumes share a mount_path',
      });
    }
  });

export type WorkshopConfig = z.infer<typeof workshopSchema>;
export type WorkshopPreset = z.infer<typeof preset>;

/** Validates parsed YAML; problems name the key path (e.g. scaling.max_replicas). */
export function parseWorkshopConfig(data: unknown, file: string): WorkshopConfig {
  return parseWithSchema(workshopSchema, data, file);
}

/** The Verda generic secrets the container's env refers to (they must exist before a create). */
export function secretReferences(config: WorkshopConfig): string[] {
  return Object.values(config.container.env).flatMap((v) =>
    typeof v === 'string' ? [] : [v.secret],
  );
}

export async function loadWorkshopConfig(file: string): Promise<WorkshopConfig> {
  return parseWorkshopConfig(await readYamlFile(file), file);
}

/** The cost limit of one run and what set it, for the refusal message. */
export interface CostCap {
  usd: number;
  /** `max-hourly-cost`, or the config key when the input was empty. */
  name: string;
}

/**
 * The config's hard cap, or the `max-hourly-cost` input when that is lower. An input above the
 * cap is refused: only a reviewed change to the config file can raise it.
 */
export function costCap(
  config: WorkshopConfig,
  configFile: string,
  input: number | undefined,
): CostCap {
  const cap = config.max_hourly_cost_usd;
  if (input === undefined) return { usd: cap, name: `max_hourly_cost_usd in ${configFile}` };
  if (input > cap) {
    throw new InputError(
      'max-hourly-cost',
      String(input),
      `at most ${cap}, the cap max_hourly_cost_usd in ${configFile} (the input can only lower it; empty = the cap)`,
    );
  }
  return { usd: input, name: 'max-hourly-cost' };
}
