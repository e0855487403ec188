// The Verda emulator's GPU instances, volumes, SSH keys and startup scripts over the emulated clock
// (verda-instances-api.md §3-§5). An instance goes ordered -> provisioning -> running; when a boot
// hook is given, provisioning boots a real host and `running` waits for it. State moves lazily:
// every request (and every snapshot) first brings the store up to the clock's now.
import { randomBytes, randomUUID } from 'node:crypto';
import ssh2 from 'ssh2';
import { fingerprintSha256 } from '../lib/ssh.js';
import {
  defaultInstanceCatalog,
  hardware,
  priceValue,
  volumeHourlyUsd,
  type InstanceCatalog,
  type InstanceTypeModel,
  type VolumeTypeModel,
} from './verda-instance-catalog.js';
import type {
  CreateInstanceSpec,
  InstanceActionSpec,
  NewVolumeSpec,
  Tag,
} from './verda-instance-validate.js';
import { ApiError, invalid, notFound } from './verda-wire.js';

/** What the boot hook is asked for when an instance starts provisioning. */
export interface BootRequest {
  id: string;
  hostname: string;
  instanceType: string;
  location: string;
  /** Public keys (authorized_keys lines) of the instance's ssh_key_ids. */
  authorizedKeys: string[];
  /** The text of its startup_script_id. */
  startupScript: string | undefined;
}

export interface BootedHost {
  ip: string;
  port?: number;
  stop(): Promise<void>;
}

export interface InstanceDelays {
  /** Time in `ordered` after a create. */
  orderedMs: number;
  /** At least this long in `provisioning` (and until the boot hook resolved). */
  provisioningMs: number;
  /** running -> offline after shutdown (force_shutdown is immediate). */
  shutdownMs: number;
  /** offline -> running after start. */
  startMs: number;
  /** A volume created by POST /volumes is `ordered` this long, then `detached`. */
  volumeCreateMs: number;
}

export const defaultInstanceDelays: InstanceDelays = {
  orderedMs: 2_000,
  provisioningMs: 20_000,
  shutdownMs: 1_000,
  startMs: 5_000,
  volumeCreateMs: 1_000,
};

export interface CapacityRule {
  instanceType: string;
  location: string;
  isSpot?: boolean;
  /** Instances that can still be created there (each create takes one, a delete gives it back). */
  count: number;
}

export interface InstancesOptions {
  bootHost?: (req: BootRequest) => Promise<BootedHost>;
  /** Capacity per (type, location, spot); unlisted ones have `defaultCapacity`. */
  capacity?: CapacityRule[];
  /** Default: unlimited. */
  defaultCapacity?: number;
  delays?: Partial<InstanceDelays>;
  catalog?: Partial<InstanceCatalog>;
  /** GET /balance amount in USD (default 100). */
  balance?: number;
  /** Startup scripts per user (DOC: 100 by default). */
  maxScripts?: number;
}

/** An instance as tests see it (VerdaEmulator.instances()). */
export interface InstanceState {
  id: string;
  hostname: string;
  instanceType: string;
  location: string;
  status: string;
  ip: string | null;
  isSpot: boolean;
  osVolumeId: string | null;
  volumeIds: string[];
  sshKeyIds: string[];
  startupScriptId: string | null;
  /** In the list (false once deleted or hibernated). */
  listed: boolean;
  bootCalls: number;
  /** Why the boot hook failed (the instance is then `error`). */
  bootError?: string;
}

export interface VolumeState {
  id: string;
  name: string;
  type: string;
  size: number;
  location: string;
  status: string;
  isOsVolume: boolean;
  instanceIds: string[];
  permanentlyDeleted: boolean;
}

export interface SshKeyRecord {
  id: string;
  name: string;
  key: string;
  fingerprint: string;
  created_at: string;
}

export interface ScriptRecord {
  id: string;
  name: string;
  script: string;
  created_at: string;
}

type Phase =
  | { kind: 'booting' }
  | { kind: 'stopping'; at: number }
  | { kind: 'starting'; at: number }
  | { kind: 'gone' };

type Boot =
  | { state: 'none' }
  | { state: 'pending'; done: Promise<void> }
  | { state: 'up'; host: BootedHost }
  | { state: 'failed'; reason: string };

