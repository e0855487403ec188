// The work of an emulated deployment: ComfyUI prompts that wait in the deployment's queue, are
// taken one at a time by a ready replica (concurrent_requests_per_replica is validated, not acted
// on), render for a set time on the emulated clock (a replica's first job also loads its models)
// and leave output files on that replica. A replica that goes away mid-job (killed, scaled down,
// paused) fails its job with an error naming it: a job never vanishes.
import { createHash } from 'node:crypto';

export interface RenderDelays {
  /** How long one prompt renders on a replica. */
  renderMs: number;
  /** Added to the first prompt a replica renders: its models load. */
  modelLoadMs: number;
}

/** A ComfyUI API-format workflow: node id → {class_type, inputs}. */
export type ComfyPrompt = Record<string, { class_type: string; inputs: Record<string, unknown> }>;

export interface OutputFile {
  filename: string;
  subfolder: string;
  type: 'output';
}

export type JobStatus = 'queued' | 'running' | 'success' | 'error';

export interface Job {
  id: string;
  /** ComfyUI's queue number, counting from 0 per deployment. */
  number: number;
  prompt: ComfyPrompt;
  submittedAt: number;
  status: JobStatus;
  replicaId?: string;
  startedAt?: number;
  /** When a running job will finish (its render time from startedAt). */
  endsAt?: number;
  finishedAt?: number;
  /** Why it failed: names the replica it was on. */
  error?: string;
  /** Node id → files it wrote (success only). */
  outputs: Record<string, { images: OutputFile[] }>;
}

/** The work-related state of one replica. */
export interface ReplicaWork {
  id: string;
  readyAt: number;
  /** When the replica last finished a job (or became ready): it takes work from then. */
  freeAt: number;
  busyWith: string | undefined;
  jobsDone: number;
  /** Output files it holds, by filename; they go with it. */
  files: Map<string, Buffer>;
  /** A death scheduled by killReplicaMidJob. */
  diesAt?: number;
}

/** Output node classes whose files ComfyUI returns under `images`, with their extension. */
const outputClasses: Record<string, string> = {
  SaveImage: 'png',
  SaveAnimatedWEBP: 'webp',
  SaveAnimatedPNG: 'png',
  SaveVideo: 'mp4',
  VHS_VideoCombine: 'mp4',
};

export function isOutputNode(classType: string): boolean {
  return classType in outputClasses;
}

/** JSON with sorted keys: the same workflow hashes the same whatever its key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object')
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(value) ?? 'null';
}

/**
 * The bytes an output node of this prompt writes: deterministic, so a test can check what /view
 * served by sha256 without trusting the emulator's word for it.
 */
export function emulatedOutputBytes(prompt: ComfyPrompt, nodeId: string): Buffer {
  const digest = createHash('sha256').update(canonical(prompt)).digest('hex');
  const node = prompt[nodeId];
  const latent = Object.values(prompt).find((n) => n.class_type === 'EmptyLatentImage')?.inputs;
  const size = latent ? `${String(latent.width)}x${String(latent.height)}` : 'unknown';
  return Buffer.from(
    `comfyui-emulator output\nprompt sha256 ${digest}\nnode ${nodeId} ${node?.class_type ?? '?'}\nframe ${size}\n`,
  );
}

/** ComfyUI keeps a subfolder in filename_prefix; the emulator keeps a safe file name only. */
function outputPrefix(inputs: Record<string, unknown>): string {
  const raw = typeof inputs.filename_prefix === 'string' ? inputs.filename_prefix : 'ComfyUI';
  return raw.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 64) || 'ComfyUI';
}

let jobSeq = 0;

