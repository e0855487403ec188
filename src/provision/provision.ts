// provision-host's commands on the Verda instance API: create (volumes created when absent and
// reused when present, the instance created with both attached, waited for `running`, its address
// and SSH with the bootstrap host key), status, stop, start, delete (volumes kept unless asked),
// and reap (test instances past their preset's max-running-hours are deleted, volumes kept).
import { OpsError, errorMessage } from '../lib/errors.js';
import { formatDuration } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';
import { sleep } from '../lib/retry.js';
import { connectSsh } from '../lib/ssh.js';
import { newBootstrapKey, startupScript, type BootstrapKey } from './bootstrap.js';
import type { HostConfig, HostTarget } from './host-config.js';
import { findHost, planHost, round4, type HostPlan } from './plan.js';
import {
  TERMINAL_STATUSES,
  type Instance,
  type VerdaInstances,
  type Volume,
} from './verda-instances.js';

export interface ProvisionDeps {
  api: VerdaInstances;
  logger: Logger;
  /** Registers a secret (the bootstrap private key), line by line too, before anything prints it. */
  onSecret: (value: string) => void;
  /** The API's clock (its Date header) for ages and costs; local time where it sent none. */
  apiNow: () => number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

export interface WaitSettings {
  timeoutMs: number;
  pollMs: number;
}

export interface SshSettings {
  privateKey: string;
  user: string;
  port: number;
}

export interface CreateResult {
  plan: HostPlan;
  instance: Instance;
  /** false: the instance existed, nothing was written. */
  created: boolean;
  createdVolumes: string[];
  bootstrapFingerprint: string | undefined;
  /** RESTORE.sh's --models-mount for a shared Model Vault ('SERVER:/PATH nfs OPTS'), if known. */
  modelsMount: string | undefined;
  /** Phase times in ms: volumes ready, instance POST → running, running → SSH answered. */
  timings: { volumesMs: number; instanceMs: number; sshMs: number | undefined };
}

export async function createHost(
  deps: ProvisionDeps,
  target: HostTarget,
  opts: { wait: WaitSettings; ssh: SshSettings | undefined; extraScript: string | undefined },
): Promise<CreateResult> {
  const { api, logger } = deps;
  const now = deps.now ?? Date.now;
  const plan = await planHost(api, target);
  const { config, hostname } = target;
  if (plan.existing) {
    const i = plan.existing;
    logger.info(`instance ${hostname} exists (${i.id}, ${i.status}): nothing created`);
    if (i.status !== 'running')
      throw new OpsError(
        `instance ${hostname} exists but is ${i.status}: ${nextStepFor(i.status)}`,
      );
    return {
      plan,
      instance: i,
      created: false,
      createdVolumes: [],
      bootstrapFingerprint: undefined,
      modelsMount: modelsMountOf(plan.volumes.find((v) => v.role === 'models')?.existing),
      timings: { volumesMs: 0, instanceMs: 0, sshMs: undefined },
    };
  }
  if (plan.available === false)
    throw new OpsError(
      `no capacity: Verda has no ${plan.instanceType.name}${plan.spot ? ' spot' : ''} instance available in ${config.location} now; try again later, another location (config/host.yml location) or another preset`,
    );

  const volumesStarted = now();
  const createdVolumes: string[] = [];
  const volumeIds: string[] = [];
  let modelsMount: string | undefined;
  for (const v of plan.volumes) {
    let volume = v.existing;
    if (!volume) {
      logger.info(`creating volume "${v.want.name}" (${v.want.type}, ${v.want['size-gb']} GB)`);
      volume = await api.createVolume({
        type: v.want.type,
        name: v.want.name,
        size: v.want['size-gb'],
        location_code: config.location,
      });
      createdVolumes.push(v.want.name);
    } else logger.info(`reusing volume "${v.want.name}" (${volume.id}, ${volume.status})`);
    const ready = await waitForVolume(deps, volume, opts.wait);
    volumeIds.push(ready.id);
    if (v.role === 'models') modelsMount = modelsMountOf(ready);
  }
  const volumesMs = now() - volumesStarted;

  const key = newBootstrapKey(hostname);
  deps.onSecret(key.privateKey);
  const scriptName = `comfyume-bootstrap-${hostname}-${Math.floor(deps.apiNow() / 1000)}`;
  const script = await api.createScript(scriptName, startupScript(key, opts.extraScript));
  const instanceStarted = now();
  let instance: Instance;
  try {
    logger.info(`creating instance ${hostname} (${plan.instanceType.name} in ${config.location})`);
    instance = await api.createInstance({
      instance_type: plan.instanceType.name,
      image: config.image,
      hostname,
      description: `${hostname} (comfyume-ops preset ${target.presetName})`,
      location_code: config.location,
      ssh_key_ids: [plan.sshKeyId],
      startup_script_id: script.id,
      is_spot: plan.spot,
      contract: plan.spot ? 'SPOT' : 'PAY_AS_YOU_GO',
      os_volume: { name: `${hostname}-os`, size: config['os-volume-gb'] },
      existing_volumes: volumeIds,
    });
    instance = await waitForStatus(deps, instance, ['running'], opts.wait, 'to run');
  } finally {
    // The script holds the bootstrap private key: it leaves the account whatever happened.
    await api
      .deleteScript(script.id)
      .catch((err: unknown) =>
        logger.warn(
          `could not delete startup script ${scriptName}: ${errorMessage(err)}; delete it in the Verda console`,
        ),
      );
  }
  const instanceMs = now() - instanceStarted;
  let sshMs: number | undefined;
  if (opts.ssh) {
    const sshStarted = now();
    await waitForSsh(deps, instance, key, opts.ssh, opts.wait);
    sshMs = now() - sshStarted;
  }
  return {
    plan,
    instance,
    created: true,
    createdVolumes,
    bootstrapFingerprint: key.fingerprint,
    modelsMount,
    timings: { volumesMs, instanceMs, sshMs },
  };
}

/** The shared filesystem as RESTORE.sh mounts it (the options Verda's own mount_command uses). */
const modelsMountOf = (volume: Volume | undefined): string | undefined =>
  volume?.nfsSource === undefined ? undefined : `${volume.nfsSource} nfs nconnect=16`;

/** What the admin can do about an instance in this status. */
function nextStepFor(status: string): string {
  if (status === 'offline') return 'start it (command=start) or delete it (command=delete)';
  if ((TERMINAL_STATUSES as readonly string[]).includes(status))
    return 'delete it (command=delete keeps the volumes), then create again';
  return 'wait for it (command=status) or delete it (command=delete)';
}

async function waitForVolume(deps: ProvisionDeps, volume: Volume, wait: WaitSettings) {
  const ready = ['detached', 'attached', 'available', 'created'];
  const deadline = (deps.now ?? Date.now)() + wait.timeoutMs;
  let current = volume;
  while (!ready.includes(current.status)) {
    if (['deleted', 'deleting', 'canceled', 'canceling', 'exported'].includes(current.status))
      throw new OpsError(`volume "${current.name}" is ${current.status}: it cannot be attached`);
    if ((deps.now ?? Date.now)() > deadline)
      throw new OpsError(
        `volume "${current.name}" is still ${current.status} after ${formatDuration(wait.timeoutMs)}`,
      );
    await (deps.sleep ?? sleep)(wait.pollMs);
    current = await deps.api.volume(current.id);
  }
  return current;
}

/** Polls the instance until its status is one of `want` (and it has an address when running). */
export async function waitForStatus(
  deps: ProvisionDeps,
  start: Instance,
  want: string[],
  wait: WaitSettings,
  what: string,
): Promise<Instance> {
  const now = deps.now ?? Date.now;
  const deadline = now() + wait.timeoutMs;
  let instance = start;
  let last = '';
  for (;;) {
    if (instance.status !== last) {
      deps.logger.info(`instance ${instance.hostname}: ${instance.status}`);
      last = instance.status;
    }
    const done = want.includes(instance.status) && (instance.status !== 'running' || instance.ip);
    if (done) return instance;
    if (
      !want.includes(instance.status) &&
      (TERMINAL_STATUSES as readonly string[]).includes(instance.status)
    )
      throw new OpsError(
        `instance ${instance.hostname} (${instance.id}) became ${instance.status} while waiting for it ${what}: ${nextStepFor(instance.status)}`,
      );
    if (now() > deadline)
      throw new OpsError(
        `instance ${instance.hostname} (${instance.id}) is still ${instance.status} after ${formatDuration(wait.timeoutMs)} waiting for it ${what}; it is billed meanwhile: ${nextStepFor(instance.status)}`,
      );
    await (deps.sleep ?? sleep)(wait.pollMs);
    const next = await deps.api.instance(instance.id);
    if (!next) throw new OpsError(`instance ${instance.hostname} (${instance.id}) is gone`);
    instance = next;
  }
}

/**
 * Waits until the instance answers SSH with the bootstrap host key: any other key (the image's
 * own, before the startup script ran) is refused and waited past, never trusted.
 */
async function waitForSsh(
  deps: ProvisionDeps,
  instance: Instance,
  key: BootstrapKey,
  ssh: SshSettings,
  wait: WaitSettings,
): Promise<void> {
  const now = deps.now ?? Date.now;
  const deadline = now() + wait.timeoutMs;
  let lastError = '';
  for (;;) {
    try {
      const conn = await connectSsh({
        host: instance.ip ?? '',
        port: ssh.port,
        username: ssh.user,
        privateKey: ssh.privateKey,
        fingerprints: [key.fingerprint],
        readyTimeoutMs: Math.min(20_000, Math.max(1000, deadline - now())),
      });
      try {
        await conn.run('true');
      } finally {
        await conn.close();
      }
      deps.logger.info(
        `${instance.ip}: SSH answers with the bootstrap host key ${key.fingerprint}`,
      );
      return;
    } catch (err) {
      const message = errorMessage(err);
      if (message !== lastError) deps.logger.info(`waiting for SSH on ${instance.ip}: ${message}`);
      lastError = message;
    }
    if (now() > deadline)
      throw new OpsError(
        `instance ${instance.hostname} runs at ${instance.ip} but did not answer SSH with the bootstrap host key within ${formatDuration(wait.timeoutMs)} (last: ${lastError}); the startup script may not have run: see /var/log of the instance in the Verda console`,
      );
    await (deps.sleep ?? sleep)(wait.pollMs);
  }
}

// ---- status, stop, start, delete, reap -----------------------------------------------------

export interface HostStatus {
  instance: Instance | undefined;
  volumes: Volume[];
  /** Since the instance was created, on the API's clock. */
  ageMs: number | undefined;
  perHour: number;
  costSoFar: number | undefined;
}

export async function hostStatus(deps: ProvisionDeps, target: HostTarget): Promise<HostStatus> {
  const [instances, volumes] = await Promise.all([deps.api.instances(), deps.api.volumes()]);
  const instance = findHost(instances, target);
  const names = [target.config.volumes.models.name, target.config.volumes.scratch.name];
  const ours = volumes.filter(
    (v) =>
      (names.includes(v.name) && v.location === target.config.location) ||
      (instance !== undefined && v.instanceIds.includes(instance.id)),
  );
  const perHour = round4(
    (instance?.pricePerHour ?? 0) + ours.reduce((sum, v) => sum + (v.hourlyCost ?? 0), 0),
  );
  const ageMs =
    instance?.createdAt === undefined ? undefined : Math.max(0, deps.apiNow() - instance.createdAt);
  const costSoFar = ageMs === undefined ? undefined : round4((perHour * ageMs) / 3_600_000);
  return { instance, volumes: ours, ageMs, perHour, costSoFar };
}

async function requireHost(deps: ProvisionDeps, target: HostTarget): Promise<Instance> {
  const instance = findHost(await deps.api.instances(), target);
  if (!instance)
    throw new OpsError(
      `no instance ${target.hostname} in ${target.config.location} (command=status lists what there is)`,
    );
  return instance;
}

/** Shuts the instance down; it keeps billing while shut down, which the caller says. */
export async function stopHost(deps: ProvisionDeps, target: HostTarget, wait: WaitSettings) {
  const instance = await requireHost(deps, target);
  if (instance.status === 'offline') {
    deps.logger.info(`instance ${target.hostname} is already shut down`);
    return { instance, changed: false };
  }
  if (instance.status !== 'running')
    throw new OpsError(
      `instance ${target.hostname} is ${instance.status}: only a running instance can be shut down`,
    );
  await deps.api.action('shutdown', instance.id);
  return {
    instance: await waitForStatus(deps, instance, ['offline'], wait, 'to shut down'),
    changed: true,
  };
}

export async function startHost(deps: ProvisionDeps, target: HostTarget, wait: WaitSettings) {
  const instance = await requireHost(deps, target);
  if (instance.status === 'running') {
    deps.logger.info(`instance ${target.hostname} is already running`);
    return { instance, changed: false };
  }
  if (instance.status !== 'offline')
    throw new OpsError(
      `instance ${target.hostname} is ${instance.status}: only a shut-down (offline) instance can be started`,
    );
  await deps.api.action('start', instance.id);
  return {
    instance: await waitForStatus(deps, instance, ['running'], wait, 'to run'),
    changed: true,
  };
}

/**
 * Deletes the instance and its OS volume; the named volumes are kept (detached) unless
 * `deleteVolumes`. `confirm` must be the hostname: a delete is never a slip of the preset.
 */
export async function deleteHost(
  deps: ProvisionDeps,
  target: HostTarget,
  opts: { confirm: string | undefined; deleteVolumes: boolean; wait: WaitSettings },
): Promise<{ instance: Instance | undefined; deletedVolumes: string[]; keptVolumes: string[] }> {
  if (opts.confirm !== target.hostname)
    throw new OpsError(
      `delete needs confirm set to the hostname "${target.hostname}"${opts.confirm ? `, not "${opts.confirm}"` : ''}`,
    );
  const instance = findHost(await deps.api.instances(), target);
  if (!instance) {
    deps.logger.info(`no instance ${target.hostname}: nothing to delete`);
    return { instance: undefined, deletedVolumes: [], keptVolumes: [] };
  }
  const volumes = await deps.api.volumes();
  const attached = volumes.filter((v) => v.instanceIds.includes(instance.id) && !v.isOsVolume);
  const doomed = opts.deleteVolumes ? attached : [];
  const ids = [osVolumeOf(instance, volumes), ...doomed.map((v) => v.id)];
  await deps.api.action('delete', instance.id, ids);
  await waitUntilGone(deps, instance, opts.wait);
  return {
    instance,
    deletedVolumes: doomed.map((v) => v.name),
    keptVolumes: attached.filter((v) => !doomed.includes(v)).map((v) => v.name),
  };
}

/**
 * The OS volume a delete must name (without it Verda keeps it, detached and billed): the
 * instance's os_volume_id, else the OS volume the volume list shows attached to it. Neither:
 * refused before anything is deleted.
 */
function osVolumeOf(instance: Instance, volumes: Volume[]): string {
  const id =
    instance.osVolumeId ??
    volumes.find((v) => v.isOsVolume && v.instanceIds.includes(instance.id))?.id;
  if (id === undefined)
    throw new OpsError(
      `Verda names no OS volume for instance ${instance.hostname} (${instance.id}): nothing deleted; delete it in the Verda console, with its OS volume`,
    );
  return id;
}

async function waitUntilGone(deps: ProvisionDeps, instance: Instance, wait: WaitSettings) {
  const now = deps.now ?? Date.now;
  const deadline = now() + wait.timeoutMs;
  for (;;) {
    const current = await deps.api.instance(instance.id);
    if (!current || ['deleted', 'discontinued', 'notfound'].includes(current.status)) return;
    if (now() > deadline)
      throw new OpsError(
        `instance ${instance.hostname} is still ${current.status} ${formatDuration(wait.timeoutMs)} after its delete`,
      );
    await (deps.sleep ?? sleep)(wait.pollMs);
  }
}

export interface Reaped {
  hostname: string;
  preset: string;
  ageMs: number;
  limitHours: number;
  perHour: number;
}

/**
 * The safety net: every instance of a test preset (one with max-running-hours) older than that
 * is deleted with its OS volume; its named volumes are kept. A shut-down instance is billed as a
 * running one, so shutting it down would save nothing.
 */
export async function reapTestHosts(
  deps: ProvisionDeps,
  config: HostConfig,
  opts: { dryRun: boolean; wait: WaitSettings },
): Promise<Reaped[]> {
  const instances = await deps.api.instances();
  const reaped: Reaped[] = [];
  for (const [name, preset] of Object.entries(config.presets)) {
    const limit = preset['max-running-hours'];
    if (limit === undefined) continue;
    const hostname = preset.hostname ?? config.hostname;
    for (const instance of instances) {
      if (instance.hostname !== hostname || instance.instanceType !== preset['instance-type'])
        continue;
      if (instance.createdAt === undefined) continue;
      const ageMs = deps.apiNow() - instance.createdAt;
      if (ageMs <= limit * 3_600_000) continue;
      deps.logger.warn(
        `${hostname} (${instance.instanceType}, preset ${name}) has existed ${formatDuration(ageMs)}, over its ${limit} h: ${opts.dryRun ? 'would delete' : 'deleting'} it (volumes kept)`,
      );
      if (!opts.dryRun) {
        const osVolume = osVolumeOf(instance, await deps.api.volumes());
        await deps.api.action('delete', instance.id, [osVolume]);
        await waitUntilGone(deps, instance, opts.wait);
      }
      reaped.push({
        hostname,
        preset: name,
        ageMs,
        limitHours: limit,
        perHour: instance.pricePerHour ?? 0,
      });
    }
  }
  return reaped;
}
