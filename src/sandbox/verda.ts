// The Verda emulator: an HTTP server on 127.0.0.1 that implements ../shared/verda-api.md strictly
// (OAuth tokens that expire, container deployments, scaling, status over emulated time, prices)
// plus a second server standing in for https://containers.datacrunch.io/<name>, where an emulated
// ComfyUI answers its health path only when the deployment is healthy and only with the inference
// key. Faults are injected by rule. Used by tests, the sandbox and benchmarks.
//
// Choices where the contract leaves room (documented for the client):
// - POST /container-deployments answers 201; GET bodies omit `scaling` (like GO) and `status`;
//   container `image` is an object {image, last_updated_at} unless `variants.imageAsString`.
// - A duplicate deployment name is a 400 invalid_request (the real code is undocumented).
// - A deployment with min 0 reports `healthy` with no replicas once its image is pulled; the first
//   inference request asks for a replica, which serves after `coldStartMs`. Until then the
//   endpoint answers 503 service_unavailable at once (the real one queues the request).
// - DELETE answers 202 at once; the deployment reports the unknown status `deleting` until it is
//   gone (404) after `deleteMs`. Replicas that are starting have the status `starting`.
// - Responses carry `Date` in emulated time, so clients measuring on the API clock see it.
// - Each replica runs a ComfyUI stand-in (verda-comfy.ts, verda-work.ts): POST /prompt is
//   accepted while the deployment serves, even before a replica is ready (the endpoint's queue
//   holds it); a ready replica takes one prompt at a time (renderMs, plus modelLoadMs on its
//   first); /history answers from the deployment's record of every prompt (as if routed to the
//   replica that ran it); /view serves an output only while the replica that wrote it lives.
//   Replicas follow the jobs in progress plus the queue at the queue-load threshold, peaked over
//   the scale-down delay; a replica that goes mid-job fails that job naming it.
//
// Not emulated: async inference (Prefer: respond-async, /status and /result), SSE streaming,
// job deployments, held (queued) synchronous requests, cpu/gpu utilisation triggers (validated,
// not acted on), concurrent_requests_per_replica and the request TTL (validated only), image
// pulls and registry logins (credentials only have to exist), ?projectId=, billing, and the
// staging quirks beyond accepting a form-encoded token request.
//
// Beside it, on the same server, auth and fault table: the instance API of
// ../shared/verda-instances-api.md (verda-instances.ts, verda-instance-routes.ts): instances
// ordered -> provisioning -> running on the emulated clock (delays in `instances.delays`), their
// actions, availability per (type, location, spot) from a capacity table, the catalogue with
// prices, volumes, SSH keys, startup scripts and the balance. With `instances.bootHost` (e.g.
// freshHostBooter() of verda-instance-boot.ts), provisioning boots a real host, and `running`
// waits for both the delay and the boot; its address becomes the instance's `ip`.
// Choices where that contract leaves room:
// - Every create (instances, volumes, keys, scripts) answers 202 with the id as plain text
//   (`instanceVariants`: 200/201, a quoted id or {id}). GET /sshkeys/{id} and /scripts/{id}
//   answer 1-element arrays; /sshkeys and /ssh-keys are the same collection.
// - A create without capacity is a 400 invalid_request "no capacity for <type> in <location>
//   (on-demand|spot)" (the real code is unknown; dstack maps any create error to no capacity).
//   A create takes one unit of capacity, a delete or hibernate gives it back; default unlimited.
// - PUT /instances tries every id: all failed -> the first error ({code, message}, 400); some
//   failed -> 207 with ActionResult[]; else 202 with ActionResult[]. Unknown id: 400
//   "Invalid instance id" (GET /instances/{id}: 404 with that message). Deleting a deleted or
//   hibernated instance: 400 forbidden_action. shutdown/force_shutdown need `running`, start
//   `offline`, hibernate `running` or `offline` (the contract's sources disagree).
// - Deleted and hibernated instances leave the list and answer GET by id as `discontinued`.
//   `volume_ids` of an instance lists its attached volumes other than the OS volume.
// - The OS volume is NVMe, 50 GB unless `os_volume` says otherwise. Volumes made by POST are
//   `ordered` for `volumeCreateMs`, then `detached`. Attach/detach/delete of an attached volume
//   need every instance it is on `offline`; only NVMe_Shared attaches to several instances.
//   Volume delete: body {is_permanent} or ?force=true; soft-deleted ones are in /volumes/trash.
// - shutdown keeps the booted host running (only the status says offline); delete, hibernate
//   and stop() stop it. A failed boot makes the instance `error`.
// - Not emulated: tags routes, price history, long-term periods, volume clone, quotas other
//   than the script limit, billing against the balance.
//
// The parts: verda-http.ts (the servers, the request log, the fault step), verda-auth.ts (OAuth),
// verda-routes.ts and verda-deployment-routes.ts (the management API), verda-inference.ts (the
// inference host), verda-deployments.ts and verda-state.ts (deployments over emulated time),
// verda-resources.ts (secrets and credentials), verda-validate.ts and verda-wire.ts (the contract),
// verda-instance-*.ts and verda-instances.ts (the instance API).
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { z } from 'zod';
import { OAuthTokens } from './verda-auth.js';
import { defaultCatalog, type ComputeModel } from './verda-catalog.js';
import { EmulatedClock } from './verda-clock.js';
import { DeploymentStore, type DeploymentState } from './verda-deployments.js';
import { FaultTable, type VerdaFault } from './verda-faults.js';
import {
  RequestLog,
  closeServer,
  hostHandler,
  listenOnLoopback,
  type Host,
  type HostRequest,
  type LoggedRequest,
  type Reply,
} from './verda-http.js';
import { inferenceRouter } from './verda-inference.js';
import type { InstanceVariants } from './verda-instance-routes.js';
import {
  InstanceStore,
  type InstanceState,
  type InstancesOptions,
  type ScriptRecord,
  type SshKeyRecord,
  type VolumeState,
} from './verda-instances.js';
import { NamedResources } from './verda-resources.js';
import { apiRouter } from './verda-routes.js';
import { defaultDelays, type VerdaDelays } from './verda-state.js';
import type { ValidationContext } from './verda-validate.js';

