// The Verda emulator's deployments by name: creation, lookup (a deployment whose async delete has
// run its course is gone), their response bodies and the snapshots tests read.
import type { EmulatedClock } from './verda-clock.js';
import {
  EmulatedDeployment,
  containerName,
  replicaStatus,
  type VerdaDelays,
} from './verda-state.js';
import { invalid, notFound, type DeploymentSpec, type ScalingOptions } from './verda-wire.js';

/** A deployment as tests see it (VerdaEmulator.deployments()). */
export interface DeploymentState {
  name: string;
  status: string;
  paused: boolean;
  isSpot: boolean;
  compute: { name: string; size: number };
  image: string;
  containerNames: string[];
  scaling: ScalingOptions;
  replicas: { id: string; status: string }[];
  queueLength: number;
  purges: number;
  /** Every ComfyUI prompt submitted, in order, with where it ran and how it ended. */
  jobs: { id: string; status: string; replica?: string; error?: string }[];
}

/** Documented variants of the Deployment body that clients must tolerate (§2.1). */
export interface ResponseVariants {
  imageAsString: boolean;
  includeScaling: boolean;
}

export interface DeploymentStoreOptions {
  clock: EmulatedClock;
  delays: VerdaDelays;
  /** Where a deployment's endpoint lives: `${inferenceBaseUrl}/${name}`. */
  inferenceBaseUrl: string;
  variants: ResponseVariants;
  /** The status a deployment is stuck in by a fault, if any. */
  stuckStatus: (name: string) => string | undefined;
}

export class DeploymentStore {
  private readonly byName = new Map<string, EmulatedDeployment>();

  constructor(private readonly opts: DeploymentStoreOptions) {}

  /** The deployment, unless absent or deleted; the delete is carried out here, lazily. */
  find(name: string): EmulatedDeployment | undefined {
    const dep = this.byName.get(name);
    if (
      dep?.deletingAt !== undefined &&
      this.opts.clock.now() >= dep.deletingAt + this.opts.delays.deleteMs
    ) {
      this.byName.delete(name);
      return undefined;
    }
    // Faults can be added and cleared at any time, so they are read on every lookup.
    if (dep) dep.stuckStatus = this.opts.stuckStatus(name);
    return dep;
  }

  /** The deployment, or a 404. */
  get(name: string): EmulatedDeployment {
    const dep = this.find(name);
    if (!dep) throw notFound(`container deployment ${name} not found`);
    return dep;
  }

  all(): EmulatedDeployment[] {
    return [...this.byName.keys()].flatMap((name) => this.find(name) ?? []);
  }

  /** A validated spec becomes a deployment; the server names its containers (gotcha 5). */
  create(spec: DeploymentSpec, now: number): EmulatedDeployment {
    if (this.find(spec.name))
      throw invalid(`a container deployment named ${spec.name} already exists`);
    spec.containers.forEach((c, i) => (c.name = containerName(c.image, i)));
    const dep = new EmulatedDeployment(spec, now, this.opts.delays);
    this.byName.set(spec.name, dep);
    return dep;
  }

  /** The Deployment body of GET, POST and PATCH. */
  body(dep: EmulatedDeployment): Record<string, unknown> {
    return dep.toResponse(`${this.opts.inferenceBaseUrl}/${dep.name}`, this.opts.variants);
  }

  snapshot(dep: EmulatedDeployment): DeploymentState {
    const now = this.opts.clock.now();
    dep.reconcile(now);
    return {
      name: dep.name,
      status: dep.status(now),
      paused: dep.paused,
      isSpot: dep.spec.is_spot,
      compute: dep.spec.compute,
      image: dep.spec.containers[0]?.image ?? '',
      containerNames: dep.spec.containers.map((c) => c.name ?? ''),
      scaling: dep.scaling,
      replicas: dep.replicas.map((r) => ({
        id: r.id,
        status: replicaStatus(r, now),
      })),
      queueLength: dep.queueLength,
      purges: dep.purges,
      jobs: dep.work.jobs.map((j) => ({
        id: j.id,
        status: j.status,
        ...(j.replicaId === undefined ? {} : { replica: j.replicaId }),
        ...(j.error === undefined ? {} : { error: j.error }),
      })),
    };
  }

  /**
   * Kills a replica now (the one named, else the first busy one, else the first): its job fails
   * naming it. Returns its id, or undefined when the deployment has no replica.
   */
  killReplica(name: string, replicaId?: string): string | undefined {
    const dep = this.get(name);
    const now = this.opts.clock.now();
    dep.reconcile(now);
    const victim =
      replicaId ?? (dep.replicas.find((r) => r.busyWith !== undefined) ?? dep.replicas[0])?.id;
    if (victim === undefined || !dep.replicas.some((r) => r.id === victim)) return undefined;
    dep.removeReplicas([victim], now, 'died mid-job (killed)');
    return victim;
  }
}
