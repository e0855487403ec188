// From config/workshop.yml plus the action's overrides (preset, gpu, spot, min/max, image tag)
// to the exact deployment body to send. Bad overrides are InputErrors, raised before any request.
import { InputError } from '../lib/errors.js';
import { isPinnedImageTag, type WorkshopConfig } from './config.js';
import {
  knownComputeNames,
  type ContainerSpec,
  type DeploymentSpec,
  type EnvVar,
  type ScalingOptions,
} from './verda-types.js';

export interface DeployOverrides {
  preset?: string;
  gpu?: string;
  spot?: boolean;
  minReplicas?: number;
  maxReplicas?: number;
  imageTag?: string;
}

export interface DesiredState {
  preset: string;
  name: string;
  gpu: string;
  gpuCount: number;
  spot: boolean;
  minReplicas: number;
  maxReplicas: number;
  imageRepository: string;
  /** Undefined when neither the input nor the config pins one: an existing deployment keeps its image. */
  imageTag: string | undefined;
  workshopHours: number;
  healthPath: string;
  config: WorkshopConfig;
}

export function resolveDesired(config: WorkshopConfig, o: DeployOverrides): DesiredState {
  const presetName = o.preset ?? config.default_preset;
  const preset = config.presets[presetName];
  if (!preset)
    throw new InputError('preset', presetName, `one of ${Object.keys(config.presets).join(', ')}`);
  const gpu = o.gpu ?? preset.gpu;
  if (!knownComputeNames.some((known) => known === gpu)) {
    throw new InputError('gpu', gpu, `a Verda compute name: ${knownComputeNames.join(', ')}`);
  }
  const minReplicas = o.minReplicas ?? preset.min_replicas ?? config.scaling.min_replicas;
  const maxReplicas = o.maxReplicas ?? preset.max_replicas ?? config.scaling.max_replicas;
  if (maxReplicas < Math.max(1, minReplicas)) {
    const which = o.maxReplicas !== undefined ? 'max-replicas' : 'min-replicas';
    const value = String(which === 'max-replicas' ? maxReplicas : minReplicas);
    throw new InputError(
      which,
      value,
      `max-replicas >= max(1, min-replicas); got min ${minReplicas}, max ${maxReplicas}`,
    );
  }
  if (o.imageTag !== undefined && !isPinnedImageTag(o.imageTag)) {
    throw new InputError(
      'image-tag',
      o.imageTag,
      'a tag other than latest (letters, digits, . _ -) or sha256:<64 hex>',
    );
  }
  return {
    preset: presetName,
    name: config.name,
    gpu,
    gpuCount: preset.count ?? config.compute.count,
    spot: o.spot ?? preset.spot,
    minReplicas,
    maxReplicas,
    imageRepository: config.image.repository,
    imageTag: o.imageTag ?? config.image.tag,
    workshopHours: config.workshop_hours,
    healthPath: config.container.health_path,
    config,
  };
}

/** repository:tag, or repository@sha256:… for a digest. */
export function imageReference(repository: string, tag: string): string {
  return tag.startsWith('sha256:') ? `${repository}@${tag}` : `${repository}:${tag}`;
}

export function desiredScaling(d: DesiredState): ScalingOptions {
  const s = d.config.scaling;
  return {
    min_replica_count: d.minReplicas,
    max_replica_count: d.maxReplicas,
    scale_up_policy: { delay_seconds: s.scale_up_delay_seconds },
    scale_down_policy: { delay_seconds: s.scale_down_delay_seconds },
    queue_message_ttl_seconds: s.request_ttl_seconds,
    concurrent_requests_per_replica: s.concurrent_requests_per_replica,
    scaling_triggers: { queue_load: { threshold: s.queue_load } },
  };
}

/** The full deployment body for `image` (a pinned reference). */
export function desiredSpec(d: DesiredState, image: string): DeploymentSpec {
  const c = d.config.container;
  const env: EnvVar[] = Object.entries(c.env).map(([name, value]) =>
    typeof value === 'string'
      ? { name, value_or_reference_to_secret: value, type: 'plain' }
      : { name, value_or_reference_to_secret: value.secret, type: 'secret' },
  );
  const container: ContainerSpec = {
    image,
    exposed_port: c.port,
    healthcheck: { enabled: true, port: c.port, path: c.health_path },
    env,
    // A copy per deployment body: the config's mounts are never shared with a request.
    volume_mounts: c.volumes.map((v) => ({ ...v })),
  };
  if (c.command) container.entrypoint_overrides = { enabled: true, cmd: c.command };
  return {
    name: d.name,
    is_spot: d.spot,
    compute: { name: d.gpu, size: d.gpuCount },
    container_registry_settings: d.config.registry_credentials
      ? { is_private: true, credentials: { name: d.config.registry_credentials } }
      : { is_private: false, credentials: null },
    scaling: desiredScaling(d),
    containers: [container],
  };
}