interface EmulatedInstance {
  id: string;
  type: InstanceTypeModel;
  hostname: string;
  description: string;
  location: string;
  image: string;
  osName: string;
  isSpot: boolean;
  contract: string;
  pricing: string;
  sshKeyIds: string[];
  startupScriptId: string | null;
  osVolumeId: string | null;
  tags: Tag[];
  createdAt: number;
  jupyterToken: string;
  phase: Phase;
  boot: Boot;
  bootCalls: number;
  /** Without a boot hook: a documentation address (RFC 5737). */
  fallbackIp: string;
}

interface EmulatedVolume {
  id: string;
  name: string;
  size: number;
  type: VolumeTypeModel;
  location: string;
  createdAt: number;
  readyAt: number;
  isOsVolume: boolean;
  /** Attached to (several only for a shared filesystem). */
  instanceIds: string[];
  deletedAt: number | undefined;
  permanentlyDeleted: boolean;
  tags: Tag[];
}

export interface ActionResult {
  action: string;
  instanceId: string;
  status: 'success' | 'error';
  error?: string;
  statusCode?: number;
}

export interface ActionOutcome {
  result: ActionResult;
  error?: ApiError;
}

const forbidden = (message: string) => new ApiError(400, 'forbidden_action', message);
const invalidInstanceId = () => invalid('Invalid instance id');
const iso = (ms: number) => new Date(ms).toISOString();

export class InstanceStore {
  readonly catalog: InstanceCatalog;
  readonly delays: InstanceDelays;
  readonly balance: number;
  private readonly instances = new Map<string, EmulatedInstance>();
  private readonly volumes = new Map<string, EmulatedVolume>();
  private readonly keys = new Map<string, SshKeyRecord>();
  private readonly scriptRecords = new Map<string, ScriptRecord>();
  private readonly capacity = new Map<string, number>();
  private readonly pendingStops = new Set<Promise<void>>();
  private ipSeq = 0;
  private stopped = false;

  constructor(private readonly opts: InstancesOptions = {}) {
    this.catalog = { ...defaultInstanceCatalog, ...opts.catalog };
    this.delays = { ...defaultInstanceDelays, ...opts.delays };
    this.balance = opts.balance ?? 100;
    for (const rule of opts.capacity ?? [])
      this.setCapacity(rule.instanceType, rule.location, rule.count, rule.isSpot ?? false);
  }

  // ---- catalogue look-ups ----------------------------------------------------------------

  findType(name: string): InstanceTypeModel | undefined {
    return this.catalog.types.find((t) => t.instanceType === name);
  }

  knowsLocation(code: string): boolean {
    return this.catalog.locations.some((l) => l.code === code);
  }

  requireLocation(code: string, field: string): string {
    if (!this.knowsLocation(code))
      throw invalid(
        `${field} "${code}" is not a location (${this.catalog.locations.map((l) => l.code).join(', ')})`,
      );
    return code;
  }

  // ---- capacity ----------------------------------------------------------------------------

  private capacityKey(type: string, location: string, isSpot: boolean): string {
    return `${type}|${location}|${isSpot ? 'spot' : 'on-demand'}`;
  }

  setCapacity(type: string, location: string, count: number, isSpot = false): void {
    if (!(count >= 0)) throw new RangeError(`capacity must be >= 0, got ${count}`);
    this.capacity.set(this.capacityKey(type, location, isSpot), count);
  }

  capacityLeft(type: string, location: string, isSpot: boolean): number {
    return (
      this.capacity.get(this.capacityKey(type, location, isSpot)) ??
      this.opts.defaultCapacity ??
      Infinity
    );
  }

  private takeCapacity(inst: { type: InstanceTypeModel; location: string; isSpot: boolean }) {
    const left = this.capacityLeft(inst.type.instanceType, inst.location, inst.isSpot);
    this.capacity.set(
      this.capacityKey(inst.type.instanceType, inst.location, inst.isSpot),
      left - 1,
    );
  }

  private giveBackCapacity(inst: EmulatedInstance) {
    const key = this.capacityKey(inst.type.instanceType, inst.location, inst.isSpot);
    const left = this.capacity.get(key);
    if (left !== undefined) this.capacity.set(key, left + 1);
  }

  // ---- the clock ---------------------------------------------------------------------------

  /** Starts the boots whose provisioning began; called before every request is handled. */
  refresh(now: number): void {
    for (const inst of this.instances.values()) {
      if (
        inst.phase.kind === 'booting' &&
        inst.boot.state === 'none' &&
        now >= inst.createdAt + this.delays.orderedMs
      )
        this.startBoot(inst);
    }
  }

