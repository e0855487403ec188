// Tolerant readers for Verda responses: every documented variant (verda-api.md) becomes one shape.
// - container image: an object {image, last_updated_at} (GO, the API) or a plain string (PY)
// - scaling: inside the deployment body (PY mocks) or absent (GO): then read /scaling
// - replicas: {list: [...]} or a bare array; replica status free-form
// - status: {status} or a bare string; unknown values kept as they are
// - prices: numbers or strings; rows without a price skipped
// - env-var lists: an array of {container_name, env} or one such object
import { OpsError } from '../lib/errors.js';
import type {
  ContainerSpec,
  EnvVar,
  LiveDeployment,
  Replica,
  ScalingOptions,
  VolumeMount,
} from './verda-types.js';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const arrayOf = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export function normalizeDeployment(raw: unknown): LiveDeployment {
  if (!isObject(raw) || typeof raw.name !== 'string') {
    throw new OpsError(
      `Verda returned a deployment without a name: ${JSON.stringify(raw)?.slice(0, 200)}`,
    );
  }
  const compute = isObject(raw.compute) ? raw.compute : {};
  const registry = isObject(raw.container_registry_settings) ? raw.container_registry_settings : {};
  const credentials =
    isObject(registry.credentials) && typeof registry.credentials.name === 'string'
      ? { name: registry.credentials.name }
      : null;
  const live: LiveDeployment = {
    name: raw.name,
    is_spot: raw.is_spot === true,
    compute: { name: String(compute.name ?? ''), size: Number(compute.size ?? 1) },
    container_registry_settings: { is_private: registry.is_private === true, credentials },
    containers: arrayOf(raw.containers).filter(isObject).map(normalizeContainer),
    endpoint_base_url: typeof raw.endpoint_base_url === 'string' ? raw.endpoint_base_url : '',
  };
  if (typeof raw.created_at === 'string') live.created_at = raw.created_at;
  if (isObject(raw.scaling)) live.scaling = raw.scaling as unknown as ScalingOptions;
  return live;
}

function normalizeContainer(c: Json): ContainerSpec {
  const image = isObject(c.image) ? c.image.image : c.image;
  const container: ContainerSpec = {
    image: typeof image === 'string' ? image : '',
    exposed_port: Number(c.exposed_port ?? 0),
    env: arrayOf(c.env) as EnvVar[],
    volume_mounts: arrayOf(c.volume_mounts) as VolumeMount[],
  };
  if (typeof c.name === 'string') container.name = c.name;
  if (isObject(c.healthcheck))
    container.healthcheck = c.healthcheck as ContainerSpec['healthcheck'] & object;
  if (isObject(c.entrypoint_overrides)) {
    container.entrypoint_overrides =
      c.entrypoint_overrides as ContainerSpec['entrypoint_overrides'] & object;
  }
  return container;
}

export function normalizeStatus(raw: unknown): string {
  if (typeof raw === 'string' && raw !== '') return raw;
  if (isObject(raw) && typeof raw.status === 'string') return raw.status;
  return 'unknown';
}

export function normalizeReplicas(raw: unknown): Replica[] {
  const list = Array.isArray(raw) ? raw : isObject(raw) ? arrayOf(raw.list ?? raw.replicas) : [];
  return list.filter(isObject).map((r) => {
    const replica: Replica = { id: String(r.id ?? '?'), status: String(r.status ?? 'unknown') };
    if (typeof r.started_at === 'string') replica.started_at = r.started_at;
    return replica;
  });
}

export function normalizeScaling(raw: unknown): ScalingOptions {
  if (!isObject(raw) || typeof raw.max_replica_count !== 'number') {
    throw new OpsError(
      `Verda returned scaling options without max_replica_count: ${JSON.stringify(raw)?.slice(0, 200)}`,
    );
  }
  return raw as unknown as ScalingOptions;
}

/** A price as a number: numbers and numeric strings; anything else is no price. */
export function parsePrice(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

export interface PriceRow {
  /** compute.name (the row's `model`). */
  model: string;
  /** GPUs, or CPU cores for CPU nodes: joins compute.size. */
  size: number;
  onDemand: number | undefined;
  spot: number | undefined;
  currency: string;
}

export function normalizeContainerTypes(raw: unknown): PriceRow[] {
  return arrayOf(raw)
    .filter(isObject)
    .map((row) => {
      const gpus = isObject(row.gpu) ? Number(row.gpu.number_of_gpus ?? 0) : 0;
      const cores = isObject(row.cpu) ? Number(row.cpu.number_of_cores ?? 0) : 0;
      return {
        model: String(row.model ?? ''),
        size: gpus > 0 ? gpus : cores,
        onDemand: parsePrice(row.serverless_price),
        spot: parsePrice(row.serverless_spot_price),
        currency: String(row.currency ?? 'usd'),
      };
    })
    .filter((row) => row.model !== '');
}
