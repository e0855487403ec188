// The deploy-serverless commands on top of the client, planner, cost and waiter:
// plan | apply | start | scale | stop | status | delete | load-test. Reads first, refuses (cost,
// missing tag) before the first write, then writes only what differs. start (and status with a
// probe) end with a warm-up job rendered through the endpoint; load-test renders N at once.
import { InputError, OpsError } from '../lib/errors.js';
import { formatDuration } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';
import { sleep as realSleep } from '../lib/retry.js';
import type { VerdaClient } from './client.js';
import { checkCostLimit, checkWorkshopCost, estimateCost, type CostEstimate } from './cost.js';
import { desiredSpec, imageReference, type DesiredState } from './desired.js';
import { planDeployment, type Change, type Plan } from './plan.js';
import { ComfyEndpoint, type Workflow } from './comfy.js';
import type { LiveDeployment, Replica, ScalingOptions } from './verda-types.js';
import { waitUntilServing, type TimelineEntry, type WaitResult } from './wait.js';
import {
  COLD_START_TARGET_SECONDS,
  coldStartPhases,
  runJob,
  runLoadTest,
  slowestPhase,
  type JobOutcome,
  type LoadTestResult,
  type Phase,
} from './workload.js';

export const deployCommands = [
  'plan',
  'apply',
  'start',
  'scale',
  'stop',
  'status',
  'delete',
  'load-test',
] as const;
export type DeployCommand = (typeof deployCommands)[number];