  private startBoot(inst: EmulatedInstance): void {
    const hook = this.opts.bootHost;
    if (!hook || this.stopped) return;
    inst.bootCalls += 1;
    const request: BootRequest = {
      id: inst.id,
      hostname: inst.hostname,
      instanceType: inst.type.instanceType,
      location: inst.location,
      authorizedKeys: inst.sshKeyIds.flatMap((id) => {
        const key = this.keys.get(id);
        return key ? [key.key] : [];
      }),
      startupScript:
        inst.startupScriptId === null
          ? undefined
          : this.scriptRecords.get(inst.startupScriptId)?.script,
    };
    const done = hook(request).then(
      (host) => {
        inst.boot = { state: 'up', host };
        // Deleted (or the emulator stopped) while it booted: nothing may keep running.
        if (inst.phase.kind === 'gone' || this.stopped) this.stopHost(inst);
      },
      (err: unknown) => {
        const reason = err instanceof Error ? err.message : String(err);
        inst.boot = { state: 'failed', reason };
      },
    );
    inst.boot = { state: 'pending', done };
  }

  private stopHost(inst: EmulatedInstance): void {
    if (inst.boot.state !== 'up') return;
    const host = inst.boot.host;
    inst.boot = { state: 'none' };
    const stopping = host.stop().catch(() => undefined);
    this.pendingStops.add(stopping);
    void stopping.then(() => this.pendingStops.delete(stopping));
  }

  private status(inst: EmulatedInstance, now: number): string {
    const phase = inst.phase;
    if (phase.kind === 'gone') return 'discontinued';
    if (inst.boot.state === 'failed') return 'error';
    if (phase.kind === 'stopping') return now < phase.at ? 'running' : 'offline';
    if (phase.kind === 'starting') return now < phase.at ? 'offline' : 'running';
    if (now < inst.createdAt + this.delays.orderedMs) return 'ordered';
    const provisioned = now >= inst.createdAt + this.delays.orderedMs + this.delays.provisioningMs;
    const booted = !this.opts.bootHost || inst.boot.state === 'up';
    return provisioned && booted ? 'running' : 'provisioning';
  }

  /** The address once provisioned: the booted host's, else a documentation address. */
  private ip(inst: EmulatedInstance, now: number): string | null {
    const status = this.status(inst, now);
    if (status !== 'running' && status !== 'offline') return null;
    if (inst.boot.state === 'up') return inst.boot.host.ip;
    return inst.fallbackIp;
  }

  // ---- instances ---------------------------------------------------------------------------

  private attachedTo(instanceId: string): EmulatedVolume[] {
    return [...this.volumes.values()].filter(
      (v) => v.deletedAt === undefined && v.instanceIds.includes(instanceId),
    );
  }

  instanceBody(inst: EmulatedInstance, now: number): Record<string, unknown> {
    const price = inst.isSpot ? inst.type.spotUsd : inst.type.usd;
    return {
      id: inst.id,
      instance_type: inst.type.instanceType,
      status: this.status(inst, now),
      hostname: inst.hostname,
      description: inst.description,
      created_at: iso(inst.createdAt),
      location: inst.location,
      image: inst.image,
      os_name: inst.osName,
      price_per_hour: priceValue(inst.type, price),
      is_spot: inst.isSpot,
      contract: inst.contract,
      pricing: inst.pricing,
      ssh_key_ids: [...inst.sshKeyIds],
      startup_script_id: inst.startupScriptId,
      ip: this.ip(inst, now),
      os_volume_id: inst.osVolumeId,
      volume_ids: this.attachedTo(inst.id)
        .filter((v) => v.id !== inst.osVolumeId)
        .map((v) => v.id),
      jupyter_token: inst.jupyterToken,
      tags: inst.tags.map((t) => ({ ...t })),
      ...hardware(inst.type),
    };
  }

  listInstances(now: number, status: string | undefined): Record<string, unknown>[] {
    return [...this.instances.values()]
      .filter((i) => i.phase.kind !== 'gone')
      .filter((i) => status === undefined || this.status(i, now) === status)
      .map((i) => this.instanceBody(i, now));
  }

