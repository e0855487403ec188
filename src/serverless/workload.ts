// Real jobs through the endpoint: the warm-up (one small workflow: a job rendered is what
// "ready" means for a workshop) and the load test (N at once, the seed's 15 by default, with the
// replica count sampled from the API while they run). A job counts as done only when its output
// file is fetched with /view.
import { errorMessage } from '../lib/errors.js';
import { formatDuration } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';
import type { VerdaClient } from './client.js';
import { withSeedOffset, type ComfyEndpoint, type Workflow } from './comfy.js';
import { percentile, type ReplicaSample } from './stats.js';

export interface JobOptions {
  endpoint: ComfyEndpoint;
  logger: Logger;
  /** How long one job may take, from its submission to its output. */
  timeoutMs: number;
  pollMs: number;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
}

export interface JobOutcome {
  /** 1-based, in submission order. */
  index: number;
  promptId?: string;
  ok: boolean;
  /** When the endpoint accepted it (epoch ms, API clock when dated). */
  submittedAt?: number;
  /** When its output was fetched. */
  outputAt?: number;
  /** When the worker began and finished it (ComfyUI's own timestamps), when it says. */
  startedAt?: number;
  finishedAt?: number;
  latencyMs?: number;
  error?: string;
  output?: { filename: string; bytes: number; sha256: string };
  /** Whether every time above came from the endpoint's Date header. */
  serverClock: boolean;
}

/** Submits one workflow and follows it to its output file, or to why it has none. */
export async function runJob(
  o: JobOptions,
  workflow: Workflow,
  index: number,
): Promise<JobOutcome> {
  const outcome: JobOutcome = { index, ok: false, serverClock: true };
  const deadline = o.now() + o.timeoutMs;
  try {
    const submitted = await o.endpoint.submit(workflow, o.timeoutMs);
    outcome.promptId = submitted.value;
    outcome.submittedAt = submitted.at;
    outcome.serverClock &&= submitted.fromServerClock;
    let poll = o.pollMs;
    let lastProblem = '';
    for (;;) {
      if (o.now() >= deadline) {
        outcome.error = `no result within ${formatDuration(o.timeoutMs)}${lastProblem ? ` (last: ${lastProblem})` : ' (still queued or running)'}`;
        return outcome;
      }
      await o.sleep(Math.min(poll, Math.max(0, deadline - o.now())));
      poll = Math.min(poll * 1.5, o.pollMs * 4);
      let seen;
      try {
        seen = await o.endpoint.state(submitted.value);
      } catch (err) {
        // A gateway hiccup is not the job's failure: noted, and polled again.
        lastProblem = errorMessage(err);
        o.logger.debug(`job ${index}: ${lastProblem}`);
        continue;
      }
      const state = seen.value;
      if (state.state === 'pending') continue;
      if (state.state === 'error') {
        outcome.error = state.message;
        outcome.outputAt = seen.at;
        return outcome;
      }
      if (state.startedAt !== undefined) outcome.startedAt = state.startedAt;
      if (state.finishedAt !== undefined) outcome.finishedAt = state.finishedAt;
      const file = state.files[0];
      if (!file) {
        outcome.error = 'finished without an output file (does the workflow save one?)';
        return outcome;
      }
      const viewed = await o.endpoint.view(file);
      outcome.output = { filename: file.filename, ...viewed.value };
      outcome.outputAt = viewed.at;
      outcome.serverClock &&= viewed.fromServerClock;
      outcome.latencyMs = Math.max(0, viewed.at - submitted.at);
      outcome.ok = true;
      return outcome;
    }
  } catch (err) {
    outcome.error = errorMessage(err);
    return outcome;
  }
}

/** The seed's cold-start target (Phase 13: "optimize if >30 seconds"). */
export const COLD_START_TARGET_SECONDS = 30;

export interface Phase {
  name: string;
  ms: number;
}

