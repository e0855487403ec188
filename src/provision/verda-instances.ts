// The Verda instance API (../shared/verda-instances-api.md): instance types and prices,
// availability, locations, images, volume types, SSH keys, startup scripts, volumes, instances
// and their actions. It rides on the serverless VerdaClient: one OAuth, one retry loop with a total
// deadline per call, one create-exactly-once. Every answer is untrusted: it is read by a schema
// that tolerates each variant the contract lists (ids as plain text or objects, by-id GETs
// answering 1-element arrays, prices as strings, `isSpot` vs `is_spot`, unknown statuses) and
// refuses what would be unsafe to use (an id or address that is not one).
import { z } from 'zod';
import { OpsError } from '../lib/errors.js';
import { schemaProblems } from '../lib/schema.js';
import { VerdaApiError, type ApiResponse, type VerdaClient } from '../serverless/client.js';

// ---- the shapes as this code uses them -----------------------------------------------------

export interface InstanceType {
  name: string;
  description: string;
  pricePerHour: number;
  spotPricePerHour: number | undefined;
  currency: string;
}

export interface VolumeType {
  type: string;
  pricePerMonthPerGb: number;
  sharedFs: boolean;
}

export interface Instance {
  id: string;
  hostname: string;
  /** As the API says it; unknown values are kept (the contract lists 13 and more). */
  status: string;
  instanceType: string;
  location: string;
  image: string;
  /** null until provisioned. */
  ip: string | undefined;
  pricePerHour: number | undefined;
  isSpot: boolean;
  osVolumeId: string | undefined;
  volumeIds: string[];
  sshKeyIds: string[];
  startupScriptId: string | undefined;
  /** Epoch ms, when the API said. */
  createdAt: number | undefined;
}

export interface Volume {
  id: string;
  name: string;
  sizeGb: number;
  type: string;
  status: string;
  location: string;
  isOsVolume: boolean;
  /** Every instance it is attached to (a shared filesystem may have several). */
  instanceIds: string[];
  hourlyCost: number | undefined;
  /** A shared filesystem's NFS export (server:/path), from its mount_command or pseudo_path. */
  nfsSource: string | undefined;
}

export interface SshKey {
  id: string;
  name: string;
}

export interface StartupScript {
  id: string;
  name: string;
}

export interface CreateInstanceRequest {
  instance_type: string;
  image: string;
  hostname: string;
  description: string;
  location_code: string;
  ssh_key_ids: string[];
  startup_script_id?: string;
  is_spot: boolean;
  contract: 'PAY_AS_YOU_GO' | 'SPOT';
  os_volume?: { name: string; size: number };
  existing_volumes?: string[];
}

export interface CreateVolumeRequest {
  type: string;
  name: string;
  size: number;
  location_code: string;
}

export type InstanceAction = 'shutdown' | 'start' | 'delete' | 'hibernate' | 'force_shutdown';

/** The statuses after which an instance will not become `running` by waiting. */
export const TERMINAL_STATUSES = [
  'error',
  'discontinued',
  'notfound',
  'no_capacity',
  'installation_failed',
  'deleting',
] as const;

// ---- tolerant readers ----------------------------------------------------------------------

/** Ids are used in paths and request bodies: word characters and dashes only. */
const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/, 'an id (letters, digits, - and _)');
const ipv4 = z
  .string()
  .regex(/^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$/, 'an IPv4 address');
/** A price: a number, or a string of one ("5.00"); anything else is no price. */
const price = z.preprocess(
  (v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v),
  z.number().nonnegative().finite().optional().catch(undefined),
);
const text = z.string().max(500).catch('');
const status = z
  .string()
  .regex(/^[a-z_]{1,40}$/, 'a status word')
  .catch('unknown');
const idList = z.preprocess((v) => (Array.isArray(v) ? v : []), z.array(id));
const isoTime = z.preprocess(
  (v) => (typeof v === 'string' ? Date.parse(v) : undefined),
  z.number().finite().optional().catch(undefined),
);

const instanceSchema = z
  .looseObject({
    id,
    hostname: z.string().max(100),
    status,
    instance_type: z.string().max(100),
    location: z.string().max(40).catch(''),
    image: text,
    ip: z.preprocess((v) => (v === '' ? null : v), ipv4.nullish()),
    price_per_hour: price,
    is_spot: z.boolean().optional().catch(undefined),
    isSpot: z.boolean().optional().catch(undefined),
    os_volume_id: id.nullish(),
    volume_ids: idList,
    ssh_key_ids: idList,
    startup_script_id: id.nullish(),
    created_at: isoTime,
  })
  .transform((i): Instance => ({
    id: i.id,
    hostname: i.hostname,
    status: i.status,
    instanceType: i.instance_type,
    location: i.location,
    image: i.image,
    ip: i.ip ?? undefined,
    pricePerHour: i.price_per_hour,
    isSpot: i.is_spot ?? i.isSpot ?? false,
    osVolumeId: i.os_volume_id ?? undefined,
    volumeIds: i.volume_ids,
    sshKeyIds: i.ssh_key_ids,
    startupScriptId: i.startup_script_id ?? undefined,
    createdAt: i.created_at,
  }));