  /** Also a deleted or hibernated one (`discontinued`, ISS#14). */
  getInstance(id: string): EmulatedInstance {
    const inst = this.instances.get(id);
    if (!inst) throw notFound('Invalid instance id');
    return inst;
  }

  createInstance(spec: CreateInstanceSpec, now: number): string {
    const type = this.findType(spec.instanceType);
    if (!type)
      throw invalid(
        `instance_type "${spec.instanceType}" is not an instance type (${this.catalog.types.map((t) => t.instanceType).join(', ')})`,
      );
    const location = this.requireLocation(spec.locationCode, 'location_code');
    const image = this.resolveImage(spec.image, type, location, now);
    for (const id of spec.sshKeyIds)
      if (!this.keys.has(id)) throw invalid(`ssh_key_ids: no SSH key with id ${id}`);
    if (spec.startupScriptId !== undefined && !this.scriptRecords.has(spec.startupScriptId))
      throw invalid(`startup_script_id: no startup script with id ${spec.startupScriptId}`);
    const existing = spec.existingVolumes.map((id) => this.attachableVolume(id, location, now));
    const newVolumes = spec.volumes.map((v, i) => {
      const volumeType = this.requireVolumeType(v.type, `volumes[${i}].type`);
      if (v.locationCode !== undefined && v.locationCode !== location)
        throw invalid(
          `volumes[${i}].location_code ${v.locationCode} differs from the instance's ${location}`,
        );
      return { spec: v, volumeType };
    });
    if (spec.isSpot && spec.contract !== undefined && spec.contract !== 'SPOT')
      throw invalid(`contract ${spec.contract} does not go with is_spot: true`);
    // Checked last: a well-formed order that only lacks capacity (the real code is unknown).
    if (this.capacityLeft(type.instanceType, location, spec.isSpot) < 1)
      throw invalid(
        `no capacity for ${type.instanceType} in ${location} (${spec.isSpot ? 'spot' : 'on-demand'})`,
      );

    const id = randomUUID();
    this.ipSeq += 1;
    const inst: EmulatedInstance = {
      id,
      type,
      hostname: spec.hostname,
      description: spec.description,
      location,
      image: image.imageType,
      osName: image.osName,
      isSpot: spec.isSpot,
      contract: spec.contract ?? (spec.isSpot ? 'SPOT' : 'PAY_AS_YOU_GO'),
      pricing: spec.pricing ?? 'FIXED_PRICE',
      sshKeyIds: [...spec.sshKeyIds],
      startupScriptId: spec.startupScriptId ?? null,
      osVolumeId: null,
      tags: spec.tags,
      createdAt: now,
      jupyterToken: randomBytes(16).toString('hex'),
      phase: { kind: 'booting' },
      boot: { state: 'none' },
      bootCalls: 0,
      fallbackIp: `192.0.2.${1 + ((this.ipSeq - 1) % 254)}`,
    };
    this.takeCapacity(inst);
    this.instances.set(id, inst);
    const osVolume =
      image.osVolume ??
      this.addVolume(
        {
          name: spec.osVolume?.name ?? `OS-NVMe-${spec.hostname}`,
          size: spec.osVolume?.size ?? 50,
          type: this.requireVolumeType('NVMe', 'os_volume.type'),
          location,
          isOsVolume: true,
          tags: [],
        },
        now,
        now,
      );
    inst.osVolumeId = osVolume.id;
    osVolume.instanceIds = [id];
    for (const v of existing) v.instanceIds.push(id);
    for (const { spec: v, volumeType } of newVolumes) {
      const volume = this.addVolume(
        { name: v.name, size: v.size, type: volumeType, location, isOsVolume: false, tags: v.tags },
        now,
        now,
      );
      volume.instanceIds = [id];
    }
    return id;
  }

  /** An image_type this type boots, or a detached OS volume's id there (PY). */
  private resolveImage(
    image: string,
    type: InstanceTypeModel,
    location: string,
    now: number,
  ): { imageType: string; osName: string; osVolume?: EmulatedVolume } {
    const known = this.catalog.images.find((i) => i.image_type === image);
    if (known) {
      if (!type.images.includes(image))
        throw invalid(
          `image "${image}" does not run on ${type.instanceType} (${type.images.join(', ')})`,
        );
      return { imageType: image, osName: known.os };
    }
    const volume = this.volumes.get(image);
    if (volume?.isOsVolume && volume.deletedAt === undefined) {
      const osVolume = this.attachableVolume(image, location, now);
      return { imageType: image, osName: 'from an OS volume', osVolume };
    }
    throw invalid(
      `image "${image}" is neither an image type (${this.catalog.images.map((i) => i.image_type).join(', ')}) nor a detached OS volume`,
    );
  }