/**
 * Where a cold start went, from what the API and the endpoint showed: pull (first write until
 * the deployment is healthy: initializing and the image pull), start (until the endpoint's
 * health path answers: a replica boots), queue (the warm-up waiting for a worker) and first job
 * (the worker running it: its models load, then it renders; ComfyUI's API does not tell the two
 * apart), and fetching the output. Phases that were not seen are left out.
 */
export function coldStartPhases(p: {
  from: number;
  healthyAt?: number;
  readyAt?: number;
  job?: JobOutcome;
}): Phase[] {
  const phases: Phase[] = [];
  let mark = p.from;
  const add = (name: string, at: number | undefined) => {
    if (at === undefined || at < mark) return;
    phases.push({ name, ms: at - mark });
    mark = at;
  };
  add('pull', p.healthyAt);
  add('start', p.readyAt);
  const job = p.job;
  if (job) {
    add('queue', job.startedAt);
    add(
      job.startedAt === undefined
        ? 'first job (queue, model load, render)'
        : 'first job (model load + render)',
      job.finishedAt ?? job.outputAt,
    );
    if (job.finishedAt !== undefined) add('output fetch', job.outputAt);
  }
  return phases;
}

/** The phase that took longest, for the warning. */
export function slowestPhase(phases: Phase[]): Phase | undefined {
  return phases.reduce<Phase | undefined>((a, b) => (a && a.ms >= b.ms ? a : b), undefined);
}

// ---- load test -------------------------------------------------------------------------------

export interface LoadTestOptions extends JobOptions {
  client: VerdaClient;
  name: string;
  workflow: Workflow;
  jobs: number;
}

export interface LoadTestResult {
  jobs: JobOutcome[];
  failed: JobOutcome[];
  p50Ms?: number;
  p95Ms?: number;
  maxMs?: number;
  samples: ReplicaSample[];
  peakReplicas: number;
}

/**
 * Submits `jobs` copies of the workflow at once (seeds moved so each renders), follows each to
 * its output, and samples /replicas until the last one is done.
 */
export async function runLoadTest(o: LoadTestOptions): Promise<LoadTestResult> {
  const samples: ReplicaSample[] = [];
  const localStart = o.now();
  const serverStart = o.client.lastServerDate;
  let running = true;
  const sample = async () => {
    try {
      const replicas = await o.client.getReplicas(o.name);
      const serverNow = o.client.lastServerDate;
      samples.push({
        atMs:
          serverStart !== undefined && serverNow !== undefined
            ? serverNow - serverStart
            : o.now() - localStart,
        total: replicas.length,
        running: replicas.filter((r) => r.status === 'running').length,
      });
    } catch (err) {
      o.logger.warn(`could not list replicas: ${errorMessage(err)}`);
    }
  };
  const sampler = (async () => {
    while (running) {
      await sample();
      if (running) await o.sleep(o.pollMs);
    }
  })();
  o.logger.info(`submitting ${o.jobs} jobs at once`);
  let jobs: JobOutcome[];
  try {
    jobs = await Promise.all(
      Array.from({ length: o.jobs }, (_, i) =>
        runJob(o, withSeedOffset(o.workflow, i), i + 1).then((outcome) => {
          o.logger.info(
            `job ${outcome.index}: ${outcome.ok ? `done in ${formatDuration(outcome.latencyMs ?? 0)}` : `FAILED: ${outcome.error ?? ''}`}`,
          );
          return outcome;
        }),
      ),
    );
  } finally {
    running = false;
    await sampler;
  }
  await sample();
  const latencies = jobs.filter((j) => j.ok).map((j) => j.latencyMs ?? 0);
  const result: LoadTestResult = {
    jobs,
    failed: jobs.filter((j) => !j.ok),
    samples,
    peakReplicas: Math.max(0, ...samples.map((s) => s.total)),
  };
  const p50 = percentile(latencies, 50);
  const p95 = percentile(latencies, 95);
  const max = percentile(latencies, 100);
  if (p50 !== undefined) result.p50Ms = p50;
  if (p95 !== undefined) result.p95Ms = p95;
  if (max !== undefined) result.maxMs = max;
  return result;
}