export type { VerdaFault } from './verda-faults.js';
export type { VerdaDelays } from './verda-state.js';
export type { LoggedRequest } from './verda-http.js';
export type { DeploymentState } from './verda-deployments.js';
export { EmulatedClock } from './verda-clock.js';
export type {
  BootRequest,
  BootedHost,
  CapacityRule,
  InstanceDelays,
  InstanceState,
  InstancesOptions,
  ScriptRecord,
  SshKeyRecord,
  VolumeState,
} from './verda-instances.js';

export interface VerdaEmulatorOptions {
  /** Access token lifetime in emulated seconds (default 3600). */
  tokenTtlSeconds?: number;
  /** Refresh token lifetime in emulated seconds (default 24 h). */
  refreshTtlSeconds?: number;
  /** Emulated ms per real ms (default 1; 0 freezes the clock). Ignored when `clock` is given. */
  timeScale?: number;
  /** Emulated ms added before each request is handled: deterministic time for child processes. */
  tickPerRequestMs?: number;
  clock?: EmulatedClock;
  delays?: Partial<VerdaDelays>;
  clientId?: string;
  clientSecret?: string;
  inferenceKey?: string;
  /** Generic secrets, file secrets and registry credentials that already exist. */
  secrets?: string[];
  fileSecrets?: string[];
  registryCredentials?: string[];
  catalog?: ComputeModel[];
  /** Documented response variants the client must tolerate. */
  variants?: { imageAsString?: boolean; includeScaling?: boolean; createStatus?: 200 | 201 };
  /** The instance API: boot hook, capacity, delays (verda-instances.ts). */
  instances?: InstancesOptions;
  /** Documented variants of the instance API's creates (default: 202, the id as plain text). */
  instanceVariants?: InstanceVariants;
}

export interface VerdaEmulator {
  /** Management API base, …/v1. */
  apiUrl: string;
  /** Inference host; a deployment's endpoint is `${inferenceBaseUrl}/${name}`. */
  inferenceBaseUrl: string;
  clientId: string;
  clientSecret: string;
  inferenceKey: string;
  clock: EmulatedClock;
  /** Moves emulated time forward. */
  advance(ms: number): void;
  now(): number;
  addFault(fault: VerdaFault): void;
  clearFaults(): void;
  requests(): LoggedRequest[];
  /** Write requests to the management API (POST/PATCH/PUT/DELETE), the token endpoint excluded. */
  writes(): LoggedRequest[];
  clearRequests(): void;
  deployments(): DeploymentState[];
  /** Queued (not in-progress) messages for a deployment: drives queue-load scaling. */
  setQueueLength(name: string, queued: number): void;
  /** Kills a replica now (else the first busy one); its job fails naming it. Returns its id. */
  killReplica(name: string, replicaId?: string): string | undefined;
  /** The replica that takes the n-th prompt (1-based) dies halfway through rendering it. */
  killReplicaMidJob(name: string, jobNumber: number): void;
  /** Revokes every access token (refresh tokens stay valid). */
  revokeTokens(): void;
  /** Every access and refresh token handed out so far (for tests that check they are masked). */
  issuedTokens(): string[];
  /** An access token got over HTTP with the client credentials, as a client would get it. */
  token(): Promise<string>;
  /** Instances, deleted ones included (`listed: false`). */
  instances(): InstanceState[];
  /** Volumes, deleted ones included (status `deleted`). */
  volumes(): VolumeState[];
  scripts(): ScriptRecord[];
  sshKeys(): SshKeyRecord[];
  /** Instances of this type that can still be created in this location (on-demand unless isSpot). */
  setCapacity(instanceType: string, location: string, count: number, isSpot?: boolean): void;
  /** Stops the servers and every host the boot hook booted. */
  stop(): Promise<void>;
}

/** What startVerdaEmulator has built, for the handle it returns. */
interface EmulatorParts extends Pick<
  VerdaEmulator,
  'apiUrl' | 'inferenceBaseUrl' | 'clientId' | 'clientSecret' | 'inferenceKey' | 'clock'
