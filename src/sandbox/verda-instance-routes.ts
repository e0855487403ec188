// The instance API routes of the Verda emulator (verda-instances-api.md §2): instances and their
// actions, availability, the catalogue, volumes, SSH keys (both /sshkeys and /ssh-keys), startup
// scripts and the balance. Creates answer the new id as plain text; by-id GETs of keys and
// scripts answer a 1-element array.
import type { Reply } from './verda-http.js';
import { imageBody, instanceTypeBody, volumeTypeBody } from './verda-instance-catalog.js';
import {
  instanceStatuses,
  spotFlag,
  statusFilter,
  str,
  validateCreateInstance,
  validateInstanceAction,
  validateNewVolume,
  validateVolumeAction,
  volumeStatuses,
} from './verda-instance-validate.js';
import type { InstanceStore } from './verda-instances.js';
import { isJsonObject, requestObject } from './verda-validate.js';
import { invalid, notFound } from './verda-wire.js';

/** How a create's new id is written: plain text (PY, PYt), a quoted string or {id} (GO copes). */
export type IdFormat = 'text' | 'quoted' | 'object';

export interface InstanceVariants {
  /** Status of every create (instances, volumes, keys, scripts); default 202. */
  createStatus?: 200 | 201 | 202;
  idFormat?: IdFormat;
}

/** A request past authentication, split into path segments (as verda-routes.ts makes it). */
export interface InstanceCall {
  method: string;
  collection: string | undefined;
  name: string | undefined;
  sub: string | undefined;
  query: URLSearchParams;
  body: unknown;
  now: number;
}

const collections = new Set([
  'instances',
  'instance-availability',
  'instance-types',
  'images',
  'locations',
  'volume-types',
  'volumes',
  'sshkeys',
  'ssh-keys',
  'scripts',
  'balance',
]);

export function isInstanceCollection(segment: string | undefined): boolean {
  return segment !== undefined && collections.has(segment);
}

const ok = (body: unknown, status = 200): Reply => ({ status, body });

/** The reply, or undefined when no route matches (the caller answers 404). */
export function routeInstanceApi(
  store: InstanceStore,
  variants: InstanceVariants,
  call: InstanceCall,
): Reply | undefined {
  if (call.sub !== undefined) return undefined;
  store.refresh(call.now);
  const created = (id: string): Reply => {
    const status = variants.createStatus ?? 202;
    const format = variants.idFormat ?? 'text';
    if (format === 'object') return { status, body: { id } };
    return { status, body: format === 'quoted' ? JSON.stringify(id) : id, kind: 'text' };
  };
  switch (call.collection) {
    case 'instances':
      return instances(store, call, created);
    case 'instance-availability':
      return availability(store, call);
    case 'instance-types':
      return instanceTypes(store, call);
    case 'images':
      return images(store, call);
    case 'locations':
      return call.method === 'GET' && call.name === undefined
        ? ok(store.catalog.locations)
        : undefined;
    case 'volume-types':
      return call.method === 'GET' && call.name === undefined
        ? ok(store.catalog.volumeTypes.map(volumeTypeBody))
        : undefined;
    case 'volumes':
      return volumes(store, call, created);
    case 'sshkeys':
    case 'ssh-keys':
      return sshKeys(store, call, created);
    case 'scripts':
      return scripts(store, call, created);
    case 'balance':
      return call.method === 'GET' && call.name === undefined
        ? ok({ amount: store.balance, currency: 'usd' })
        : undefined;
    default:
      return undefined;
  }
}

type Created = (id: string) => Reply;

function instances(store: InstanceStore, call: InstanceCall, created: Created): Reply | undefined {
  const { method, name, now } = call;
  if (name !== undefined)
    return method === 'GET' ? ok(store.instanceBody(store.getInstance(name), now)) : undefined;
  if (method === 'GET')
    return ok(store.listInstances(now, statusFilter(call.query, instanceStatuses)));
  if (method === 'POST')
    return created(store.createInstance(validateCreateInstance(call.body), now));
  if (method !== 'PUT') return undefined;
  const outcomes = store.act(validateInstanceAction(call.body), now);
  const failed = outcomes.filter((o) => o.error);
  // All failed: the first error, with its own status and code (one id is the common case).
  const first = failed[0]?.error;
  if (first && failed.length === outcomes.length) throw first;
  // 207 when some failed (GO), 202 with the results otherwise.
  return ok(
    outcomes.map((o) => o.result),
    failed.length > 0 ? 207 : 202,
  );
}

function availability(store: InstanceStore, call: InstanceCall): Reply | undefined {
  if (call.method !== 'GET') return undefined;
  const isSpot = spotFlag(call.query);
  const location = call.query.get('location_code');
  if (location !== null) store.requireLocation(location, 'location_code');
  const available = (type: string, loc: string) => store.capacityLeft(type, loc, isSpot) >= 1;
  if (call.name !== undefined) {
    const type = store.findType(call.name);
    if (!type) throw notFound(`instance type ${call.name} does not exist`);
    const locations = location === null ? store.catalog.locations.map((l) => l.code) : [location];
    // A bare boolean (PYt).
    return ok(locations.some((loc) => available(type.instanceType, loc)));
  }
  const locations =
    location === null
      ? store.catalog.locations
      : store.catalog.locations.filter((l) => l.code === location);
  return ok(
    locations.map((l) => ({
      location_code: l.code,
      availabilities: store.catalog.types
        .filter((t) => available(t.instanceType, l.code))
        .map((t) => t.instanceType),
    })),
  );
}

