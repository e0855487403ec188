// Tolerant readers for Verda responses: every documented variant (verda-api.md) becomes one shape.
// - container image: an object {image, last_updated_at} (GO, the API) or a plain string (PY)
// - scaling: inside the deployment body (PY mocks) or absent (GO): then read /scaling
// - replicas: {list: [...]} or a bare array; replica status free-form
// - status: {status} or a bare string; unknown values kept as they are
// - prices: numbers or strings; rows without a price skipped
// - env-var lists: an array of {container_name, env} or one such object
// The answers are untrusted: what the client passes on as typed values (scaling, env vars,
// volume mounts, health check, entrypoint) is checked by a schema, and an answer that does not
// fit fails naming each problem. Keys the contract does not name are kept as the API sent them:
// the planner decides which of them count as differences.
import { z } from 'zod';
import { OpsError } from '../lib/errors.js';
import { schemaProblems } from '../lib/schema.js';
import type { ContainerSpec, LiveDeployment, Replica, ScalingOptions } from './verda-types.js';

type Json = Record<string, unknown>;

/** A JSON object (not null, not an array): the one guard every reader of an answer uses. */
export const isJsonObject = (v: unknown): v is Json =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const arrayOf = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/**
 * The endpoint every request with the inference key goes to, and that is published to the
 * queue-manager (a dotenv line, a variable): https only (http only to this machine, for the
 * sandbox), a host, a port and a path of letters, digits and . _ ~ -; no credentials, query,
 * quotes, spaces, `$` or `#` (docker compose interpolates `$` in a dotenv file).
 */
const ENDPOINT_RE =
  /^(https:\/\/[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|http:\/\/(127\.0\.0\.1|localhost))(:\d{1,5})?(\/[A-Za-z0-9._~-]+)*\/?$/;

/** The endpoint URL as the API gave it, checked before the inference key or a publish meets it. */
export function checkEndpointUrl(url: string): string {
  if (url.length <= 2048 && ENDPOINT_RE.test(url)) return url;
  throw new OpsError(
    `Verda returned the endpoint ${JSON.stringify(url.slice(0, 200))}: expected https://<host>[:port]/<path> of letters, digits and . _ ~ - (no query, credentials, spaces or quotes); neither the inference key nor a publish goes to it`,
  );
}

// ---- schemas of the typed parts (verda-api.md §2.1, §3) ----------------------------------

/** Not a list (absent, null, anything else): an empty one, as the API's omitted lists mean. */
const listOf = <T extends z.ZodType>(item: T) => z.preprocess((v) => arrayOf(v), z.array(item));

/** Not an object (absent, null, anything else): absent; an object must fit the schema. */
const objectOrAbsent = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => (isJsonObject(v) ? v : undefined), schema.optional());

const delay = z.looseObject({ delay_seconds: z.number() });
const utilization = z.looseObject({ enabled: z.boolean(), threshold: z.number().exactOptional() });

const scalingSchema = z.looseObject({
  min_replica_count: z.number(),
  max_replica_count: z.number(),
  scale_up_policy: delay,
  scale_down_policy: delay,
  queue_message_ttl_seconds: z.number(),
  concurrent_requests_per_replica: z.number(),
  scaling_triggers: z.looseObject({
    queue_load: z.looseObject({ threshold: z.number() }),
    cpu_utilization: utilization.exactOptional(),
    gpu_utilization: utilization.exactOptional(),
  }),
});

const envVarSchema = z.looseObject({
  name: z.string(),
  value_or_reference_to_secret: z.string(),
  type: z.enum(['plain', 'secret']),
});

const volumeMountSchema = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('scratch'), mount_path: z.string() }),
  z.looseObject({
    type: z.literal('secret'),
    mount_path: z.string(),
    secret_name: z.string(),
    file_names: z.array(z.string()).exactOptional(),
  }),
  z.looseObject({ type: z.literal('memory'), mount_path: z.string(), size_in_mb: z.number() }),
  z.looseObject({ type: z.literal('shared'), mount_path: z.string(), volume_id: z.string() }),
]);

/** A container as read: the typed parts checked, the rest read leniently below. */
const containerSchema = z.object({
  name: z.unknown().optional(),
  image: z.unknown().optional(),
  exposed_port: z.unknown().optional(),
  env: listOf(envVarSchema),
  volume_mounts: listOf(volumeMountSchema),
  healthcheck: objectOrAbsent(
    z.looseObject({
      enabled: z.boolean(),
      port: z.number().exactOptional(),
      path: z.string().exactOptional(),
    }),
  ),
  entrypoint_overrides: objectOrAbsent(
    z.looseObject({
      enabled: z.boolean(),
      entrypoint: z.array(z.string()).exactOptional(),
      cmd: z.array(z.string()).exactOptional(),
    }),
  ),
});