  /** A volume that may be attached at create time: detached (or a shared FS), same location. */
  private attachableVolume(id: string, location: string, now: number): EmulatedVolume {
    const volume = this.liveVolume(id, 'existing_volumes');
    if (volume.location !== location)
      throw invalid(`volume ${id} is in ${volume.location}, the instance in ${location}`);
    if (volume.instanceIds.length > 0 && !volume.type.isSharedFs)
      throw invalid(`volume ${id} is attached to instance ${volume.instanceIds.join(', ')}`);
    if (volume.readyAt > now) throw invalid(`volume ${id} is still being created`);
    return volume;
  }

  /** PUT /instances: every id is tried; each outcome says whether (and how) it failed. */
  act(spec: InstanceActionSpec, now: number): ActionOutcome[] {
    const known = ['start', 'shutdown', 'force_shutdown', 'delete', 'discontinue', 'hibernate'];
    if (!known.includes(spec.action))
      throw invalid(`action "${spec.action}" is not one of ${known.join(', ')}`);
    return spec.ids.map((id) => {
      const result: ActionResult = { action: spec.action, instanceId: id, status: 'success' };
      try {
        this.actOn(id, spec, now);
        return { result };
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        const failed: ActionResult = {
          ...result,
          status: 'error',
          error: err.message,
          statusCode: err.status,
        };
        return { result: failed, error: err };
      }
    });
  }

  private actOn(id: string, spec: InstanceActionSpec, now: number): void {
    const inst = this.instances.get(id);
    if (!inst) throw invalidInstanceId();
    const status = this.status(inst, now);
    const wrongState = (needs: string) =>
      invalid(`instance ${id} is ${status}; ${spec.action} needs it ${needs}`);
    switch (spec.action) {
      case 'shutdown':
      case 'force_shutdown':
        if (status !== 'running') throw wrongState('running');
        inst.phase = {
          kind: 'stopping',
          at: now + (spec.action === 'shutdown' ? this.delays.shutdownMs : 0),
        };
        return;
      case 'start':
        if (status !== 'offline') throw wrongState('offline');
        inst.phase = { kind: 'starting', at: now + this.delays.startMs };
        return;
      case 'hibernate':
        if (status === 'discontinued') throw forbidden("Can't hibernate a discontinued instance");
        if (status !== 'running' && status !== 'offline') throw wrongState('running or offline');
        // Hibernation removes the instance and keeps every volume (detached, still billed).
        this.remove(inst, [], false, now);
        return;
      default:
        // delete, discontinue
        if (status === 'discontinued') throw forbidden("Can't discontinue a discontinued instance");
        this.remove(inst, spec.volumeIds, spec.deletePermanently, now);
    }
  }

  /**
   * Gone from the list; volumes per §4: `volumeIds` undefined deletes the OS volume, [] none,
   * else the ones named (which must be attached to it); the rest are detached.
   */
  private remove(
    inst: EmulatedInstance,
    volumeIds: string[] | undefined,
    permanently: boolean,
    now: number,
  ): void {
    const attached = this.attachedTo(inst.id);
    const toDelete = volumeIds ?? (inst.osVolumeId === null ? [] : [inst.osVolumeId]);
    for (const vid of toDelete)
      if (!attached.some((v) => v.id === vid))
        throw invalid(`volume_ids: volume ${vid} is not attached to instance ${inst.id}`);
    for (const v of attached) {
      v.instanceIds = v.instanceIds.filter((i) => i !== inst.id);
      if (toDelete.includes(v.id)) this.trash(v, permanently, now);
    }
    inst.phase = { kind: 'gone' };
    this.giveBackCapacity(inst);
    if (inst.boot.state === 'up') this.stopHost(inst);
  }

  // ---- volumes -----------------------------------------------------------------------------

  requireVolumeType(type: string, field: string): VolumeTypeModel {
    const found = this.catalog.volumeTypes.find((v) => v.type === type);
    if (!found)
      throw invalid(
        `${field} "${type}" is not a volume type (${this.catalog.volumeTypes.map((v) => v.type).join(', ')})`,
      );
    return found;
  }

