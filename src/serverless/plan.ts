// The planner: live deployment + its scaling vs the desired body → a readable field diff
// (live → desired) and the minimal writes: PATCH the deployment only for non-scaling fields
// (containers replaced whole, with their server-side names), PATCH /scaling only for scaling.
import type { DeploymentSpec, LiveDeployment, ScalingOptions } from './verda-types.js';

export interface Change {
  field: string;
  live: string;
  desired: string;
}

export interface Plan {
  action: 'create' | 'update' | 'none';
  changes: Change[];
  /** Body of PATCH /container-deployments/{name}, when anything but scaling differs. */
  deploymentPatch?: Partial<DeploymentSpec>;
  /** Body of PATCH …/scaling, when scaling differs. */
  scalingPatch?: ScalingOptions;
}

export const absent = '(absent)';

export function planDeployment(
  desired: DeploymentSpec,
  live: { deployment: LiveDeployment; scaling: ScalingOptions } | undefined,
): Plan {
  if (!live) {
    return { action: 'create', changes: diff('', {}, withoutName(desired), true) };
  }
  const { deployment, scaling } = live;
  const changes: Change[] = [];
  const patch: Partial<DeploymentSpec> = {};
  for (const key of ['is_spot', 'compute', 'container_registry_settings'] as const) {
    const found = diff(key, deployment[key], desired[key]);
    if (found.length > 0) {
      changes.push(...found);
      Object.assign(patch, { [key]: desired[key] });
    }
  }
  const containerChanges = diff(
    'containers',
    deployment.containers.map(comparable),
    desired.containers.map(comparable),
  );
  if (containerChanges.length > 0) {
    changes.push(...containerChanges);
    // Replace-all, each container under the name the server gave it.
    patch.containers = desired.containers.map((c, i) => {
      const name = deployment.containers[i]?.name;
      return name === undefined ? c : { ...c, name };
    });
  }
  const scalingChanges = diff('scaling', scaling, desired.scaling);
  changes.push(...scalingChanges);
  const plan: Plan = { action: changes.length > 0 ? 'update' : 'none', changes };
  if (Object.keys(patch).length > 0) plan.deploymentPatch = patch;
  if (scalingChanges.length > 0) plan.scalingPatch = desired.scaling;
  return plan;
}

function withoutName(spec: DeploymentSpec): Record<string, unknown> {
  return { ...spec, containers: spec.containers.map(comparable) };
}

/** A container without its server name, env keyed by name and mounts by path (order-free). */
function comparable(c: DeploymentSpec['containers'][number]): Record<string, unknown> {
  const { name: _name, env, volume_mounts, ...rest } = c;
  return {
    ...rest,
    env: Object.fromEntries(
      env.map((e) => [
        e.name,
        e.type === 'secret'
          ? `secret ${e.value_or_reference_to_secret}`
          : e.value_or_reference_to_secret,
      ]),
    ),
    volume_mounts: Object.fromEntries(volume_mounts.map(({ mount_path, ...m }) => [mount_path, m])),
  };
}

// Collections we own: keys only the live side has are removals there; elsewhere they are
// server-side extras (defaults the API adds) and not a difference.
const ownedCollections = /(^|\.)(env|volume_mounts)$/;

/** Leaf-by-leaf differences of desired against live, as readable values. */
function diff(prefix: string, live: unknown, desired: unknown, creating = false): Change[] {
  const l = flatten(live, prefix);
  const d = flatten(desired, prefix);
  const changes: Change[] = [];
  for (const [field, value] of d) {
    const before = l.get(field);
    if (before !== value)
      changes.push({ field, live: creating ? absent : (before ?? absent), desired: value });
  }
  for (const [field, value] of l) {
    if (!d.has(field) && ownedCollections.test(parentOf(field, prefix)))
      changes.push({ field, live: value, desired: absent });
  }
  return changes;
}

function parentOf(field: string, prefix: string): string {
  // containers[0].env.HF_TOKEN → containers[0].env ; containers[0].volume_mounts./data.type → …volume_mounts
  const m = /^(.*?\.(?:env|volume_mounts))\./.exec(field);
  return m?.[1] ?? prefix;
}

function flatten(
  value: unknown,
  prefix: string,
  out = new Map<string, string>(),
): Map<string, string> {
  if (
    Array.isArray(value) &&
    value.every((v) => typeof v !== 'object' || v === null) &&
    value.length > 0 &&
    !/containers$/.test(prefix)
  ) {
    out.set(prefix, value.join(' '));
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => flatten(v, `${prefix}[${i}]`, out));
    if (value.length === 0) out.set(prefix, '[]');
  } else if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    for (const [k, v] of entries) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (value === null) {
    out.set(prefix, 'null');
  } else if (value !== undefined) {
    out.set(prefix, String(value));
  }
  return out;
}
