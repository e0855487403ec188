// Strict validation of what clients send to the Verda emulator, with the documented error body
// {code, message} (verda-api.md §2.1, §3, §5 and the gotchas). Returns normalised specs.
import { findCompute, type ComputeModel } from './verda-catalog.js';
import { exampleScaling } from './verda-examples.js';
import {
  deploymentNameMaxLength,
  deploymentNamePattern,
  envNamePattern,
  invalid,
  type ComputeSpec,
  type ContainerSpec,
  type DeploymentSpec,
  type EntrypointOverrides,
  type EnvVar,
  type Healthcheck,
  type RegistrySettings,
  type ScalingOptions,
  type UtilizationTrigger,
  type VolumeMount,
} from './verda-wire.js';

/** What the emulator knows exists, for references in a deployment. */
export interface ValidationContext {
  catalog: ComputeModel[];
  secrets: ReadonlySet<string>;
  fileSecrets: ReadonlySet<string>;
  registryCredentials: ReadonlySet<string>;
}

/** A container is checked the same way on create and update, except that an update names it. */
export type ContainerPurpose = 'create' | 'update';

export const defaultScaling = (): ScalingOptions => exampleScaling(0, 1);

type Json = Record<string, unknown>;

export function isJsonObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The whole request body of a route that takes an object. */
export function requestObject(v: unknown): Json {
  if (!isJsonObject(v)) throw invalid('the request body must be a JSON object');
  return v;
}

const given = (v: unknown): boolean => v !== undefined && v !== null;

function obj(v: unknown, field: string): Json {
  if (!isJsonObject(v)) throw invalid(`${field} must be an object`);
  return v;
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw invalid(`${field} must be a non-empty string`);
  return v;
}

function bool(v: unknown, field: string, fallback?: boolean): boolean {
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'boolean') throw invalid(`${field} must be a boolean`);
  return v;
}

function int(v: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(`${field} must be an integer from ${min} to ${max}`);
  }
  return v;
}

function num(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw invalid(`${field} must be a number from ${min} to ${max}`);
  }
  return v;
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

function strings(v: unknown, field: string): string[] {
  if (!isStringArray(v)) throw invalid(`${field} must be an array of strings`);
  return v;
}

export function validateName(v: unknown): string {
  const name = str(v, 'name');
  if (name.length > deploymentNameMaxLength || !deploymentNamePattern.test(name)) {
    throw invalid(
      `name "${name}" must match ${deploymentNamePattern.source} and be at most ${deploymentNameMaxLength} characters`,
    );
  }
  return name;
}

/** An image reference must carry a tag other than `latest`, or a digest (gotcha 2). */
export function validateImage(v: unknown, field: string): string {
  const image = str(v, field);
  if (/\s/.test(image)) throw invalid(`${field} must not contain spaces`);
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return image;
  const lastSegment = image.slice(image.lastIndexOf('/') + 1);
  const colon = lastSegment.lastIndexOf(':');
  if (colon < 0)
    throw invalid(`${field} "${image}" has no tag; a tag other than latest is required`);
  const tag = lastSegment.slice(colon + 1);
  if (tag === 'latest') throw invalid(`${field} "${image}": the latest tag is not allowed`);
  if (!/^[\w][\w.-]{0,127}$/.test(tag)) throw invalid(`${field} "${image}" has an invalid tag`);
  return image;
}

/**
 * Scaling options, whole or partial: fields not given keep `base` (PATCH /scaling) or the
 * defaults (a create without scaling).
 */
export function validateScaling(v: unknown, base?: ScalingOptions): ScalingOptions {
  const body = obj(v, 'scaling');
  const merged: Json = { ...(base ?? defaultScaling()) };
  for (const [key, value] of Object.entries(body)) if (value !== undefined) merged[key] = value;
  const min = int(merged.min_replica_count, 'scaling.min_replica_count', 0);
  const max = int(merged.max_replica_count, 'scaling.max_replica_count', 1);
  if (max < Math.max(1, min)) {
    throw invalid(`scaling.max_replica_count (${max}) must be >= max(1, min_replica_count=${min})`);
  }
  const up = obj(merged.scale_up_policy, 'scaling.scale_up_policy');
  const down = obj(merged.scale_down_policy, 'scaling.scale_down_policy');
  return {
    min_replica_count: min,
    max_replica_count: max,
    scale_up_policy: {
      delay_seconds: int(up.delay_seconds, 'scaling.scale_up_policy.delay_seconds', 0),
    },
    scale_down_policy: {
      delay_seconds: int(down.delay_seconds, 'scaling.scale_down_policy.delay_seconds', 0),
    },
    queue_message_ttl_seconds: int(
      merged.queue_message_ttl_seconds,
      'scaling.queue_message_ttl_seconds',
      1,
    ),
    concurrent_requests_per_replica: int(
      merged.concurrent_requests_per_replica,
      'scaling.concurrent_requests_per_replica',
      1,
      100,
    ),
    scaling_triggers: validateTriggers(merged.scaling_triggers),
  };
}