/** A prompt id shaped like ComfyUI's (a UUID), unique in this process. */
function promptId(): string {
  jobSeq += 1;
  const hex = createHash('sha256').update(`job-${jobSeq}-${process.pid}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

export interface SettleHooks {
  /** Takes a replica out of the live set (in place: settle goes on with the same array). */
  remove(id: string): void;
  /** Called after the events at `at` were played: the demand may have changed. */
  changed(at: number): void;
}

export class WorkQueue {
  readonly jobs: Job[] = [];
  private readonly byId = new Map<string, Job>();
  /** Job numbers (1-based, in submission order) whose replica dies halfway through them. */
  private readonly doomed = new Set<number>();

  constructor(private readonly delays: RenderDelays) {}

  submit(prompt: ComfyPrompt, now: number): Job {
    const job: Job = {
      id: promptId(),
      number: this.jobs.length,
      prompt,
      submittedAt: now,
      status: 'queued',
      outputs: {},
    };
    this.jobs.push(job);
    this.byId.set(job.id, job);
    return job;
  }

  get(id: string): Job | undefined {
    return this.byId.get(id);
  }

  queued(): Job[] {
    return this.jobs.filter((j) => j.status === 'queued');
  }

  running(): Job[] {
    return this.jobs.filter((j) => j.status === 'running');
  }

  /** The replica that takes the n-th job submitted (1-based) dies halfway through it. */
  killMidJob(jobNumber: number): void {
    this.doomed.add(jobNumber);
  }

  /** Drops the queued jobs (purge-queue); each is reported failed, not forgotten. */
  purge(now: number): void {
    for (const job of this.queued()) this.fail(job, now, 'purged from the queue before it ran');
  }

  /**
   * Plays every event up to `now` in time order: jobs finishing, replicas dying, queued jobs
   * taken by free ready replicas. `replicas` is the live set; a replica removed from it is gone.
   */
  settle(now: number, replicas: ReplicaWork[], hooks: SettleHooks): void {
    this.failOrphans(replicas, now);
    for (;;) {
      const at = this.nextEvent(now, replicas);
      if (at === undefined) return;
      for (const job of this.running())
        if ((job.endsAt ?? Infinity) <= at) this.finish(job, replicas);
      for (const r of replicas.filter((x) => (x.diesAt ?? Infinity) <= at)) {
        const job = r.busyWith === undefined ? undefined : this.byId.get(r.busyWith);
        if (job) this.fail(job, at, `replica ${r.id} died mid-job (killed)`);
        hooks.remove(r.id);
      }
      this.assign(at, replicas);
      hooks.changed(at);
    }
  }

  /** A replica that disappeared outside settle (killed, scaled down, paused) fails its job. */
  failOrphans(replicas: ReplicaWork[], now: number, why = 'was stopped mid-job'): void {
    const live = new Set(replicas.map((r) => r.id));
    for (const job of this.running())
      if (job.replicaId !== undefined && !live.has(job.replicaId))
        this.fail(job, now, `replica ${job.replicaId} ${why}`);
  }

  private nextEvent(now: number, replicas: ReplicaWork[]): number | undefined {
    const times: number[] = [];
    for (const job of this.running()) if (job.endsAt !== undefined) times.push(job.endsAt);
    for (const r of replicas) if (r.diesAt !== undefined) times.push(r.diesAt);
    const first = this.queued()[0];
    if (first)
      for (const r of replicas)
        if (r.busyWith === undefined) times.push(Math.max(r.readyAt, r.freeAt, first.submittedAt));
    const at = Math.min(...times);
    return at <= now ? at : undefined;
  }

  private finish(job: Job, replicas: ReplicaWork[]): void {
    const replica = replicas.find((r) => r.id === job.replicaId);
    const at = job.endsAt ?? 0;
    if (!replica) return this.fail(job, at, `replica ${job.replicaId ?? '?'} was stopped mid-job`);
    for (const [nodeId, node] of Object.entries(job.prompt)) {
      const ext = outputClasses[node.class_type];
      if (ext === undefined) continue;
      const filename = `${outputPrefix(node.inputs)}_${String(replica.files.size + 1).padStart(5, '0')}_.${ext}`;
      replica.files.set(filename, emulatedOutputBytes(job.prompt, nodeId));
      job.outputs[nodeId] = { images: [{ filename, subfolder: '', type: 'output' }] };
    }
    job.status = 'success';
    job.finishedAt = at;
    replica.busyWith = undefined;
    replica.freeAt = at;
    replica.jobsDone += 1;
  }

  private fail(job: Job, at: number, error: string): void {
    job.status = 'error';
    job.error = error;
    job.finishedAt = at;
    delete job.endsAt;
  }

  /** Queued jobs, oldest first, go to replicas that are ready and free by `at`. */
  private assign(at: number, replicas: ReplicaWork[]): void {
    for (const r of replicas) {
      const job = this.queued()[0];
      if (!job) return;
      if (r.busyWith !== undefined || Math.max(r.readyAt, r.freeAt, job.submittedAt) > at) continue;
      const renderMs = this.delays.renderMs + (r.jobsDone === 0 ? this.delays.modelLoadMs : 0);
      job.status = 'running';
      job.replicaId = r.id;
      job.startedAt = at;
      job.endsAt = at + renderMs;
      r.busyWith = job.id;
      if (this.doomed.delete(job.number + 1)) r.diesAt = at + Math.floor(renderMs / 2);
    }
  }
}
