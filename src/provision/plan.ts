// What provision-host would do, read from the API and written nowhere: the instance type and its
// price, the two volumes (reused when they exist by name in the location, else created), the SSH
// key, availability, and the hourly cost of instance plus volumes, refused above the preset's cap.
import { OpsError } from '../lib/errors.js';
import { formatUsd } from '../lib/format.js';
import type { HostTarget, HostVolume } from './host-config.js';
import {
  volumeHourlyCost,
  type Instance,
  type InstanceType,
  type VerdaInstances,
  type Volume,
} from './verda-instances.js';

export type VolumeRole = 'models' | 'scratch';

export interface PlannedVolume {
  role: VolumeRole;
  want: HostVolume;
  /** The volume of that name in the location, when it exists. */
  existing: Volume | undefined;
  perHour: number;
}

export interface HostPlan {
  target: HostTarget;
  instanceType: InstanceType;
  spot: boolean;
  instancePerHour: number;
  osVolumePerHour: number;
  volumes: PlannedVolume[];
  totalPerHour: number;
  currency: string;
  /** The instance with this hostname in the location, when there is one. */
  existing: Instance | undefined;
  /** Whether the type can be had in the location now (not asked when the instance exists). */
  available: boolean | undefined;
  sshKeyId: string;
  /** What create would do, a line each (nothing when the instance exists). */
  steps: string[];
}

/** A plan refused for its cost, before any write. */
export class HostCostLimitError extends OpsError {
  constructor(
    message: string,
    readonly plan: HostPlan,
  ) {
    super(message);
    this.name = 'HostCostLimitError';
  }
}

const ROLES: VolumeRole[] = ['models', 'scratch'];

/**
 * The instance of this target: its hostname in its location, and of its preset's type. One of
 * that name but another type is refused, never taken for it: a test rebuild must not restore onto
 * (or a delete remove) the production host because two presets share a hostname.
 */
export function findHost(instances: Instance[], target: HostTarget): Instance | undefined {
  const { config, hostname, preset, presetName } = target;
  const found = instances.find((i) => i.hostname === hostname && i.location === config.location);
  if (found && found.instanceType !== preset['instance-type'])
    throw new OpsError(
      `instance ${hostname} in ${config.location} is a ${found.instanceType}, not preset ${presetName}'s ${preset['instance-type']}: choose the preset it was made with, or give the presets their own hostname: in config/host.yml`,
    );
  return found;
}

export async function planHost(api: VerdaInstances, target: HostTarget): Promise<HostPlan> {
  const { config, preset } = target;
  const location = config.location;
  const [locations, types, volumeTypes, volumes, instances, keys] = await Promise.all([
    api.locations(),
    api.instanceTypes('usd'),
    api.volumeTypes(),
    api.volumes(),
    api.instances(),
    api.sshKeys(),
  ]);
  if (!locations.includes(location))
    throw new OpsError(
      `config/host.yml location ${location} is not a Verda location; the API lists ${locations.join(', ')}`,
    );
  const type = types.find((t) => t.name === preset['instance-type']);
  if (!type)
    throw new OpsError(
      `preset ${target.presetName}: instance type ${preset['instance-type']} is not in Verda's catalogue; it lists ${types.map((t) => t.name).join(', ')}`,
    );
  const spot = preset.spot;
  const instancePerHour = spot ? type.spotPricePerHour : type.pricePerHour;
  if (instancePerHour === undefined)
    throw new OpsError(`Verda gives no spot price for ${type.name}: set spot: false`);
  const monthlyPerGb = (volumeType: string): number => {
    const row = volumeTypes.find((t) => t.type === volumeType);
    if (!row)
      throw new OpsError(
        `volume type ${volumeType} has no price in Verda's /volume-types (it lists ${volumeTypes.map((t) => t.type).join(', ')})`,
      );
    return row.pricePerMonthPerGb;
  };
  const key = keys.find((k) => k.name === config['ssh-key']);
  if (!key)
    throw new OpsError(
      `config/host.yml ssh-key "${config['ssh-key']}" is not an SSH key of the Verda account; it has ${keys.map((k) => `"${k.name}"`).join(', ') || 'none'}`,
    );
  const existing = findHost(instances, target);
  const available = existing ? undefined : await api.available(type.name, location, preset.spot);
  const planned = ROLES.map((role): PlannedVolume => {
    const want = config.volumes[role];
    const found = volumes.find((v) => v.name === want.name && v.location === location);
    if (found && found.type !== want.type)
      throw new OpsError(
        `volume "${want.name}" exists in ${location} as ${found.type}, but config/host.yml wants ${want.type}: rename one of them`,
      );
    const foreign = found?.instanceIds.filter((id) => id !== existing?.id) ?? [];
    if (found && foreign.length > 0 && want.type !== 'NVMe_Shared' && want.type !== 'HDD_Shared') {
      const holders = foreign
        .map((id) => {
          const holder = instances.find((i) => i.id === id);
          return holder ? `${holder.hostname} (${holder.status})` : id;
        })
        .join(', ');
      throw new OpsError(
        `volume "${want.name}" is attached to ${holders}: delete that instance first (provision-host command=delete keeps its volumes) so it can be attached here`,
      );
    }
    const perHour =
      found?.hourlyCost ??
      volumeHourlyCost(monthlyPerGb(want.type), found?.sizeGb ?? want['size-gb']);
    return { role, want, existing: found, perHour };
  });
  const osVolumePerHour = existing
    ? 0
    : volumeHourlyCost(monthlyPerGb('NVMe'), config['os-volume-gb']);
  const totalPerHour = round4(
    instancePerHour + osVolumePerHour + planned.reduce((sum, v) => sum + v.perHour, 0),
  );
  const plan: HostPlan = {
    target,
    instanceType: type,
    spot,
    instancePerHour,
    osVolumePerHour,
    volumes: planned,
    totalPerHour,
    currency: type.currency,
    existing,
    available,
    sshKeyId: key.id,
    steps: [],
  };
  plan.steps = existing ? [] : createSteps(plan);
  const cap = preset['max-hourly-cost'];
  if (totalPerHour > cap)
    throw new HostCostLimitError(
      `Refusing: ${type.name}${spot ? ' (spot)' : ''} with its volumes costs ${formatUsd(totalPerHour)}/h, above preset ${target.presetName}'s max-hourly-cost ${formatUsd(cap)}/h`,
      plan,
    );
  return plan;
}

function createSteps(plan: HostPlan): string[] {
  const { config, hostname } = plan.target;
  const steps = plan.volumes.map((v) =>
    v.existing
      ? `reuse volume "${v.want.name}" (${v.existing.type}, ${v.existing.sizeGb} GB, ${v.existing.status})`
      : `create volume "${v.want.name}" (${v.want.type}, ${v.want['size-gb']} GB) in ${config.location}`,
  );
  steps.push(
    `create instance ${hostname}: ${plan.instanceType.name}${plan.spot ? ' spot' : ''}, ${config.image}, ${config['os-volume-gb']} GB OS volume, in ${config.location}, with both volumes attached`,
    'wait until it runs and has an address, then for SSH with the bootstrap host key',
  );
  return steps;
}

export const round4 = (n: number): number => Math.round(n * 10_000) / 10_000;
