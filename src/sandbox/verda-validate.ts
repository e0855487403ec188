// Strict validation of what clients send to the Verda emulator, with the documented error body
// {code, message} (verda-api.md §2.1, §3, §5 and the gotchas). Returns normalised specs.
import {
  deploymentNamePattern,
  envNamePattern,
  type ContainerSpec,
  type DeploymentSpec,
  type EnvVar,
  type ScalingOptions,
  type VolumeMount,
} from '../serverless/verda-types.js';
import { findCompute, type ComputeModel } from './verda-catalog.js';
import { exampleScaling } from './verda-examples.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const invalid = (message: string): ApiError => new ApiError(400, 'invalid_request', message);

export { deploymentNamePattern, envNamePattern };
export type { ContainerSpec, DeploymentSpec, EnvVar, ScalingOptions, VolumeMount };

/** What the emulator knows exists, for references in a deployment. */
export interface ValidationContext {
  catalog: ComputeModel[];
  secrets: ReadonlySet<string>;
  fileSecrets: ReadonlySet<string>;
  registryCredentials: ReadonlySet<string>;
}

export const defaultScaling = (): ScalingOptions => exampleScaling(0, 1);

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function obj(v: unknown, field: string): Json {
  if (!isObject(v)) throw invalid(`${field} must be an object`);
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

function strings(v: unknown, field: string): string[] {
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) {
    throw invalid(`${field} must be an array of strings`);
  }
  return v as string[];
}

export function validateName(v: unknown): string {
  const name = str(v, 'name');
  if (name.length > 63 || !deploymentNamePattern.test(name)) {
    throw invalid(
      `name "${name}" must match ${deploymentNamePattern.source} and be at most 63 characters`,
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
  const triggers = obj(merged.scaling_triggers, 'scaling.scaling_triggers');
  const queueLoad = obj(triggers.queue_load, 'scaling.scaling_triggers.queue_load');
  const out: ScalingOptions = {
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
    scaling_triggers: {
      queue_load: {
        threshold: num(
          queueLoad.threshold,
          'scaling.scaling_triggers.queue_load.threshold',
          1,
          1000,
        ),
      },
    },
  };
  for (const key of ['cpu_utilization', 'gpu_utilization'] as const) {
    if (triggers[key] === undefined || triggers[key] === null) continue;
    const t = obj(triggers[key], `scaling.scaling_triggers.${key}`);
    const enabled = bool(t.enabled, `scaling.scaling_triggers.${key}.enabled`);
    out.scaling_triggers[key] =
      t.threshold === undefined
        ? { enabled }
        : {
            enabled,
            threshold: int(t.threshold, `scaling.scaling_triggers.${key}.threshold`, 1, 100),
          };
  }
  return out;
}

function validateEnv(v: unknown, field: string, ctx: ValidationContext): EnvVar[] {
  if (v === undefined || v === null) return [];
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

export function validateContainer(
  v: unknown,
  field: string,
  ctx: ValidationContext,
  requireName: boolean,
): ContainerSpec {
  const c = obj(v, field);
  const container: ContainerSpec = {
    image: validateImage(c.image, `${field}.image`),
    exposed_port: int(c.exposed_port, `${field}.exposed_port`, 1, 65535),
    env: validateEnv(c.env, `${field}.env`, ctx),
    volume_mounts: [],
  };
  if (requireName) container.name = str(c.name, `${field}.name (required on update)`);
  if (c.healthcheck !== undefined && c.healthcheck !== null) {
    const h = obj(c.healthcheck, `${field}.healthcheck`);
    container.healthcheck = { enabled: bool(h.enabled, `${field}.healthcheck.enabled`) };
    if (h.port !== undefined)
      container.healthcheck.port = int(h.port, `${field}.healthcheck.port`, 1, 65535);
    if (h.path !== undefined) {
      const path = str(h.path, `${field}.healthcheck.path`);
      if (!path.startsWith('/')) throw invalid(`${field}.healthcheck.path must start with /`);
      container.healthcheck.path = path;
    }
  }
  if (c.entrypoint_overrides !== undefined && c.entrypoint_overrides !== null) {
    const e = obj(c.entrypoint_overrides, `${field}.entrypoint_overrides`);
    container.entrypoint_overrides = {
      enabled: bool(e.enabled, `${field}.entrypoint_overrides.enabled`),
    };
    if (e.entrypoint !== undefined)
      container.entrypoint_overrides.entrypoint = strings(
        e.entrypoint,
        `${field}.entrypoint_overrides.entrypoint`,
      );
    if (e.cmd !== undefined)
      container.entrypoint_overrides.cmd = strings(e.cmd, `${field}.entrypoint_overrides.cmd`);
  }
  if (c.volume_mounts !== undefined && c.volume_mounts !== null) {
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

export function validateCompute(
  v: unknown,
  ctx: ValidationContext,
): { name: string; size: number } {
  const c = obj(v, 'compute');
  const name = str(c.name, 'compute.name');
  const size = int(c.size, 'compute.size', 1);
  if (!findCompute(ctx.catalog, name, size)) {
    throw invalid(`compute "${name}" with size ${size} is not a serverless compute resource`);
  }
  return { name, size };
}

export function validateRegistrySettings(
  v: unknown,
  ctx: ValidationContext,
): DeploymentSpec['container_registry_settings'] {
  const r = obj(v, 'container_registry_settings');
  const isPrivate = bool(r.is_private, 'container_registry_settings.is_private');
  let credentials: { name: string } | null = null;
  if (r.credentials !== undefined && r.credentials !== null) {
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
  requireName: boolean,
): ContainerSpec[] {
  if (!Array.isArray(v) || v.length === 0) throw invalid('containers must be a non-empty array');
  return v.map((c, i) => validateContainer(c, `containers[${i}]`, ctx, requireName));
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
    scaling:
      b.scaling === undefined || b.scaling === null ? defaultScaling() : validateScaling(b.scaling),
    containers: validateContainers(b.containers, ctx, false),
  };
}

/** A PATCH body: only the fields given, each validated whole; containers need their names. */
export function validatePatch(
  body: unknown,
  current: DeploymentSpec,
  ctx: ValidationContext,
): Partial<DeploymentSpec> {
  const b = obj(body, 'body');
  const out: Partial<DeploymentSpec> = {};
  if (b.name !== undefined && b.name !== null && b.name !== current.name) {
    throw invalid('name is immutable');
  }
  if (b.is_spot !== undefined && b.is_spot !== null) out.is_spot = bool(b.is_spot, 'is_spot');
  if (b.compute !== undefined && b.compute !== null) out.compute = validateCompute(b.compute, ctx);
  if (b.container_registry_settings !== undefined && b.container_registry_settings !== null) {
    out.container_registry_settings = validateRegistrySettings(b.container_registry_settings, ctx);
  }
  if (b.scaling !== undefined && b.scaling !== null)
    out.scaling = validateScaling(b.scaling, current.scaling);
  if (b.containers !== undefined && b.containers !== null) {
    const containers = validateContainers(b.containers, ctx, true);
    const known = new Set(current.containers.map((c) => c.name));
    for (const c of containers) {
      if (!known.has(c.name))
        throw invalid(`container "${c.name}" does not belong to deployment ${current.name}`);
    }
    out.containers = containers;
  }
  return out;
}
