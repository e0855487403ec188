// The Verda containers API as the emulator reads it, written from ../shared/verda-api.md alone:
// request shapes (§2.1, §3), naming rules (gotchas 1 and 10) and the error body (§5). The client
// has its own copy in src/serverless; the emulator never borrows it, or a mistake there would
// be agreed with here instead of caught.

/** Deployment names (gotcha 1, from the CLI): DNS-label style, immutable. */
export const deploymentNamePattern = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const deploymentNameMaxLength = 63;

/** Environment variable names as the CLI enforces them (gotcha 10). */
export const envNamePattern = /^[A-Z_][A-Z0-9_]*$/;

/** §3. */
export interface ScalingOptions {
  min_replica_count: number;
  max_replica_count: number;
  scale_up_policy: { delay_seconds: number };
  scale_down_policy: { delay_seconds: number };
  queue_message_ttl_seconds: number;
  concurrent_requests_per_replica: number;
  scaling_triggers: {
    queue_load: { threshold: number };
    cpu_utilization?: UtilizationTrigger;
    gpu_utilization?: UtilizationTrigger;
  };
}

export interface UtilizationTrigger {
  enabled: boolean;
  /** Percent, 1..100. */
  threshold?: number;
}

/** A `secret` variable's value is the name of a generic secret. */
export interface EnvVar {
  name: string;
  value_or_reference_to_secret: string;
  type: 'plain' | 'secret';
}

export type VolumeMount =
  | { type: 'scratch'; mount_path: string }
  | {
      type: 'secret';
      mount_path: string;
      secret_name: string;
      file_names?: string[];
    }
  | { type: 'memory'; mount_path: string; size_in_mb: number }
  | { type: 'shared'; mount_path: string; volume_id: string };

export interface Healthcheck {
  enabled: boolean;
  port?: number;
  path?: string;
}

export interface EntrypointOverrides {
  enabled: boolean;
  entrypoint?: string[];
  cmd?: string[];
}

/** A container as a request sends it: `image` is a string (responses make it an object). */
export interface ContainerSpec {
  /** Omitted on create (the server names it); required on PATCH. */
  name?: string;
  image: string;
  exposed_port: number;
  healthcheck?: Healthcheck;
  entrypoint_overrides?: EntrypointOverrides;
  env: EnvVar[];
  volume_mounts: VolumeMount[];
  /** GO only; kept as sent, since the emulator pulls no images. */
  autoupdate?: unknown;
  should_use_cached_image?: boolean;
}

export interface RegistrySettings {
  is_private: boolean;
  credentials: { name: string } | null;
}

export interface ComputeSpec {
  name: string;
  size: number;
}

/** The body of POST /container-deployments, normalised (defaults filled in). */
export interface DeploymentSpec {
  name: string;
  is_spot: boolean;
  compute: ComputeSpec;
  container_registry_settings: RegistrySettings;
  scaling: ScalingOptions;
  containers: ContainerSpec[];
}

/** An error answered with the documented body {code, message}. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const invalid = (message: string): ApiError => new ApiError(400, 'invalid_request', message);

export const notFound = (message: string): ApiError => new ApiError(404, 'not_found', message);

export const unauthorized = (message: string): ApiError =>
  new ApiError(401, 'unauthorized_request', message);
