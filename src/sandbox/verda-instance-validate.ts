// The shapes of what clients send to the Verda emulator's instance API, checked strictly from
// verda-instances-api.md ("What an emulator must enforce"): 400 invalid_request naming the field.
// References (a type, a location, a key, a volume) are checked by the store, which knows them.
import { requestObject } from './verda-validate.js';
import { invalid } from './verda-wire.js';

type Json = Record<string, unknown>;

/** Hostname (the CLI's web-console rule, §3): letters, digits and '-', no '-' at either end. */
export const hostnamePattern = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$/;
/** The real maximum is unknown; dstack caps at 60 (§3). */
export const hostnameMaxLength = 60;

export const instanceStatuses = [
  'new',
  'ordered',
  'provisioning',
  'validating',
  'running',
  'offline',
  'discontinued',
  'unknown',
  'notfound',
  'error',
  'deleting',
  'no_capacity',
  'installation_failed',
  'pending',
] as const;

export const volumeStatuses = [
  'ordered',
  'creating',
  'attached',
  'detached',
  'deleting',
  'deleted',
  'cloning',
] as const;

const contracts = ['LONG_TERM', 'PAY_AS_YOU_GO', 'SPOT'] as const;
const pricings = ['DYNAMIC_PRICE', 'FIXED_PRICE'] as const;
const onSpotDiscontinue = ['keep_detached', 'move_to_trash', 'delete_permanently'] as const;
const maxTags = 10;

export interface Tag {
  key: string;
  value: string;
}

export interface NewVolumeSpec {
  type: string;
  name: string;
  size: number;
  locationCode: string | undefined;
  instanceIds: string[];
  onSpotDiscontinue: string | undefined;
  tags: Tag[];
}

export interface CreateInstanceSpec {
  instanceType: string;
  image: string;
  hostname: string;
  description: string;
  locationCode: string;
  sshKeyIds: string[];
  startupScriptId: string | undefined;
  osVolume: { name: string; size: number } | undefined;
  volumes: NewVolumeSpec[];
  existingVolumes: string[];
  isSpot: boolean;
  contract: string | undefined;
  pricing: string | undefined;
  tags: Tag[];
}

export interface InstanceActionSpec {
  action: string;
  ids: string[];
  /** undefined: omitted or null (the OS volume is deleted on delete, gotcha 5). */
  volumeIds: string[] | undefined;
  deletePermanently: boolean;
}

export interface VolumeActionSpec {
  action: string;
  ids: string[];
  body: Json;
}

const given = (v: unknown): boolean => v !== undefined && v !== null;

export function str(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.trim() === '') throw invalid(`${field} is required (a string)`);
  return v;
}

function optStr(v: unknown, field: string): string | undefined {
  return given(v) ? str(v, field) : undefined;
}

export function strArray(v: unknown, field: string): string[] {
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' && s !== ''))
    throw invalid(`${field} must be an array of ids (strings)`);
  return v as string[];
}

export function sizeGb(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw invalid(`${field} must be an integer >= 1 (GB), got ${JSON.stringify(v)}`);
  return v;
}