/** Queue load is required (current tooling: threshold >= 1); cpu/gpu triggers are optional. */
function validateTriggers(v: unknown): ScalingOptions['scaling_triggers'] {
  const triggers = obj(v, 'scaling.scaling_triggers');
  const queueLoad = obj(triggers.queue_load, 'scaling.scaling_triggers.queue_load');
  const out: ScalingOptions['scaling_triggers'] = {
    queue_load: {
      threshold: num(queueLoad.threshold, 'scaling.scaling_triggers.queue_load.threshold', 1, 1000),
    },
  };
  if (given(triggers.cpu_utilization))
    out.cpu_utilization = validateUtilization(triggers.cpu_utilization, 'cpu_utilization');
  if (given(triggers.gpu_utilization))
    out.gpu_utilization = validateUtilization(triggers.gpu_utilization, 'gpu_utilization');
  return out;
}

function validateUtilization(v: unknown, key: string): UtilizationTrigger {
  const field = `scaling.scaling_triggers.${key}`;
  const t = obj(v, field);
  const enabled = bool(t.enabled, `${field}.enabled`);
  if (t.threshold === undefined) return { enabled };
  return { enabled, threshold: int(t.threshold, `${field}.threshold`, 1, 100) };
}

/** A list of variables; a secret one must name an existing generic secret. */
export function validateEnv(v: unknown, field: string, ctx: ValidationContext): EnvVar[] {
  if (!given(v)) return [];
  if (!Array.isArray(v)) throw invalid(`${field} must be an array`);
  const seen = new Set<string>();
  return v.map((item, i) => {
    const e = obj(item, `${field}[${i}]`);
    const name = str(e.name, `${field}[${i}].name`);
    if (!envNamePattern.test(name))
      throw invalid(`${field}[${i}].name "${name}" must match ${envNamePattern.source}`);
    if (seen.has(name)) throw invalid(`${field}: duplicate variable ${name}`);
    seen.add(name);
    const type = e.type;
    if (type !== 'plain' && type !== 'secret')
      throw invalid(`${field}[${i}].type must be plain or secret`);
    const value = e.value_or_reference_to_secret;
    if (typeof value !== 'string')
      throw invalid(`${field}[${i}].value_or_reference_to_secret must be a string`);
    if (type === 'secret' && !ctx.secrets.has(value)) {
      throw invalid(`${field}[${i}] references secret "${value}", which does not exist`);
    }
    return { name, value_or_reference_to_secret: value, type };
  });
}

function validateMount(v: unknown, field: string, ctx: ValidationContext): VolumeMount {
  const m = obj(v, field);
  const mountPath = str(m.mount_path, `${field}.mount_path`);
  if (!mountPath.startsWith('/')) throw invalid(`${field}.mount_path must be absolute`);
  switch (m.type) {
    case 'scratch':
      // The API reads a sized scratch mount as a shared one and then asks for volume_id (gotcha 8).
      if (m.size_in_mb !== undefined)
        throw invalid('volume_mounts.*.volume_id should not be null or undefined');
      return { type: 'scratch', mount_path: mountPath };
    case 'memory':
      if (mountPath !== '/dev/shm')
        throw invalid(`${field}.mount_path of a memory mount must be /dev/shm`);
      return {
        type: 'memory',
        mount_path: mountPath,
        size_in_mb: int(m.size_in_mb, `${field}.size_in_mb`, 1),
      };
    case 'shared':
      // The wording of PY 1.23.1's 400 for a round-trip that dropped volume_id (§2.2).
      if (typeof m.volume_id !== 'string' || m.volume_id === '') {
        throw invalid('volume_mounts.*.volume_id should not be null or undefined');
      }
      return { type: 'shared', mount_path: mountPath, volume_id: m.volume_id };
    case 'secret': {
      const secretName = str(m.secret_name, `${field}.secret_name`);
      if (!ctx.fileSecrets.has(secretName))
        throw invalid(`${field}: file secret "${secretName}" does not exist`);
      const mount: VolumeMount = { type: 'secret', mount_path: mountPath, secret_name: secretName };
      if (m.file_names !== undefined)
        mount.file_names = strings(m.file_names, `${field}.file_names`);
      return mount;
    }
    default:
      throw invalid(`${field}.type must be one of scratch, secret, memory, shared`);
  }
}

function validateHealthcheck(v: unknown, field: string): Healthcheck {
  const h = obj(v, field);
  const healthcheck: Healthcheck = { enabled: bool(h.enabled, `${field}.enabled`) };
  if (h.port !== undefined) healthcheck.port = int(h.port, `${field}.port`, 1, 65535);
  if (h.path !== undefined) {
    const path = str(h.path, `${field}.path`);
    if (!path.startsWith('/')) throw invalid(`${field}.path must start with /`);
    healthcheck.path = path;
  }
  return healthcheck;
}

function validateEntrypointOverrides(v: unknown, field: string): EntrypointOverrides {
  const e = obj(v, field);
  const overrides: EntrypointOverrides = { enabled: bool(e.enabled, `${field}.enabled`) };
  if (e.entrypoint !== undefined)
    overrides.entrypoint = strings(e.entrypoint, `${field}.entrypoint`);
  if (e.cmd !== undefined) overrides.cmd = strings(e.cmd, `${field}.cmd`);
  return overrides;
}

