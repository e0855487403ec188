// Small valid bodies for the Verda API, shared by the emulator's defaults, its tests and the
// client's tests, so the shapes are written once.
import type { ContainerSpec, DeploymentSpec, ScalingOptions } from './verda-wire.js';

/** The CLI's defaults (verda-api.md §3): up 0 s, down 300 s, TTL 300 s, 1 per replica, queue load 1. */
export function exampleScaling(min = 0, max = 1): ScalingOptions {
  return {
    min_replica_count: min,
    max_replica_count: max,
    scale_up_policy: { delay_seconds: 0 },
    scale_down_policy: { delay_seconds: 300 },
    queue_message_ttl_seconds: 300,
    concurrent_requests_per_replica: 1,
    scaling_triggers: { queue_load: { threshold: 1 } },
  };
}

/** A public-image ComfyUI worker deployment on one H100, scaling 0..2. */
export function exampleDeployment(
  name = 'example',
  overrides: Partial<DeploymentSpec> = {},
  container: Partial<ContainerSpec> = {},
): DeploymentSpec {
  return {
    name,
    is_spot: false,
    compute: { name: 'H100', size: 1 },
    container_registry_settings: { is_private: false, credentials: null },
    scaling: exampleScaling(0, 2),
    containers: [
      {
        image: 'ghcr.io/ahelme/comfyui-worker:v1',
        exposed_port: 8188,
        healthcheck: { enabled: true, port: 8188, path: '/health' },
        env: [],
        volume_mounts: [],
        ...container,
      },
    ],
    ...overrides,
  };
}