const attachedInstance = z.looseObject({ id });

const volumeSchema = z
  .looseObject({
    id,
    name: z.string().max(200),
    size: z.number().int().nonnegative(),
    type: z.string().max(60),
    status,
    location: z.string().max(40).catch(''),
    is_os_volume: z.boolean().catch(false),
    instance_id: id.nullish(),
    instances: z.preprocess((v) => (Array.isArray(v) ? v : []), z.array(attachedInstance)),
    base_hourly_cost: price,
    mount_command: z.string().max(1000).optional().catch(undefined),
    pseudo_path: z.string().max(300).optional().catch(undefined),
  })
  .transform((v): Volume => ({
    id: v.id,
    name: v.name,
    sizeGb: v.size,
    type: v.type,
    status: v.status,
    location: v.location,
    isOsVolume: v.is_os_volume,
    instanceIds: [
      ...new Set([...(v.instance_id ? [v.instance_id] : []), ...v.instances.map((i) => i.id)]),
    ],
    hourlyCost: v.base_hourly_cost,
    nfsSource: nfsSource(v.mount_command, v.pseudo_path, v.location),
  }));

const NFS_SOURCE_RE = /^[a-z0-9][a-z0-9.-]{0,200}:\/[\w/.-]{0,200}$/;

/**
 * The export a shared filesystem is mounted from: the `server:/path` word of the API's
 * mount_command, else the documented server of the location with its pseudo_path. Anything
 * that is not plainly a host and a path is ignored (it goes to fstab on the host).
 */
function nfsSource(
  mountCommand: string | undefined,
  pseudoPath: string | undefined,
  location: string,
): string | undefined {
  const word = mountCommand?.split(/\s+/).find((w) => NFS_SOURCE_RE.test(w));
  if (word) return word;
  const derived = `nfs.${location.toLowerCase()}.datacrunch.io:${pseudoPath ?? ''}`;
  return pseudoPath && NFS_SOURCE_RE.test(derived) ? derived : undefined;
}

const instanceTypeSchema = z
  .looseObject({
    instance_type: z.string().max(100),
    description: text,
    price_per_hour: price,
    spot_price: price,
    spot_price_per_hour: price,
    currency: z.string().max(8).catch('usd'),
  })
  .transform((t) => ({
    name: t.instance_type,
    description: t.description,
    pricePerHour: t.price_per_hour,
    spotPricePerHour: t.spot_price ?? t.spot_price_per_hour,
    currency: t.currency.toLowerCase(),
  }));

const volumeTypeSchema = z
  .looseObject({
    type: z.string().max(60),
    price: z
      .looseObject({ price_per_month_per_gb: price, monthly_per_gb: price })
      .optional()
      .catch(undefined),
    is_shared_fs: z.boolean().catch(false),
  })
  .transform((t) => ({
    type: t.type,
    pricePerMonthPerGb: t.price?.price_per_month_per_gb ?? t.price?.monthly_per_gb,
    sharedFs: t.is_shared_fs,
  }));

const namedSchema = z.looseObject({ id, name: z.string().max(200) });
const locationSchema = z.looseObject({ code: z.string().regex(/^[A-Z0-9-]{1,20}$/) });
const imageSchema = z.looseObject({ image_type: z.string().max(200), is_default: z.unknown() });

/** An answer that does not fit is an OpsError naming the request and each problem. */
function read<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = schemaProblems(result.error).slice(0, 5).join('; ');
  throw new OpsError(`Verda API ${what} answered something unexpected: ${problems}`);
}

/** By-id GETs answer a 1-element array (keys, scripts; sometimes instances): the element. */
const single = (v: unknown): unknown => (Array.isArray(v) && v.length === 1 ? v[0] : v);
const listBody = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/**
 * The new id of a create: plain text (PY, the API), a quoted string, or an object with `id`
 * (GOmock). Trimmed, unquoted, then checked to be an id.
 */
export function createdId(body: unknown, what: string): string {
  const raw =
    typeof body === 'object' && body !== null && 'id' in body
      ? (body as { id: unknown }).id
      : typeof body === 'string'
        ? body.trim().replace(/^"+|"+$/g, '')
        : body;
  return read(id, raw, what);
}

