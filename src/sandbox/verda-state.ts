// One emulated container deployment: its spec, its lifecycle on the emulated clock (status,
// replicas following min/max and queue load, cold starts), its work (verda-work.ts) and its
// response shapes.
import { WorkQueue, type RenderDelays, type ReplicaWork } from './verda-work.js';
import type { ContainerSpec, DeploymentSpec, ScalingOptions } from './verda-wire.js';

export interface VerdaDelays extends RenderDelays {
  /** Time in `initializing` after a create, resume or restart. */
  initializingMs: number;
  /** Time in `image_pulling` after a create or an image change. */
  imagePullingMs: number;
  /** From a replica being asked for (load, min raised) to it serving. */
  coldStartMs: number;
  /** From DELETE to the deployment being gone (404). */
  deleteMs: number;
}

export const defaultDelays: VerdaDelays = {
  initializingMs: 2_000,
  imagePullingMs: 8_000,
  coldStartMs: 20_000,
  deleteMs: 3_000,
  renderMs: 4_000,
  modelLoadMs: 6_000,
};

export interface Replica extends ReplicaWork {
  startedAt: number;
}

type RolloutKind = 'create' | 'update' | 'resume';

interface Rollout {
  kind: RolloutKind;
  startedAt: number;
  pullImage: boolean;
  replicasCreated: boolean;
}

/** A replica serves once it is ready; until then it is `starting` (the emulator's own word). */
export function replicaStatus(replica: Replica, now: number): 'running' | 'starting' {
  return replica.readyAt <= now ? 'running' : 'starting';
}

let replicaSeq = 0;

export class EmulatedDeployment {
  readonly createdAt: number;
  imageUpdatedAt: number;
  paused = false;
  deletingAt: number | undefined;
  /** A status the deployment sticks in after initializing (fault injection). */
  stuckStatus: string | undefined;
  /** Messages queued from outside (tests' setQueueLength), besides the prompts in `work`. */
  private externalQueued = 0;
  /** Replicas the load asked for over time; scale-down looks back over the down delay. */
  private demandHistory: { at: number; replicas: number }[] = [];
  purges = 0;
  lastInferenceAt: number | undefined;
  replicas: Replica[] = [];
  readonly work: WorkQueue;
  private rollout: Rollout;

  constructor(
    public spec: DeploymentSpec,
    now: number,
    private readonly delays: VerdaDelays,
  ) {
    this.createdAt = now;
    this.imageUpdatedAt = now;
    this.rollout = { kind: 'create', startedAt: now, pullImage: true, replicasCreated: false };
    this.work = new WorkQueue(delays);
  }

  get name(): string {
    return this.spec.name;
  }

  /** Queued (not in-progress) messages: the outside ones and the prompts waiting for a replica. */
  get queueLength(): number {
    return this.externalQueued + this.work.queued().length;
  }

  setQueueLength(queued: number, now: number): void {
    this.reconcile(now);
    this.externalQueued = queued;
    this.noteDemand(now);
  }

  /** Replicas the load asks for: one per job in progress, and the queue at the threshold. */
  private demand(): number {
    const threshold = this.spec.scaling.scaling_triggers.queue_load.threshold;
    return this.work.running().length + Math.ceil(this.queueLength / threshold);
  }

  private noteDemand(at: number): void {
    const replicas = this.demand();
    if (this.demandHistory.at(-1)?.replicas !== replicas) this.demandHistory.push({ at, replicas });
  }

  /** Removes replicas (killed, scaled down); a job they were running is failed, naming them. */
  removeReplicas(ids: string[], now: number, why: string): void {
    const gone = new Set(ids);
    for (let i = this.replicas.length - 1; i >= 0; i--)
      if (gone.has(this.replicas[i]?.id ?? '')) this.replicas.splice(i, 1);
    this.work.failOrphans(this.replicas, now, why);
    this.noteDemand(now);
  }

  get scaling(): ScalingOptions {
    return this.spec.scaling;
  }

  /**
   * Starts a new rollout: after an update (the image pulled again when it changed) or a resume.
   * An update of a deployment that never came up restarts its first rollout instead.
   */
  restartRollout(kind: RolloutKind, now: number, pullImage: boolean): void {
    this.reconcile(now);
    if (kind === 'update' && !this.rollout.replicasCreated) {
      this.rollout = {
        ...this.rollout,
        startedAt: now,
        pullImage: pullImage || this.rollout.pullImage,
      };
      return;
    }
    this.rollout = { kind, startedAt: now, pullImage, replicasCreated: kind === 'update' };
    if (kind !== 'update') this.replicas = [];
  }

  private rolloutDoneAt(): number {
    const pull = this.rollout.pullImage ? this.delays.imagePullingMs : 0;
    return this.rollout.startedAt + this.delays.initializingMs + pull;
  }