  private addVolume(
    v: Pick<EmulatedVolume, 'name' | 'size' | 'type' | 'location' | 'isOsVolume' | 'tags'>,
    now: number,
    readyAt: number,
  ): EmulatedVolume {
    const volume: EmulatedVolume = {
      ...v,
      id: randomUUID(),
      createdAt: now,
      readyAt,
      instanceIds: [],
      deletedAt: undefined,
      permanentlyDeleted: false,
    };
    this.volumes.set(volume.id, volume);
    return volume;
  }

  /** POST /volumes; with instance_id(s) it is attached at once (the instance must be offline). */
  createVolume(spec: NewVolumeSpec, now: number): string {
    const type = this.requireVolumeType(spec.type, 'type');
    const location = this.requireLocation(spec.locationCode ?? '', 'location_code');
    if (spec.instanceIds.length > 1 && !type.isSharedFs)
      throw invalid(`instance_ids: only a shared filesystem (NVMe_Shared) attaches to several`);
    const targets = spec.instanceIds.map((id) => this.offlineInstance(id, location, now));
    const ready = targets.length > 0 ? now : now + this.delays.volumeCreateMs;
    const volume = this.addVolume(
      { name: spec.name, size: spec.size, type, location, isOsVolume: false, tags: spec.tags },
      now,
      ready,
    );
    volume.instanceIds = targets.map((t) => t.id);
    return volume.id;
  }

  /** An instance a volume may be attached to: offline, in the volume's location. */
  private offlineInstance(id: string, location: string, now: number): EmulatedInstance {
    const inst = this.instances.get(id);
    if (!inst || inst.phase.kind === 'gone') throw invalidInstanceId();
    const status = this.status(inst, now);
    if (status !== 'offline')
      throw invalid(`instance ${id} is ${status}; attach needs it offline (shut it down first)`);
    if (inst.location !== location)
      throw invalid(`instance ${id} is in ${inst.location}, the volume in ${location}`);
    return inst;
  }

  private liveVolume(id: string, field = 'id'): EmulatedVolume {
    const volume = this.volumes.get(id);
    if (!volume || volume.deletedAt !== undefined)
      throw invalid(`${field}: no volume with id ${id}`);
    return volume;
  }

  getVolume(id: string): EmulatedVolume {
    const volume = this.volumes.get(id);
    if (!volume || volume.permanentlyDeleted) {
      // A permanently deleted volume still answers, with status deleted (PYit).
      if (volume) return volume;
      throw notFound(`no volume with id ${id}`);
    }
    return volume;
  }

  private volumeStatus(v: EmulatedVolume, now: number): string {
    if (v.deletedAt !== undefined) return 'deleted';
    if (now < v.readyAt) return 'ordered';
    return v.instanceIds.length > 0 ? 'attached' : 'detached';
  }

  volumeBody(v: EmulatedVolume, now: number): Record<string, unknown> {
    const hourly = volumeHourlyUsd(v.type, v.size);
    const instances = v.instanceIds.flatMap((id) => {
      const inst = this.instances.get(id);
      if (!inst) return [];
      return [
        {
          id,
          ip: this.ip(inst, now),
          instance_type: inst.type.instanceType,
          status: this.status(inst, now),
          hostname: inst.hostname,
          os_volume_id: inst.osVolumeId,
        },
      ];
    });
    const body: Record<string, unknown> = {
      id: v.id,
      name: v.name,
      size: v.size,
      type: v.type.type,
      status: this.volumeStatus(v, now),
      is_os_volume: v.isOsVolume,
      created_at: iso(v.createdAt),
      location: v.location,
      instance_id: v.instanceIds[0] ?? null,
      instances,
      target: v.instanceIds.length === 0 ? null : v.isOsVolume ? 'vda' : 'vdb',
      ssh_key_ids: [],
      contract: 'PAY_AS_YOU_GO',
      base_hourly_cost: hourly,
      monthly_price: Math.round(v.type.pricePerMonthPerGb * v.size * 100) / 100,
      currency: 'usd',
      long_term: null,
      tags: v.tags.map((t) => ({ ...t })),
    };
    if (v.type.isSharedFs) {
      const pseudoPath = `/${v.name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${v.id.slice(0, 8)}`;
      const server = `nfs.${v.location.toLowerCase()}.datacrunch.io`;
      body.pseudo_path = pseudoPath;
      body.create_directory_command = `mkdir -p /mnt/${v.name.replace(/[^A-Za-z0-9_-]+/g, '-')}`;
      body.mount_command = `mount -t nfs -o nconnect=16 ${server}:${pseudoPath} /mnt/${v.name.replace(/[^A-Za-z0-9_-]+/g, '-')}`;
      body.filesystem_to_fstab_command = `grep -qxF '${server}:${pseudoPath}' /etc/fstab || echo '${server}:${pseudoPath} /mnt/${v.name.replace(/[^A-Za-z0-9_-]+/g, '-')} nfs defaults,nconnect=16 0 0' >> /etc/fstab`;
    }
    if (v.deletedAt !== undefined) {
      body.deleted_at = iso(v.deletedAt);
      body.is_permanently_deleted = v.permanentlyDeleted;
    }
    return body;
  }