> {
  faults: FaultTable;
  log: RequestLog;
  tokens: OAuthTokens;
  deployments: DeploymentStore;
  instances: InstanceStore;
  servers: http.Server[];
}

const tokenResponse = z.object({ access_token: z.string() });

export async function startVerdaEmulator(opts: VerdaEmulatorOptions = {}): Promise<VerdaEmulator> {
  const clock = opts.clock ?? new EmulatedClock({ timeScale: opts.timeScale ?? 1 });
  const clientId = opts.clientId ?? `emu-client-${randomBytes(6).toString('hex')}`;
  const clientSecret = opts.clientSecret ?? `emu-secret-${randomBytes(16).toString('hex')}`;
  const inferenceKey = opts.inferenceKey ?? `dc_${randomBytes(20).toString('hex')}`;
  const catalog = opts.catalog ?? defaultCatalog;
  // Both ports are bound before any handler exists, so every part is built knowing its URLs.
  const apiServer = http.createServer();
  const inferenceServer = http.createServer();
  const apiUrl = `http://127.0.0.1:${await listenOnLoopback(apiServer)}/v1`;
  const inferenceBaseUrl = `http://127.0.0.1:${await listenOnLoopback(inferenceServer)}`;
  const faults = new FaultTable();
  const log = new RequestLog();
  const tokens = new OAuthTokens({
    clock,
    clientId,
    clientSecret,
    accessTtlSeconds: opts.tokenTtlSeconds ?? 3600,
    refreshTtlSeconds: opts.refreshTtlSeconds ?? 86_400,
  });
  const deployments = new DeploymentStore({
    clock,
    delays: { ...defaultDelays, ...opts.delays },
    inferenceBaseUrl,
    variants: {
      imageAsString: opts.variants?.imageAsString ?? false,
      includeScaling: opts.variants?.includeScaling ?? false,
    },
    stuckStatus: (name) => faults.stuckStatus(name),
  });
  const resources = new NamedResources(opts);
  const validation: ValidationContext = {
    catalog,
    secrets: resources.secrets,
    fileSecrets: resources.fileSecrets,
    registryCredentials: resources.registryCredentials,
  };
  const serve = (server: http.Server, host: Host, route: (r: HostRequest) => Reply) => {
    const tickPerRequestMs = opts.tickPerRequestMs ?? 0;
    const handle = hostHandler({ host, clock, tickPerRequestMs, faults, log, tokens, route });
    server.on('request', (req, res) => void handle(req, res));
  };
  const createStatus = opts.variants?.createStatus ?? 201;
  const instances = new InstanceStore(opts.instances);
  const instanceVariants = opts.instanceVariants ?? {};
  serve(
    apiServer,
    'api',
    apiRouter({
      clock,
      tokens,
      deployments,
      resources,
      catalog,
      validation,
      createStatus,
      instances,
      instanceVariants,
    }),
  );
  serve(inferenceServer, 'inference', inferenceRouter({ clock, deployments, inferenceKey }));
  return emulatorHandle({
    apiUrl,
    inferenceBaseUrl,
    clientId,
    clientSecret,
    inferenceKey,
    clock,
    faults,
    log,
    tokens,
    deployments,
    instances,
    servers: [apiServer, inferenceServer],
  });
}

function emulatorHandle(parts: EmulatorParts): VerdaEmulator {
  const { clock, faults, log, tokens, deployments, instances } = parts;
  return {
    apiUrl: parts.apiUrl,
    inferenceBaseUrl: parts.inferenceBaseUrl,
    clientId: parts.clientId,
    clientSecret: parts.clientSecret,
    inferenceKey: parts.inferenceKey,
    clock,
    advance: (ms) => clock.advance(ms),
    now: () => clock.now(),
    addFault: (fault) => faults.add(fault),
    clearFaults: () => faults.clear(),
    requests: () => log.all(),
    writes: () => log.writes(),
    clearRequests: () => log.clear(),
    deployments: () => deployments.all().map((dep) => deployments.snapshot(dep)),
    setQueueLength: (name, queued) => {
      deployments.get(name).setQueueLength(queued, clock.now());
    },
    killReplica: (name, replicaId) => deployments.killReplica(name, replicaId),
    killReplicaMidJob: (name, jobNumber) => deployments.get(name).work.killMidJob(jobNumber),
    revokeTokens: () => tokens.revokeAll(),
    issuedTokens: () => tokens.issued(),
    token: async () => {
      const res = await fetch(`${parts.apiUrl}/oauth2/token`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({
          grant_type: 'client_credentials',
          client_id: parts.clientId,
          client_secret: parts.clientSecret,
        }),
      });
      return tokenResponse.parse(await res.json()).access_token;
    },
    instances: () => instances.instanceStates(clock.now()),
    volumes: () => instances.volumeStates(clock.now()),
    scripts: () => instances.listScripts(),
    sshKeys: () => instances.listKeys(),
    setCapacity: (type, location, count, isSpot) =>
      instances.setCapacity(type, location, count, isSpot),
    stop: async () => {
      await Promise.all(parts.servers.map(closeServer));
      await instances.stop();
    },
  };
}