/** A list read item by item: items that fail are an error (never silently dropped). */
const readList = <S extends z.ZodType>(schema: S, body: unknown, what: string): z.output<S>[] =>
  listBody(body).map((item, i) => read(schema, item, `${what} [${i}]`));

const isGone = (err: unknown): boolean =>
  err instanceof VerdaApiError &&
  (err.status === 404 ||
    (err.status === 400 && /invalid .*id|not.?found/i.test(`${err.code} ${err.detail}`)));

// ---- the API -------------------------------------------------------------------------------

export class VerdaInstances {
  /** Which path the account's SSH keys answered on: /sshkeys (PY) or /ssh-keys (GO). */
  private sshKeyPath: '/sshkeys' | '/ssh-keys' = '/sshkeys';

  constructor(private readonly client: VerdaClient) {}

  async instanceTypes(currency: 'usd' | 'eur' = 'usd'): Promise<InstanceType[]> {
    const res = await this.client.request('GET', `/instance-types?currency=${currency}`);
    return readList(instanceTypeSchema, res.body, 'GET /instance-types').flatMap((t) =>
      t.pricePerHour === undefined ? [] : [{ ...t, pricePerHour: t.pricePerHour }],
    );
  }

  async volumeTypes(): Promise<VolumeType[]> {
    const res = await this.client.request('GET', '/volume-types');
    return readList(volumeTypeSchema, res.body, 'GET /volume-types').flatMap((t) =>
      t.pricePerMonthPerGb === undefined
        ? []
        : [{ ...t, pricePerMonthPerGb: t.pricePerMonthPerGb }],
    );
  }

  async locations(): Promise<string[]> {
    const res = await this.client.request('GET', '/locations');
    return readList(locationSchema, res.body, 'GET /locations').map((l) => l.code);
  }

  async images(instanceType: string): Promise<string[]> {
    const res = await this.client.request(
      'GET',
      `/images?instance_type=${encodeURIComponent(instanceType)}`,
    );
    return readList(imageSchema, res.body, 'GET /images').map((i) => i.image_type);
  }

  /** Whether the type can be had now in the location (both spellings of the spot flag sent). */
  async available(instanceType: string, location: string, spot: boolean): Promise<boolean> {
    const query = `is_spot=${spot}&isSpot=${spot}&location_code=${encodeURIComponent(location)}`;
    const res = await this.client.request(
      'GET',
      `/instance-availability/${encodeURIComponent(instanceType)}?${query}`,
    );
    const answer = res.body;
    if (answer === true || answer === 'true') return true;
    if (answer === false || answer === 'false') return false;
    throw new OpsError(
      `Verda API GET /instance-availability/${instanceType} answered neither true nor false`,
    );
  }

  async sshKeys(): Promise<SshKey[]> {
    let res: ApiResponse;
    try {
      res = await this.client.request('GET', this.sshKeyPath);
    } catch (err) {
      if (!(err instanceof VerdaApiError && err.status === 404) || this.sshKeyPath === '/ssh-keys')
        throw err;
      this.sshKeyPath = '/ssh-keys';
      res = await this.client.request('GET', this.sshKeyPath);
    }
    return readList(namedSchema, res.body, `GET ${this.sshKeyPath}`);
  }

  async scripts(): Promise<StartupScript[]> {
    const res = await this.client.request('GET', '/scripts?page=1&pageSize=100');
    return readList(namedSchema, res.body, 'GET /scripts');
  }

  /** A startup script, created once (looked up by its name after a failed attempt). */
  async createScript(name: string, script: string): Promise<StartupScript> {
    return this.client.createOnce({
      what: `startup script ${name}`,
      exchange: { method: 'POST', path: '/scripts', body: { name, script } },
      lookup: async (until) => {
        const res = await this.client.getWithin('/scripts?page=1&pageSize=100', until);
        return readList(namedSchema, res.body, 'GET /scripts').find((s) => s.name === name);
      },
      parse: async (res) => ({ id: createdId(res.body, 'POST /scripts'), name }),
    });
  }

  /** Deletes a startup script; one already gone counts as deleted. */
  async deleteScript(scriptId: string): Promise<void> {
    try {
      await this.client.request('DELETE', `/scripts/${encodeURIComponent(scriptId)}`);
    } catch (err) {
      if (!isGone(err)) throw err;
    }
  }

  async volumes(): Promise<Volume[]> {
    const res = await this.client.request('GET', '/volumes');
    return readList(volumeSchema, res.body, 'GET /volumes').filter((v) => v.status !== 'deleted');
  }