  listVolumes(now: number, status: string | undefined): Record<string, unknown>[] {
    return [...this.volumes.values()]
      .filter((v) => v.deletedAt === undefined)
      .filter((v) => status === undefined || this.volumeStatus(v, now) === status)
      .map((v) => this.volumeBody(v, now));
  }

  /** GET /volumes/trash: soft-deleted ones (kept 96 h); permanently deleted ones are not. */
  trashList(now: number): Record<string, unknown>[] {
    return [...this.volumes.values()]
      .filter((v) => v.deletedAt !== undefined && !v.permanentlyDeleted)
      .map((v) => this.volumeBody(v, now));
  }

  private trash(v: EmulatedVolume, permanently: boolean, now: number): void {
    v.deletedAt = now;
    v.permanentlyDeleted = permanently;
    v.instanceIds = [];
  }

  /** Attached volumes change only while every instance they are on is offline (§5). */
  private requireOfflineHolders(v: EmulatedVolume, action: string, now: number, only?: string) {
    for (const id of v.instanceIds) {
      if (only !== undefined && id !== only) continue;
      const inst = this.instances.get(id);
      if (!inst) continue;
      const status = this.status(inst, now);
      if (status !== 'offline')
        throw invalid(
          `volume ${v.id} is attached to instance ${id}, which is ${status}; ${action} needs it offline`,
        );
    }
  }

  deleteVolume(id: string, permanently: boolean, now: number): void {
    const v = this.liveVolume(id);
    this.requireOfflineHolders(v, 'delete', now);
    this.trash(v, permanently, now);
  }

  /** PUT /volumes for each id; the first failure answers (the real partial reply is unknown). */
  volumeAction(action: string, ids: string[], body: Record<string, unknown>, now: number): void {
    const known = ['attach', 'detach', 'rename', 'resize', 'delete'];
    if (!known.includes(action))
      throw invalid(`action "${action}" is not one of ${known.join(', ')} (clone is not emulated)`);
    for (const id of ids) {
      const v = this.liveVolume(id);
      if (now < v.readyAt) throw invalid(`volume ${id} is still being created`);
      switch (action) {
        case 'attach': {
          const targets: string[] = [];
          if (typeof body.instance_id === 'string') targets.push(body.instance_id);
          if (Array.isArray(body.instance_ids))
            targets.push(...body.instance_ids.filter((i): i is string => typeof i === 'string'));
          if (targets.length === 0) throw invalid('instance_id is required to attach');
          if (!v.type.isSharedFs && (targets.length > 1 || v.instanceIds.length > 0))
            throw invalid(
              `volume ${id} is ${v.instanceIds.length > 0 ? `attached to instance ${v.instanceIds.join(', ')}` : 'not a shared filesystem'}; only NVMe_Shared attaches to several`,
            );
          for (const t of targets) this.offlineInstance(t, v.location, now);
          for (const t of targets) if (!v.instanceIds.includes(t)) v.instanceIds.push(t);
          break;
        }
        case 'detach': {
          if (v.instanceIds.length === 0) throw invalid(`volume ${id} is not attached`);
          const only = typeof body.instance_id === 'string' ? body.instance_id : undefined;
          if (only !== undefined && !v.instanceIds.includes(only))
            throw invalid(`volume ${id} is not attached to instance ${only}`);
          this.requireOfflineHolders(v, 'detach', now, only);
          v.instanceIds = only === undefined ? [] : v.instanceIds.filter((i) => i !== only);
          break;
        }
        case 'rename':
          if (typeof body.name !== 'string' || body.name.trim() === '')
            throw invalid('name is required to rename');
          v.name = body.name;
          break;
        case 'resize': {
          const size = body.size;
          if (typeof size !== 'number' || !Number.isInteger(size) || size <= v.size)
            throw invalid(
              `size must be an integer larger than the current ${v.size} GB (grow only), got ${JSON.stringify(size)}`,
            );
          v.size = size;
          break;
        }
        default:
          this.requireOfflineHolders(v, 'delete', now);
          this.trash(v, body.is_permanent === true, now);
      }
    }
  }