  status(now: number): string {
    if (this.deletingAt !== undefined) return 'deleting';
    if (this.paused) return 'paused';
    // An update rolls out while the old replicas keep serving.
    if (this.rollout.kind === 'update')
      return now < this.rolloutDoneAt() ? 'version_updating' : 'healthy';
    if (now - this.rollout.startedAt < this.delays.initializingMs) return 'initializing';
    if (this.stuckStatus) return this.stuckStatus;
    if (now < this.rolloutDoneAt()) return 'image_pulling';
    return 'healthy';
  }

  /** Replicas that can serve now: a healthy (or updating) deployment whose replica is ready. */
  readyReplicas(now: number): Replica[] {
    this.reconcile(now);
    return this.replicas.filter((r) => r.readyAt <= now);
  }

  /**
   * Brings the replica set up to date with min/max, queue load and recent inference traffic.
   * Demand is the peak over the last scale-down delay, so replicas leave only after it.
   */
  reconcile(now: number): void {
    const status = this.status(now);
    if (status !== 'healthy' && status !== 'version_updating') {
      if (this.replicas.length)
        this.removeReplicas(
          this.replicas.map((r) => r.id),
          now,
          `stopped mid-job (deployment ${status})`,
        );
      return;
    }
    const s = this.spec.scaling;
    if (!this.rollout.replicasCreated && status === 'healthy') {
      // Replicas for the minimum come up with the rollout itself.
      const readyAt = this.rolloutDoneAt();
      this.replicas = Array.from({ length: s.min_replica_count }, () =>
        newReplica(readyAt, readyAt),
      );
      this.rollout.replicasCreated = true;
    }
    // Work done since the last look, event by event, before the replica set changes.
    this.work.settle(now, this.replicas, {
      remove: (id) => this.removeReplicas([id], now, 'died mid-job (killed)'),
      changed: (at) => this.noteDemand(at),
    });
    this.noteDemand(now);
    const since = now - s.scale_down_policy.delay_seconds * 1000;
    const fromLoad = this.peakDemandSince(since);
    const recent = this.lastInferenceAt !== undefined && this.lastInferenceAt > since ? 1 : 0;
    const desired = Math.min(s.max_replica_count, Math.max(s.min_replica_count, fromLoad, recent));
    if (this.replicas.length > desired) {
      // Idle replicas leave first; a busy one only when max fell below the work in progress.
      const byIdleFirst = [...this.replicas].sort(
        (a, b) => Number(a.busyWith !== undefined) - Number(b.busyWith !== undefined),
      );
      const leaving = byIdleFirst.slice(0, this.replicas.length - desired).map((r) => r.id);
      this.removeReplicas(leaving, now, 'was scaled down mid-job');
    }
    const readyAt = now + s.scale_up_policy.delay_seconds * 1000 + this.delays.coldStartMs;
    while (this.replicas.length < desired) this.replicas.push(newReplica(now, readyAt));
  }

  private peakDemandSince(since: number): number {
    const h = this.demandHistory;
    // Drop entries superseded before the window opened.
    while (h.length > 1 && (h[1]?.at ?? Infinity) <= since) h.shift();
    return Math.max(0, ...h.map((e) => e.replicas));
  }

  /** The Deployment body: image as an object; scaling only when asked (GO omits it). */
  toResponse(
    endpointBaseUrl: string,
    opts: { imageAsString: boolean; includeScaling: boolean },
  ): Record<string, unknown> {
    const body: Record<string, unknown> = {
      name: this.spec.name,
      is_spot: this.spec.is_spot,
      compute: this.spec.compute,
      container_registry_settings: this.spec.container_registry_settings,
      containers: this.spec.containers.map((c) =>
        containerResponse(c, this.imageUpdatedAt, opts.imageAsString),
      ),
      endpoint_base_url: endpointBaseUrl,
      created_at: new Date(this.createdAt).toISOString(),
    };
    if (opts.includeScaling) body.scaling = this.spec.scaling;
    return body;
  }
}

function newReplica(startedAt: number, readyAt: number): Replica {
  replicaSeq += 1;
  return {
    id: `replica-${replicaSeq.toString(36).padStart(6, '0')}`,
    startedAt,
    readyAt,
    freeAt: readyAt,
    busyWith: undefined,
    jobsDone: 0,
    files: new Map(),
  };
}

function containerResponse(
  c: ContainerSpec,
  imageUpdatedAt: number,
  imageAsString: boolean,
): Record<string, unknown> {
  return {
    ...c,
    image: imageAsString
      ? c.image
      : { image: c.image, last_updated_at: new Date(imageUpdatedAt).toISOString() },
  };
}

/** The server's container name, as "nginx-0" comes from the image nginx. */
export function containerName(image: string, index: number): string {
  const base =
    image
      .replace(/[@:].*$/, '')
      .split('/')
      .pop() ?? 'container';
  const slug =
    base
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'container';
  return `${slug}-${index}`;
}