  async volume(volumeId: string): Promise<Volume> {
    const res = await this.client.request('GET', `/volumes/${encodeURIComponent(volumeId)}`);
    return read(volumeSchema, single(res.body), 'GET /volumes/{id}');
  }

  /** A volume, created once: after a failed attempt, looked up by name and location first. */
  async createVolume(request: CreateVolumeRequest): Promise<Volume> {
    const find = (body: unknown) =>
      readList(volumeSchema, body, 'GET /volumes').find(
        (v) =>
          v.name === request.name && v.location === request.location_code && v.status !== 'deleted',
      );
    return this.client.createOnce({
      what: `volume "${request.name}"`,
      exchange: { method: 'POST', path: '/volumes', body: request },
      lookup: async (until) => find((await this.client.getWithin('/volumes', until)).body),
      parse: async (res, until) => {
        const volumeId = createdId(res.body, 'POST /volumes');
        const got = await this.client.getWithin(`/volumes/${encodeURIComponent(volumeId)}`, until);
        return read(volumeSchema, single(got.body), 'GET /volumes/{id}');
      },
    });
  }

  async attachVolume(volumeId: string, instanceId: string): Promise<void> {
    await this.client.request('PUT', '/volumes', {
      id: volumeId,
      action: 'attach',
      instance_id: instanceId,
    });
  }

  async detachVolume(volumeId: string, instanceId: string): Promise<void> {
    await this.client.request('PUT', '/volumes', {
      id: volumeId,
      action: 'detach',
      instance_id: instanceId,
    });
  }

  /** Non-deleted instances. */
  async instances(): Promise<Instance[]> {
    const res = await this.client.request('GET', '/instances');
    return readList(instanceSchema, res.body, 'GET /instances');
  }

  /** The instance, or undefined when the API no longer knows it. */
  async instance(instanceId: string): Promise<Instance | undefined> {
    try {
      const res = await this.client.request('GET', `/instances/${encodeURIComponent(instanceId)}`);
      return read(instanceSchema, single(res.body), 'GET /instances/{id}');
    } catch (err) {
      if (isGone(err)) return undefined;
      throw err;
    }
  }

  /**
   * Creates an instance exactly once. The API has no idempotency key: after a timeout or a 5xx
   * the next attempt lists instances and takes the one with this hostname before posting again.
   */
  async createInstance(request: CreateInstanceRequest): Promise<Instance> {
    const find = (body: unknown) =>
      readList(instanceSchema, body, 'GET /instances').find(
        (i) => i.hostname === request.hostname && i.location === request.location_code,
      );
    return this.client.createOnce({
      what: `instance ${request.hostname}`,
      exchange: { method: 'POST', path: '/instances', body: request },
      lookup: async (until) => find((await this.client.getWithin('/instances', until)).body),
      parse: async (res, until) => {
        const instanceId = createdId(res.body, 'POST /instances');
        const got = await this.client.getWithin(
          `/instances/${encodeURIComponent(instanceId)}`,
          until,
        );
        return read(instanceSchema, single(got.body), 'GET /instances/{id}');
      },
    });
  }

  /**
   * An action on one instance. `volumeIds` is sent on delete ALWAYS (gotcha 5: without it the
   * OS volume is deleted): exactly the volumes to delete, [] for none. A delete of an instance
   * that is already gone (discontinued, unknown id) counts as done.
   */
  async action(
    action: InstanceAction,
    instanceId: string,
    volumeIds: string[] = [],
  ): Promise<void> {
    const body: Record<string, unknown> = { action, id: [instanceId] };
    if (action === 'delete') body.volume_ids = volumeIds;
    let res: ApiResponse;
    try {
      res = await this.client.request('PUT', '/instances', body);
    } catch (err) {
      const gone =
        err instanceof VerdaApiError &&
        (err.code === 'forbidden_action' || isGone(err)) &&
        action === 'delete';
      if (gone) return;
      throw err;
    }
    // 202 ActionResult[], 207 when some failed, 204 when already so: a failed result is an error.
    for (const result of listBody(res.body)) {
      if (typeof result !== 'object' || result === null) continue;
      const r = result as Record<string, unknown>;
      if (r.status === 'error') {
        const why = typeof r.error === 'string' ? r.error.slice(0, 200) : 'no reason given';
        throw new OpsError(`Verda refused ${action} of instance ${instanceId}: ${why}`);
      }
    }
  }
}

/** A volume's hourly price from its monthly price per GB (the CLI's rule: 730 h, 4 decimals up). */
export function volumeHourlyCost(pricePerMonthPerGb: number, sizeGb: number): number {
  return Math.ceil(((pricePerMonthPerGb * sizeGb) / 730) * 10_000) / 10_000;
}