  // ---- keys and scripts --------------------------------------------------------------------

  addKey(name: string, key: string, now: number): string {
    const parsed = /[\r\n]/.test(key.trim())
      ? new Error('several lines')
      : ssh2.utils.parseKey(key);
    if (parsed instanceof Error || parsed.isPrivateKey())
      throw invalid('key must be an OpenSSH public key ("ssh-ed25519 AAAA... comment")');
    const id = randomUUID();
    // Duplicate names are allowed (DS).
    this.keys.set(id, {
      id,
      name,
      key: key.trim(),
      fingerprint: fingerprintSha256(parsed.getPublicSSH()),
      created_at: iso(now),
    });
    return id;
  }

  listKeys(): SshKeyRecord[] {
    return [...this.keys.values()].map((k) => ({ ...k }));
  }

  getKey(id: string): SshKeyRecord {
    const key = this.keys.get(id);
    if (!key) throw notFound(`no SSH key with id ${id}`);
    return { ...key };
  }

  deleteKey(id: string): void {
    if (!this.keys.delete(id)) throw notFound(`no SSH key with id ${id}`);
  }

  addScript(name: string, script: string, now: number): string {
    const max = this.opts.maxScripts ?? 100;
    if (this.scriptRecords.size >= max)
      throw invalid(`Script limit exceeded: at most ${max} startup scripts`);
    const id = randomUUID();
    this.scriptRecords.set(id, { id, name, script, created_at: iso(now) });
    return id;
  }

  listScripts(): ScriptRecord[] {
    return [...this.scriptRecords.values()].map((s) => ({ ...s }));
  }

  getScript(id: string): ScriptRecord {
    const script = this.scriptRecords.get(id);
    if (!script) throw notFound(`no startup script with id ${id}`);
    return { ...script };
  }

  deleteScript(id: string): void {
    if (!this.scriptRecords.delete(id)) throw notFound(`no startup script with id ${id}`);
  }

  // ---- snapshots and the end ---------------------------------------------------------------

  instanceStates(now: number): InstanceState[] {
    this.refresh(now);
    return [...this.instances.values()].map((inst) => ({
      id: inst.id,
      hostname: inst.hostname,
      instanceType: inst.type.instanceType,
      location: inst.location,
      status: this.status(inst, now),
      ip: this.ip(inst, now),
      isSpot: inst.isSpot,
      osVolumeId: inst.osVolumeId,
      volumeIds: this.attachedTo(inst.id)
        .filter((v) => v.id !== inst.osVolumeId)
        .map((v) => v.id),
      sshKeyIds: [...inst.sshKeyIds],
      startupScriptId: inst.startupScriptId,
      listed: inst.phase.kind !== 'gone',
      bootCalls: inst.bootCalls,
      ...(inst.boot.state === 'failed' ? { bootError: inst.boot.reason } : {}),
    }));
  }

  volumeStates(now: number): VolumeState[] {
    return [...this.volumes.values()].map((v) => ({
      id: v.id,
      name: v.name,
      type: v.type.type,
      size: v.size,
      location: v.location,
      status: this.volumeStatus(v, now),
      isOsVolume: v.isOsVolume,
      instanceIds: [...v.instanceIds],
      permanentlyDeleted: v.permanentlyDeleted,
    }));
  }

  /** Waits for boots under way, then stops every booted host. */
  async stop(): Promise<void> {
    this.stopped = true;
    const pending = [...this.instances.values()].flatMap((i) =>
      i.boot.state === 'pending' ? [i.boot.done] : [],
    );
    await Promise.all(pending);
    for (const inst of this.instances.values()) this.stopHost(inst);
    await Promise.all([...this.pendingStops]);
  }
}