export interface DeployRequest {
  command: DeployCommand;
  desired: DesiredState;
  client: VerdaClient;
  logger: Logger;
  /** USD per hour at max replicas above which apply/start/scale refuse. */
  maxHourlyCost?: number;
  /** What set maxHourlyCost, as the refusal names it (default `max-hourly-cost`). */
  costLimitName?: string;
  /** USD for a workshop (workshop hours at max replicas) above which apply/start/scale refuse. */
  maxWorkshopCost?: number;
  /** What set maxWorkshopCost, as the refusal names it. */
  workshopCostLimitName?: string;
  wait: boolean;
  waitTimeoutMs: number;
  pollMs?: number;
  inferenceKey?: string;
  purgeQueue?: boolean;
  /** `scale`: the replica bounds given (either or both). */
  scale?: { min?: number; max?: number };
  /** start (after the endpoint answers) and status with `probe`: render this job first. */
  warmup?: { workflow: Workflow; timeoutMs: number };
  /** status: also wait for the endpoint and run the warm-up. */
  probe?: boolean;
  /** load-test: how many jobs at once, and how long each may take. */
  loadTest?: { workflow: Workflow; jobs: number; jobTimeoutMs: number };
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface DeployResult {
  command: DeployCommand;
  name: string;
  /** Deployment status at the end; `absent` or `deleted` when there is none. */
  status: string;
  replicas: Replica[];
  endpointUrl: string;
  changed: boolean;
  writes: string[];
  plan?: Plan;
  cost?: CostEstimate;
  /** Current cost: running replicas × price (status). */
  hourlyCostNow?: number;
  timeline: TimelineEntry[];
  coldStartSeconds?: number;
  /** From the first write (status: the first answer) to the warm-up's output fetched. */
  firstJobSeconds?: number;
  warmup?: JobOutcome;
  /** Where the time to the first job went. */
  phases?: Phase[];
  loadTest?: LoadTestResult;
  /** The run did its work but failed its check (warm-up or load-test job failed): why. */
  failure?: string;
  image?: string;
}

interface Live {
  deployment: LiveDeployment;
  scaling: ScalingOptions;
}

export async function runDeploy(r: DeployRequest): Promise<DeployResult> {
  const now = r.now ?? Date.now;
  const ctx: Ctx = { ...r, startedAt: now(), now, sleep: r.sleep ?? realSleep };
  switch (r.command) {
    case 'plan':
    case 'apply':
    case 'start':
      return applyLike(ctx);
    case 'scale':
      return scale(ctx);
    case 'stop':
      return stop(ctx);
    case 'status':
      return status(ctx);
    case 'delete':
      return remove(ctx);
    case 'load-test':
      return loadTest(ctx);
  }
}

interface Ctx extends DeployRequest {
  startedAt: number;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
}

async function readLive(client: VerdaClient, name: string): Promise<Live | undefined> {
  const deployment = await client.getDeployment(name);
  if (!deployment) return undefined;
  return { deployment, scaling: deployment.scaling ?? (await client.getScaling(name)) };
}

function result(c: Ctx, fields: Partial<DeployResult> & { status: string }): DeployResult {
  return {
    command: c.command,
    name: c.desired.name,
    replicas: [],
    endpointUrl: '',
    changed: c.client.writes.length > 0,
    writes: c.client.writes.map((w) => w.request),
    timeline: [],
    ...fields,
  };
}

/** The image to deploy: the pinned tag given, else what the live deployment runs. */
function chooseImage(d: DesiredState, live: Live | undefined): string {
  if (d.imageTag) return imageReference(d.imageRepository, d.imageTag);
  const running = live?.deployment.containers[0]?.image;
  if (running) return running;
  throw new InputError(
    'image-tag',
    '',
    `a tag or digest of ${d.imageRepository}: ${d.name} does not exist yet, so there is no image to keep`,
  );
}

async function costFor(
  c: Ctx,
  d: { gpu: string; gpuCount: number; spot: boolean; minReplicas: number; maxReplicas: number },
): Promise<CostEstimate> {
  return estimateCost(await c.client.containerTypes('usd'), {
    ...d,
    workshopHours: c.desired.workshopHours,
  });
}

/** plan, apply and start: read, diff, price, refuse or write, then wait. */
async function applyLike(c: Ctx): Promise<DeployResult> {
  const { client, desired: d, logger } = c;
  const live = await logger.group('Read the live deployment', () => readLive(client, d.name));
  const image = chooseImage(d, live);
  const plan = planDeployment(desiredSpec(d, image), live);
  const cost = await costFor(c, d);
  const liveStatus = live ? await client.getStatus(d.name) : 'absent';
  logPlan(logger, plan, liveStatus);
  const liveUrl = live?.deployment.endpoint_base_url ?? '';
  if (c.command === 'plan') return planOnly(c, { status: liveStatus, plan, cost, image }, liveUrl);
  checkCosts(c, cost);

  const endpointUrl = await applyPlan(c, { plan, image, liveStatus, endpointUrl: liveUrl });
  // apply leaves a paused deployment paused (start resumes it): nothing to wait for.
  const stayedPaused = c.command === 'apply' && liveStatus === 'paused';
  if (stayedPaused) logger.info(`${d.name} is paused: not waiting (start resumes it)`);
  if (!c.wait || stayedPaused) {
    return result(c, { status: await client.getStatus(d.name), plan, cost, image, endpointUrl });
  }
  return waitAfterApply(c, { plan, cost, image, endpointUrl });
}

/** What apply and start carry from the plan to the result. */
interface Planned {
  plan: Plan;
  cost: CostEstimate;
  image: string;
}

/** Both caps, hourly first; before any write. */
function checkCosts(c: Ctx, cost: CostEstimate): void {
  checkCostLimit(cost, c.maxHourlyCost, c.costLimitName);
  checkWorkshopCost(cost, c.maxWorkshopCost, c.workshopCostLimitName);
}

/** plan writes nothing: it only says whether apply would refuse the cost. */
function planOnly(c: Ctx, p: Planned & { status: string }, endpointUrl: string): DeployResult {
  if (c.maxHourlyCost !== undefined && p.cost.hourlyMax > c.maxHourlyCost) {
    c.logger.warn(
      `at max replicas this costs $${p.cost.hourlyMax.toFixed(2)}/h, above ${c.costLimitName ?? 'max-hourly-cost'} $${c.maxHourlyCost}/h: apply would refuse it`,
    );
  }
  if (c.maxWorkshopCost !== undefined && p.cost.workshopMax > c.maxWorkshopCost) {
    c.logger.warn(
      `a workshop of ${p.cost.workshopHours} h at max replicas costs up to $${p.cost.workshopMax.toFixed(2)}, above ${c.workshopCostLimitName ?? 'max_workshop_cost_usd'} $${c.maxWorkshopCost}: apply would refuse it`,
    );
  }
  return result(c, { status: p.status, plan: p.plan, cost: p.cost, image: p.image, endpointUrl });
}

/** The writes of the plan (a resume first, for start); returns the endpoint URL to use. */
async function applyPlan(
  c: Ctx,
  a: { plan: Plan; image: string; liveStatus: string; endpointUrl: string },
): Promise<string> {
  const { client, desired: d, logger } = c;
  const { plan } = a;
  let endpointUrl = a.endpointUrl;
  await logger.group(`Apply (${plan.action})`, async () => {
    if (c.command === 'start' && a.liveStatus === 'paused') {
      logger.info(`${d.name} is paused: resuming`);
      await client.action(d.name, 'resume');
    }
    if (plan.action === 'create') {
      endpointUrl = (await client.createDeployment(desiredSpec(d, a.image))).endpoint_base_url;
    }
    if (plan.deploymentPatch)
      endpointUrl =
        (await client.patchDeployment(d.name, plan.deploymentPatch)).endpoint_base_url ||
        endpointUrl;
    if (plan.scalingPatch) await client.patchScaling(d.name, plan.scalingPatch);
    if (client.writes.length === 0) logger.info('nothing differs: no write');
  });
  return endpointUrl;
}

/** Waits until healthy (apply) or until the endpoint answers (start), timing the cold start. */
async function waitAfterApply(c: Ctx, p: Planned & { endpointUrl: string }): Promise<DeployResult> {
  const { client, desired: d, logger } = c;
  const serverStartedAt = client.writes[0]?.date ?? client.lastServerDate;
  const waited = await logger.group(
    c.command === 'start' ? 'Wait until the endpoint answers' : 'Wait until healthy',
    () =>
      waitUntilServing({
        client,
        name: d.name,
        endpointUrl: p.endpointUrl,
        healthPath: d.healthPath,
        inferenceKey: c.inferenceKey,
        logger,
        timeoutMs: c.waitTimeoutMs,
        ...(c.pollMs === undefined ? {} : { pollMs: c.pollMs }),
        endpoint: c.command === 'start',
        startedAt: c.startedAt,
        ...(serverStartedAt === undefined ? {} : { serverStartedAt }),
        now: c.now,
        sleep: c.sleep,
      }),
  );
  const out = result(c, {
    status: waited.status,
    plan: p.plan,
    cost: p.cost,
    image: p.image,
    endpointUrl: p.endpointUrl,
    timeline: waited.timeline,
    replicas: await client.getReplicas(d.name),
  });
  if (waited.firstOkAt !== undefined) {
    // From the first write (or the first answer when nothing was written) to the first 200,
    // on the API's clock when it sends Date headers, else on the runner's.
    const first = client.writes[0];
    const from = waited.firstOkFromServerClock
      ? (first?.date ?? serverStartedAt)
      : (first?.localAt ?? c.startedAt);
    if (from !== undefined) {
      out.coldStartSeconds = seconds(waited.firstOkAt - from);
      if (c.command === 'start') await warmUp(c, out, { waited, from, serverStartedAt });
    }
  }
  return out;
}

const seconds = (ms: number) => Math.max(0, Math.round(ms / 1000));

/**
 * The warm-up job through the endpoint, once it answers: `first-job-seconds` runs from `from`
 * (the first write) to its output fetched. Above the seed's 30 s it warns, naming the phase
 * that took the time. A failed warm-up fails the run (after its summary is written).
 */
async function warmUp(
  c: Ctx,
  out: DeployResult,
  t: { waited: WaitResult; from: number; serverStartedAt: number | undefined },
): Promise<void> {
  if (!c.warmup || !c.inferenceKey) return;
  const { logger } = c;
  const endpoint = new ComfyEndpoint({
    endpointUrl: out.endpointUrl,
    inferenceKey: c.inferenceKey,
    logger,
    now: c.now,
    sleep: c.sleep,
  });
  const warmup = c.warmup;
  const job = await logger.group('Warm-up job', () =>
    runJob(
      {
        endpoint,
        logger,
        timeoutMs: warmup.timeoutMs,
        pollMs: c.pollMs ?? 5_000,
        now: c.now,
        sleep: c.sleep,
      },
      warmup.workflow,
      1,
    ),
  );
  out.warmup = job;
  const healthy = t.waited.timeline.find((e) => e.event === 'healthy');
  const healthyAt =
    healthy?.serverAtMs !== undefined && t.serverStartedAt !== undefined
      ? t.serverStartedAt + healthy.serverAtMs
      : undefined;
  out.phases = coldStartPhases({
    from: t.from,
    ...(healthyAt === undefined ? {} : { healthyAt }),
    ...(t.waited.firstOkAt === undefined ? {} : { readyAt: t.waited.firstOkAt }),
    job,
  });
  if (!job.ok || job.outputAt === undefined) {
    out.failure = `the warm-up job${job.promptId ? ` ${job.promptId}` : ''} failed: ${job.error ?? 'no output'}`;
    return;
  }
  out.firstJobSeconds = seconds(job.outputAt - t.from);
  logger.info(
    `warm-up rendered ${job.output?.filename ?? '?'} (${job.output?.bytes ?? 0} bytes, sha256 ${job.output?.sha256 ?? '?'})`,
  );
  if (out.firstJobSeconds > COLD_START_TARGET_SECONDS) {
    const slow = slowestPhase(out.phases);
    logger.warn(
      `first job ${out.firstJobSeconds} s after the first write (cold start ${out.coldStartSeconds ?? '?'} s), above the seed's ${COLD_START_TARGET_SECONDS} s target: most of it was ${slow ? `${slow.name} (${formatDuration(slow.ms)})` : 'not seen'}`,
    );
  }
}

async function requireLive(c: Ctx): Promise<Live> {
  const live = await readLive(c.client, c.desired.name);
  if (!live) throw new OpsError(`${c.desired.name} does not exist: run start or apply first`);
  return live;
}

/** Min/max only, through PATCH /scaling only. */
async function scale(c: Ctx): Promise<DeployResult> {
  const { client, desired: d, logger } = c;
  const live = await requireLive(c);
  const min = c.scale?.min ?? live.scaling.min_replica_count;
  const max = c.scale?.max ?? live.scaling.max_replica_count;
  if (max < Math.max(1, min)) {
    throw new InputError(
      c.scale?.max !== undefined ? 'max-replicas' : 'min-replicas',
      String(c.scale?.max ?? min),
      `max >= max(1, min); the deployment would have min ${min}, max ${max}`,
    );
  }
  const changes: Change[] = [];
  if (min !== live.scaling.min_replica_count)
    changes.push({
      field: 'scaling.min_replica_count',
      live: String(live.scaling.min_replica_count),
      desired: String(min),
    });
  if (max !== live.scaling.max_replica_count)
    changes.push({
      field: 'scaling.max_replica_count',
      live: String(live.scaling.max_replica_count),
      desired: String(max),
    });
  const plan: Plan = { action: changes.length ? 'update' : 'none', changes };
  const compute = live.deployment.compute;
  const cost = await costFor(c, {
    gpu: compute.name,
    gpuCount: compute.size,
    spot: live.deployment.is_spot,
    minReplicas: min,
    maxReplicas: max,
  });
  logPlan(logger, plan, 'live');
  if (changes.length > 0) {
    checkCosts(c, cost);
    await client.patchScaling(d.name, { min_replica_count: min, max_replica_count: max });
  }
  return result(c, {
    status: await client.getStatus(d.name),
    plan,
    cost,
    endpointUrl: live.deployment.endpoint_base_url,
    replicas: await client.getReplicas(d.name),
  });
}

/** Min 0 and pause: nothing billed. Optionally purge the queue. */
async function stop(c: Ctx): Promise<DeployResult> {
  const { client, desired: d, logger } = c;
  const live = await readLive(client, d.name);
  if (!live) {
    logger.info(`${d.name} does not exist: nothing to stop`);
    return result(c, { status: 'absent' });
  }
  const changes: Change[] = [];
  if (live.scaling.min_replica_count !== 0) {
    changes.push({
      field: 'scaling.min_replica_count',
      live: String(live.scaling.min_replica_count),
      desired: '0',
    });
    await client.patchScaling(d.name, { min_replica_count: 0 });
  }
  const before = await client.getStatus(d.name);
  if (before !== 'paused') {
    changes.push({ field: 'status', live: before, desired: 'paused' });
    await client.action(d.name, 'pause');
  }
  if (c.purgeQueue) {
    changes.push({ field: 'queue', live: '(as is)', desired: 'purged' });
    await client.action(d.name, 'purge-queue');
  }
  const plan: Plan = { action: changes.length ? 'update' : 'none', changes };
  logPlan(logger, plan, before);
  return result(c, {
    status: await client.getStatus(d.name),
    plan,
    endpointUrl: live.deployment.endpoint_base_url,
    replicas: await client.getReplicas(d.name),
  });
}

async function status(c: Ctx): Promise<DeployResult> {
  const { client, desired: d } = c;
  const live = await readLive(client, d.name);
  if (!live) return result(c, { status: 'absent' });
  const [current, replicas] = [await client.getStatus(d.name), await client.getReplicas(d.name)];
  const compute = live.deployment.compute;
  const cost = await costFor(c, {
    gpu: compute.name,
    gpuCount: compute.size,
    spot: live.deployment.is_spot,
    minReplicas: live.scaling.min_replica_count,
    maxReplicas: live.scaling.max_replica_count,
  });
  const running = replicas.filter((x) => x.status === 'running').length;
  const out = result(c, {
    status: current,
    replicas,
    cost,
    hourlyCostNow: Math.round(running * cost.perReplicaHour * 10_000) / 10_000,
    endpointUrl: live.deployment.endpoint_base_url,
    image: live.deployment.containers[0]?.image ?? '',
  });
  if (c.probe) await probe(c, out);
  return out;
}

/**
 * status with a probe: waits for the endpoint to answer, then renders the warm-up. Nothing was
 * written, so both figures run from this run's first answer from the API.
 */
async function probe(c: Ctx, out: DeployResult): Promise<void> {
  const { client, desired: d, logger } = c;
  const serverStartedAt = client.lastServerDate;
  const waited = await logger.group('Probe: wait until the endpoint answers', () =>
    waitUntilServing({
      client,
      name: d.name,
      endpointUrl: out.endpointUrl,
      healthPath: d.healthPath,
      inferenceKey: c.inferenceKey,
      logger,
      timeoutMs: c.waitTimeoutMs,
      ...(c.pollMs === undefined ? {} : { pollMs: c.pollMs }),
      endpoint: true,
      startedAt: c.startedAt,
      ...(serverStartedAt === undefined ? {} : { serverStartedAt }),
      now: c.now,
      sleep: c.sleep,
    }),
  );
  out.timeline = waited.timeline;
  out.status = waited.status;
  if (waited.firstOkAt === undefined) return;
  const from = waited.firstOkFromServerClock ? (serverStartedAt ?? c.startedAt) : c.startedAt;
  out.coldStartSeconds = seconds(waited.firstOkAt - from);
  await warmUp(c, out, { waited, from, serverStartedAt });
  out.replicas = await client.getReplicas(d.name);
}

/** N jobs at once through the endpoint; the replica count sampled while they run. */
async function loadTest(c: Ctx): Promise<DeployResult> {
  const { client, desired: d, logger } = c;
  const live = await requireLive(c);
  const spec = c.loadTest;
  if (!spec || !c.inferenceKey)
    throw new OpsError('load-test needs a workflow and the inference API key');
  const endpointUrl = live.deployment.endpoint_base_url;
  const endpoint = new ComfyEndpoint({
    endpointUrl,
    inferenceKey: c.inferenceKey,
    logger,
    now: c.now,
    sleep: c.sleep,
  });
  const test = await logger.group(`Load test: ${spec.jobs} jobs at once`, () =>
    runLoadTest({
      endpoint,
      logger,
      client,
      name: d.name,
      workflow: spec.workflow,
      jobs: spec.jobs,
      timeoutMs: spec.jobTimeoutMs,
      pollMs: c.pollMs ?? 5_000,
      now: c.now,
      sleep: c.sleep,
    }),
  );
  const out = result(c, {
    status: await client.getStatus(d.name),
    endpointUrl,
    replicas: await client.getReplicas(d.name),
    loadTest: test,
  });
  if (test.failed.length > 0) {
    const named = test.failed
      .map((j) => `job ${j.index}${j.promptId ? ` (${j.promptId})` : ''}: ${j.error ?? 'failed'}`)
      .join('; ');
    out.failure = `${test.failed.length} of ${spec.jobs} load-test jobs failed: ${named}`;
  }
  return out;
}

/** DELETE (the name was confirmed by the caller), then wait until it is gone. */
async function remove(c: Ctx): Promise<DeployResult> {
  const { client, desired: d, logger } = c;
  const live = await readLive(client, d.name);
  if (!live) {
    logger.info(`${d.name} does not exist: nothing to delete`);
    return result(c, { status: 'absent' });
  }
  await client.deleteDeployment(d.name, 0);
  if (!c.wait)
    return result(c, { status: 'deleting', endpointUrl: live.deployment.endpoint_base_url });
  const deadline = c.now() + c.waitTimeoutMs;
  let poll = c.pollMs ?? 5_000;
  while (await client.getDeployment(d.name)) {
    if (c.now() >= deadline)
      throw new OpsError(
        `${d.name} was still there ${Math.round(c.waitTimeoutMs / 1000)} s after DELETE`,
      );
    await c.sleep(poll);
    poll = Math.min(poll * 1.5, (c.pollMs ?? 5_000) * 6);
  }
  logger.info(`${d.name} is gone`);
  return result(c, { status: 'deleted' });
}

function logPlan(logger: Logger, plan: Plan, liveStatus: string): void {
  logger.info(`live status: ${liveStatus}; plan: ${plan.action}`);
  for (const ch of plan.changes) logger.info(`  ${ch.field}: ${ch.live} → ${ch.desired}`);
}
