// Wire shapes of the Verda containers API (../shared/verda-api.md §2.1, §3), as requests send
// them. Responses are normalised into these by the client (src/serverless/normalize.ts).

export interface ScalingOptions {
  min_replica_count: number;
  max_replica_count: number;
  scale_up_policy: { delay_seconds: number };
  scale_down_policy: { delay_seconds: number };
  queue_message_ttl_seconds: number;
  concurrent_requests_per_replica: number;
  scaling_triggers: {
    queue_load: { threshold: number };
    cpu_utilization?: { enabled: boolean; threshold?: number };
    gpu_utilization?: { enabled: boolean; threshold?: number };
  };
}

export interface EnvVar {
  name: string;
  value_or_reference_to_secret: string;
  type: 'plain' | 'secret';
}

export type VolumeMount =
  | { type: 'scratch'; mount_path: string }
  | { type: 'secret'; mount_path: string; secret_name: string; file_names?: string[] }
  | { type: 'memory'; mount_path: string; size_in_mb: number }
  | { type: 'shared'; mount_path: string; volume_id: string };

export interface ContainerSpec {
  /** Omitted on create (the server names it); required on PATCH. */
  name?: string;
  image: string;
  exposed_port: number;
  healthcheck?: { enabled: boolean; port?: number; path?: string };
  entrypoint_overrides?: { enabled: boolean; entrypoint?: string[]; cmd?: string[] };
  env: EnvVar[];
  volume_mounts: VolumeMount[];
  autoupdate?: unknown;
  should_use_cached_image?: boolean;
}

export interface RegistrySettings {
  is_private: boolean;
  credentials: { name: string } | null;
}

/** The body of POST /container-deployments. */
export interface DeploymentSpec {
  name: string;
  is_spot: boolean;
  compute: { name: string; size: number };
  container_registry_settings: RegistrySettings;
  scaling: ScalingOptions;
  containers: ContainerSpec[];
}

/** A deployment as read back: the spec (image as a string) plus what the server adds. */
export interface LiveDeployment extends Omit<DeploymentSpec, 'scaling'> {
  endpoint_base_url: string;
  created_at?: string;
  /** Present when the server includes it (PY); otherwise read /scaling (GO). */
  scaling?: ScalingOptions;
}

export interface Replica {
  id: string;
  status: string;
  started_at?: string;
}

/** Compute names of /serverless-compute-resources (verda-api.md §6, CLI capture and older). */
export const knownComputeNames = [
  'A100 40GB',
  'A100 80GB',
  'B200',
  'B300',
  'H100',
  'H200',
  'L40S',
  'RTX 6000 Ada',
  'RTX PRO 6000',
  'RTX 4500 Ada',
  'General Compute',
  'CPU Node',
] as const;

export const deploymentNamePattern = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const envNamePattern = /^[A-Z_][A-Z0-9_]*$/;