function currencyOf(query: URLSearchParams): 'usd' | 'eur' {
  const currency = (query.get('currency') ?? 'usd').toLowerCase();
  if (currency !== 'usd' && currency !== 'eur') throw invalid('currency must be usd or eur');
  return currency;
}

function instanceTypes(store: InstanceStore, call: InstanceCall): Reply | undefined {
  if (call.method !== 'GET') return undefined;
  const currency = currencyOf(call.query);
  if (call.name === undefined)
    return ok(store.catalog.types.map((t) => instanceTypeBody(t, currency)));
  const type = store.findType(call.name);
  if (!type) throw notFound(`instance type ${call.name} does not exist`);
  return ok(instanceTypeBody(type, currency));
}

function images(store: InstanceStore, call: InstanceCall): Reply | undefined {
  if (call.method !== 'GET' || call.name !== undefined) return undefined;
  const typeName = call.query.get('instance_type');
  const all = store.catalog.images.map((image, i) => ({ image, body: imageBody(image, i) }));
  if (typeName === null) return ok(all.map((i) => i.body));
  const type = store.findType(typeName);
  if (!type) throw invalid(`instance_type "${typeName}" is not an instance type`);
  return ok(all.filter((i) => type.images.includes(i.image.image_type)).map((i) => i.body));
}

function volumes(store: InstanceStore, call: InstanceCall, created: Created): Reply | undefined {
  const { method, name, now } = call;
  if (name === 'trash') return method === 'GET' ? ok(store.trashList(now)) : undefined;
  if (name !== undefined) {
    if (method === 'GET') return ok(store.volumeBody(store.getVolume(name), now));
    if (method !== 'DELETE') return undefined;
    // PY sends {is_permanent} in the body, GO main ?force=true.
    const body = isJsonObject(call.body) ? call.body : {};
    const permanent = body.is_permanent === true || call.query.get('force') === 'true';
    store.deleteVolume(name, permanent, now);
    return { status: 202 };
  }
  if (method === 'GET') return ok(store.listVolumes(now, statusFilter(call.query, volumeStatuses)));
  if (method === 'POST')
    return created(store.createVolume(validateNewVolume(call.body, 'body', true), now));
  if (method !== 'PUT') return undefined;
  const spec = validateVolumeAction(call.body);
  store.volumeAction(spec.action, spec.ids, spec.body, now);
  return { status: 202 };
}

/** Bulk deletes name their ids in the body: {keys:[…]} or {scripts:[…]}. */
function bulkIds(body: unknown, field: string): string[] {
  const ids = requestObject(body)[field];
  if (!Array.isArray(ids) || ids.length === 0 || !ids.every((i) => typeof i === 'string'))
    throw invalid(`${field} must be a non-empty array of ids`);
  return ids as string[];
}

function sshKeys(store: InstanceStore, call: InstanceCall, created: Created): Reply | undefined {
  const { method, name, now } = call;
  if (name !== undefined) {
    if (method === 'GET') return ok([store.getKey(name)]);
    if (method === 'DELETE') {
      store.deleteKey(name);
      return { status: 200 };
    }
    return undefined;
  }
  if (method === 'GET') return ok(store.listKeys());
  if (method === 'POST') {
    const b = requestObject(call.body);
    return created(store.addKey(str(b.name, 'name'), str(b.key, 'key'), now));
  }
  if (method === 'DELETE') {
    const ids = bulkIds(call.body, 'keys');
    for (const id of ids) store.getKey(id);
    for (const id of ids) store.deleteKey(id);
    return { status: 200 };
  }
  return undefined;
}

const maxPageSize = 100;

function pageParam(query: URLSearchParams, name: string, fallback: number, max: number): number {
  const raw = query.get(name);
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > max)
    throw invalid(`${name} must be an integer from 1 to ${max}, got ${raw}`);
  return n;
}

function scripts(store: InstanceStore, call: InstanceCall, created: Created): Reply | undefined {
  const { method, name, now } = call;
  if (name !== undefined) {
    if (method === 'GET') return ok([store.getScript(name)]);
    if (method === 'DELETE') {
      store.deleteScript(name);
      return { status: 200 };
    }
    return undefined;
  }
  if (method === 'GET') {
    // Paginated since 2026-03-30 (DOC): the body stays an array, the headers tell the rest.
    const page = pageParam(call.query, 'page', 1, Number.MAX_SAFE_INTEGER);
    const pageSize = pageParam(call.query, 'pageSize', maxPageSize, maxPageSize);
    const all = store.listScripts();
    return {
      status: 200,
      body: all.slice((page - 1) * pageSize, page * pageSize),
      headers: {
        'X-Page': String(page),
        'X-Page-Size': String(pageSize),
        'X-Total-Count': String(all.length),
      },
    };
  }
  if (method === 'POST') {
    const b = requestObject(call.body);
    return created(store.addScript(str(b.name, 'name'), str(b.script, 'script'), now));
  }
  if (method === 'DELETE') {
    const ids = bulkIds(call.body, 'scripts');
    for (const id of ids) store.getScript(id);
    for (const id of ids) store.deleteScript(id);
    return { status: 200 };
  }
  return undefined;
}