/** The parts of a deployment body that need a schema; entries that are not objects are skipped. */
const deploymentSchema = z.object({
  containers: z.preprocess((v) => arrayOf(v).filter(isJsonObject), z.array(containerSchema)),
  scaling: objectOrAbsent(scalingSchema),
});

/** A field the API sends as null has no value: read it as absent (the contract shows none). */
function withoutNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (!isJsonObject(v)) return v;
  return Object.fromEntries(
    Object.entries(v)
      .filter(([, x]) => x !== null)
      .map(([k, x]) => [k, withoutNulls(x)]),
  );
}

/** An answer checked by a schema, or an OpsError naming every problem (ten at most). */
function parseAnswer<S extends z.ZodType>(schema: S, raw: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(withoutNulls(raw));
  if (parsed.success) return parsed.data;
  const problems = schemaProblems(parsed.error);
  const listed = problems.slice(0, 10).join('; ') + (problems.length > 10 ? '; ...' : '');
  throw new OpsError(`Verda returned ${what} outside the API contract: ${listed}`);
}

// ---- readers --------------------------------------------------------------------------------

export function normalizeDeployment(raw: unknown): LiveDeployment {
  if (!isJsonObject(raw) || typeof raw.name !== 'string') {
    throw new OpsError(
      `Verda returned a deployment without a name: ${JSON.stringify(raw)?.slice(0, 200)}`,
    );
  }
  const parts = parseAnswer(deploymentSchema, raw, `deployment ${raw.name}`);
  const compute = isJsonObject(raw.compute) ? raw.compute : {};
  const registry = isJsonObject(raw.container_registry_settings)
    ? raw.container_registry_settings
    : {};
  const credentials =
    isJsonObject(registry.credentials) && typeof registry.credentials.name === 'string'
      ? { name: registry.credentials.name }
      : null;
  const live: LiveDeployment = {
    name: raw.name,
    is_spot: raw.is_spot === true,
    compute: { name: String(compute.name ?? ''), size: Number(compute.size ?? 1) },
    container_registry_settings: { is_private: registry.is_private === true, credentials },
    containers: parts.containers.map(normalizeContainer),
    endpoint_base_url:
      typeof raw.endpoint_base_url === 'string' && raw.endpoint_base_url !== ''
        ? checkEndpointUrl(raw.endpoint_base_url)
        : '',
  };
  if (typeof raw.created_at === 'string') live.created_at = raw.created_at;
  if (parts.scaling) live.scaling = parts.scaling;
  return live;
}

function normalizeContainer(c: z.output<typeof containerSchema>): ContainerSpec {
  const image = isJsonObject(c.image) ? c.image.image : c.image;
  const container: ContainerSpec = {
    image: typeof image === 'string' ? image : '',
    exposed_port: Number(c.exposed_port ?? 0),
    env: c.env,
    volume_mounts: c.volume_mounts,
  };
  if (typeof c.name === 'string') container.name = c.name;
  if (c.healthcheck) container.healthcheck = c.healthcheck;
  if (c.entrypoint_overrides) container.entrypoint_overrides = c.entrypoint_overrides;
  return container;
}

export function normalizeStatus(raw: unknown): string {
  if (typeof raw === 'string' && raw !== '') return raw;
  if (isJsonObject(raw) && typeof raw.status === 'string') return raw.status;
  return 'unknown';
}

export function normalizeReplicas(raw: unknown): Replica[] {
  const list = Array.isArray(raw)
    ? raw
    : isJsonObject(raw)
      ? arrayOf(raw.list ?? raw.replicas)
      : [];
  return list.filter(isJsonObject).map((r) => {
    const replica: Replica = { id: String(r.id ?? '?'), status: String(r.status ?? 'unknown') };
    if (typeof r.started_at === 'string') replica.started_at = r.started_at;
    return replica;
  });
}

export function normalizeScaling(raw: unknown): ScalingOptions {
  if (!isJsonObject(raw) || typeof raw.max_replica_count !== 'number') {
    throw new OpsError(
      `Verda returned scaling options without max_replica_count: ${JSON.stringify(raw)?.slice(0, 200)}`,
    );
  }
  return parseAnswer(scalingSchema, raw, 'scaling options');
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
    .filter(isJsonObject)
    .map((row) => {
      const gpus = isJsonObject(row.gpu) ? Number(row.gpu.number_of_gpus ?? 0) : 0;
      const cores = isJsonObject(row.cpu) ? Number(row.cpu.number_of_cores ?? 0) : 0;
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