function oneOf(v: unknown, field: string, allowed: readonly string[]): string | undefined {
  if (!given(v)) return undefined;
  if (typeof v !== 'string' || !allowed.includes(v))
    throw invalid(`${field} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  return v;
}

function bool(v: unknown, field: string): boolean {
  if (!given(v)) return false;
  if (typeof v !== 'boolean') throw invalid(`${field} must be a boolean`);
  return v;
}

export function tags(v: unknown, field = 'tags'): Tag[] {
  if (!given(v)) return [];
  if (!Array.isArray(v)) throw invalid(`${field} must be an array of {key, value}`);
  if (v.length > maxTags) throw invalid(`${field}: at most ${maxTags} tags, got ${v.length}`);
  const seen = new Set<string>();
  return v.map((t: unknown, i) => {
    const tag = requestObjectAt(t, `${field}[${i}]`);
    const key = str(tag.key, `${field}[${i}].key`);
    if (seen.has(key)) throw invalid(`${field}: duplicate key ${key}`);
    seen.add(key);
    const value = given(tag.value) ? str(tag.value, `${field}[${i}].value`) : '';
    return { key, value };
  });
}

function requestObjectAt(v: unknown, field: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw invalid(`${field} must be an object`);
  return v as Json;
}

export function validateHostname(v: unknown): string {
  const hostname = str(v, 'hostname');
  if (
    hostname.length > hostnameMaxLength ||
    !hostnamePattern.test(hostname) ||
    !/[A-Za-z]/.test(hostname)
  )
    throw invalid(
      `hostname "${hostname}" must be letters, digits and '-', not start or end with '-', ` +
        `contain a letter and be at most ${hostnameMaxLength} characters`,
    );
  return hostname;
}

export function validateNewVolume(v: unknown, field: string, needsLocation: boolean) {
  const b = requestObjectAt(v, field);
  const spec: NewVolumeSpec = {
    type: str(b.type, `${field}.type`),
    name: str(b.name, `${field}.name`),
    size: sizeGb(b.size, `${field}.size`),
    locationCode: needsLocation
      ? str(b.location_code, `${field}.location_code`)
      : optStr(b.location_code, `${field}.location_code`),
    instanceIds: [],
    onSpotDiscontinue: oneOf(
      b.on_spot_discontinue,
      `${field}.on_spot_discontinue`,
      onSpotDiscontinue,
    ),
    tags: tags(b.tags, `${field}.tags`),
  };
  if (given(b.instance_id)) spec.instanceIds.push(str(b.instance_id, `${field}.instance_id`));
  if (given(b.instance_ids))
    spec.instanceIds.push(...strArray(b.instance_ids, `${field}.instance_ids`));
  return spec;
}

export function validateCreateInstance(body: unknown): CreateInstanceSpec {
  const b = requestObject(body);
  // location_code first: its absence is the API's own 400 since 2026-03-23 (DOC).
  const locationCode = str(b.location_code, 'location_code');
  const spec: CreateInstanceSpec = {
    instanceType: str(b.instance_type, 'instance_type'),
    image: str(b.image, 'image'),
    hostname: validateHostname(b.hostname),
    description: str(b.description, 'description'),
    locationCode,
    sshKeyIds: given(b.ssh_key_ids) ? strArray(b.ssh_key_ids, 'ssh_key_ids') : [],
    startupScriptId: optStr(b.startup_script_id, 'startup_script_id'),
    osVolume: undefined,
    volumes: [],
    existingVolumes: given(b.existing_volumes)
      ? strArray(b.existing_volumes, 'existing_volumes')
      : [],
    isSpot: bool(b.is_spot, 'is_spot'),
    contract: oneOf(b.contract, 'contract', contracts),
    pricing: oneOf(b.pricing, 'pricing', pricings),
    tags: tags(b.tags),
  };
  if (given(b.os_volume)) {
    const os = requestObjectAt(b.os_volume, 'os_volume');
    spec.osVolume = {
      name: str(os.name, 'os_volume.name'),
      size: sizeGb(os.size, 'os_volume.size'),
    };
    oneOf(os.on_spot_discontinue, 'os_volume.on_spot_discontinue', onSpotDiscontinue);
  }
  if (given(b.volumes)) {
    if (!Array.isArray(b.volumes)) throw invalid('volumes must be an array');
    spec.volumes = b.volumes.map((v, i) => validateNewVolume(v, `volumes[${i}]`, false));
  }
  return spec;
}

export function validateInstanceAction(body: unknown): InstanceActionSpec {
  const b = requestObject(body);
  const action = str(b.action, 'action');
  // PY wraps a single id in an array; a bare string is taken too.
  const ids = typeof b.id === 'string' ? [b.id] : strArray(b.id, 'id');
  if (ids.length === 0) throw invalid('id must name at least one instance');
  return {
    action,
    ids,
    volumeIds: given(b.volume_ids) ? strArray(b.volume_ids, 'volume_ids') : undefined,
    deletePermanently: bool(b.delete_permanently, 'delete_permanently'),
  };
}

export function validateVolumeAction(body: unknown): VolumeActionSpec {
  const b = requestObject(body);
  const action = str(b.action, 'action');
  const ids = typeof b.id === 'string' ? [b.id] : strArray(b.id, 'id');
  if (ids.length === 0) throw invalid('id must name at least one volume');
  return { action, ids, body: b };
}

/** `?status=` of a list: one of the known statuses (PYt mocks a 400 for others). */
export function statusFilter(query: URLSearchParams, known: readonly string[]): string | undefined {
  const status = query.get('status');
  if (status === null) return undefined;
  if (!known.includes(status))
    throw invalid(`status "${status}" is not one of ${known.join(', ')}`);
  return status;
}

/** `?is_spot=` (GO, SKY) or `?isSpot=` (PY); omitted means on-demand. */
export function spotFlag(query: URLSearchParams): boolean {
  const raw = query.get('is_spot') ?? query.get('isSpot');
  if (raw === null) return false;
  if (raw !== 'true' && raw !== 'false') throw invalid(`is_spot must be true or false, got ${raw}`);
  return raw === 'true';
}