export function validateContainer(
  v: unknown,
  field: string,
  ctx: ValidationContext,
  purpose: ContainerPurpose,
): ContainerSpec {
  const c = obj(v, field);
  const container: ContainerSpec = {
    image: validateImage(c.image, `${field}.image`),
    exposed_port: int(c.exposed_port, `${field}.exposed_port`, 1, 65535),
    env: validateEnv(c.env, `${field}.env`, ctx),
    volume_mounts: [],
  };
  // Gotcha 5: the server names containers on create; every update must say which one it means.
  if (purpose === 'update') container.name = str(c.name, `${field}.name (required on update)`);
  if (given(c.healthcheck))
    container.healthcheck = validateHealthcheck(c.healthcheck, `${field}.healthcheck`);
  if (given(c.entrypoint_overrides)) {
    container.entrypoint_overrides = validateEntrypointOverrides(
      c.entrypoint_overrides,
      `${field}.entrypoint_overrides`,
    );
  }
  if (given(c.volume_mounts)) {
    if (!Array.isArray(c.volume_mounts)) throw invalid(`${field}.volume_mounts must be an array`);
    container.volume_mounts = c.volume_mounts.map((m, i) =>
      validateMount(m, `${field}.volume_mounts[${i}]`, ctx),
    );
  }
  if (c.autoupdate !== undefined) container.autoupdate = c.autoupdate;
  if (c.should_use_cached_image !== undefined) {
    container.should_use_cached_image = bool(
      c.should_use_cached_image,
      `${field}.should_use_cached_image`,
    );
  }
  return container;
}

export function validateCompute(v: unknown, ctx: ValidationContext): ComputeSpec {
  const c = obj(v, 'compute');
  const name = str(c.name, 'compute.name');
  const size = int(c.size, 'compute.size', 1);
  if (!findCompute(ctx.catalog, name, size)) {
    throw invalid(`compute "${name}" with size ${size} is not a serverless compute resource`);
  }
  return { name, size };
}

export function validateRegistrySettings(v: unknown, ctx: ValidationContext): RegistrySettings {
  const r = obj(v, 'container_registry_settings');
  const isPrivate = bool(r.is_private, 'container_registry_settings.is_private');
  let credentials: { name: string } | null = null;
  if (given(r.credentials)) {
    const name = str(
      obj(r.credentials, 'container_registry_settings.credentials').name,
      'container_registry_settings.credentials.name',
    );
    if (!ctx.registryCredentials.has(name))
      throw invalid(`registry credentials "${name}" do not exist`);
    credentials = { name };
  }
  if (isPrivate && !credentials)
    throw invalid('a private registry needs container_registry_settings.credentials');
  return { is_private: isPrivate, credentials };
}

function validateContainers(
  v: unknown,
  ctx: ValidationContext,
  purpose: ContainerPurpose,
): ContainerSpec[] {
  if (!Array.isArray(v) || v.length === 0) throw invalid('containers must be a non-empty array');
  return v.map((c, i) => validateContainer(c, `containers[${i}]`, ctx, purpose));
}

export function validateCreate(body: unknown, ctx: ValidationContext): DeploymentSpec {
  const b = obj(body, 'body');
  return {
    name: validateName(b.name),
    is_spot: bool(b.is_spot, 'is_spot', false),
    compute: validateCompute(b.compute, ctx),
    container_registry_settings: validateRegistrySettings(
      b.container_registry_settings ?? { is_private: false },
      ctx,
    ),
    scaling: given(b.scaling) ? validateScaling(b.scaling) : defaultScaling(),
    containers: validateContainers(b.containers, ctx, 'create'),
  };
}

/**
 * A PATCH body: only the fields given (PY sends nulls for the others), each validated whole;
 * `containers` replaces all of them (§2.2) and must name containers the deployment has.
 */
export function validatePatch(
  body: unknown,
  current: DeploymentSpec,
  ctx: ValidationContext,
): Partial<DeploymentSpec> {
  const b = obj(body, 'body');
  const out: Partial<DeploymentSpec> = {};
  if (given(b.name) && b.name !== current.name) throw invalid('name is immutable');
  if (given(b.is_spot)) out.is_spot = bool(b.is_spot, 'is_spot');
  if (given(b.compute)) out.compute = validateCompute(b.compute, ctx);
  if (given(b.container_registry_settings)) {
    out.container_registry_settings = validateRegistrySettings(b.container_registry_settings, ctx);
  }
  if (given(b.scaling)) out.scaling = validateScaling(b.scaling, current.scaling);
  if (given(b.containers)) {
    const containers = validateContainers(b.containers, ctx, 'update');
    const known = new Set(current.containers.map((c) => c.name));
    for (const c of containers) {
      if (!known.has(c.name))
        throw invalid(`container "${c.name}" does not belong to deployment ${current.name}`);
    }
    out.containers = containers;
  }
  return out;
}
