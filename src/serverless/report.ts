// The job summary of a deploy-serverless run: facts, the plan (field: live → desired), the cost
// and the status timeline, as tables rendered by src/lib/summary.
import { formatDuration, formatUsd } from '../lib/format.js';
import { factsTable, type Table } from '../lib/summary.js';
import { budgetTable, costTable } from './cost.js';
import type { DeployResult } from './deploy.js';
import type { Plan } from './plan.js';
import { replicaCurve } from './stats.js';
import { timelineTable, type TimelineEntry } from './wait.js';
import { COLD_START_TARGET_SECONDS, type LoadTestResult, type Phase } from './workload.js';

export function planTable(plan: Plan): Table {
  const title = plan.action === 'none' ? 'Plan: no change' : `Plan: ${plan.action}`;
  return {
    title,
    headers: ['field', 'live', 'desired'],
    rows: plan.changes.map((c) => [c.field, c.live, c.desired]),
  };
}

export function runningReplicas(r: DeployResult): number {
  return r.replicas.filter((x) => x.status === 'running').length;
}

export function resultFacts(r: DeployResult): Table {
  const facts: [string, string][] = [
    ['deployment', r.name],
    ['status', r.status],
    ['endpoint', r.endpointUrl || '-'],
    ['replicas running', `${runningReplicas(r)} of ${r.replicas.length} listed`],
  ];
  if (r.image) facts.push(['image', r.image]);
  if (r.coldStartSeconds !== undefined)
    facts.push(['cold start', `${r.coldStartSeconds} s (first write → first 200)`]);
  if (r.firstJobSeconds !== undefined)
    facts.push([
      'first job',
      `${r.firstJobSeconds} s (first write → warm-up output fetched; target ${COLD_START_TARGET_SECONDS} s)`,
    ]);
  if (r.warmup?.output)
    facts.push([
      'warm-up output',
      `${r.warmup.output.filename}, ${r.warmup.output.bytes} bytes, sha256 ${r.warmup.output.sha256.slice(0, 16)}…`,
    ]);
  if (r.hourlyCostNow !== undefined) facts.push(['cost now', `${formatUsd(r.hourlyCostNow)}/h`]);
  facts.push(['writes', r.writes.length ? r.writes.join(', ') : 'none']);
  return factsTable(`deploy-serverless ${r.command}`, facts);
}

/** Everything for the job summary; a failed wait still reports its timeline. */
export function summaryParts(
  r: DeployResult | undefined,
  failure?: { message: string; timeline: TimelineEntry[] },
): (string | Table)[] {
  const parts: (string | Table)[] = [];
  if (r) {
    parts.push(resultFacts(r));
    if (r.plan) parts.push(planTable(r.plan));
    if (r.cost) parts.push(costTable(r.cost), budgetTable(r.cost));
    if (r.timeline.length) parts.push(timelineTable(r.timeline));
    if (r.phases?.length) parts.push(phasesTable(r.phases));
    if (r.loadTest) parts.push(...loadTestParts(r.loadTest));
    if (r.failure) parts.push(`**Failed:** ${r.failure}`);
  }
  if (failure) {
    parts.push(`**Failed:** ${failure.message.split('\n')[0] ?? ''}`);
    if (failure.timeline.length) parts.push(timelineTable(failure.timeline));
  }
  return parts;
}

export function phasesTable(phases: Phase[]): Table {
  return {
    title: 'Where the time to the first job went',
    headers: ['phase', 'took'],
    rows: phases.map((p) => [p.name, formatDuration(p.ms)]),
  };
}

const secondsText = (ms: number | undefined) =>
  ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`;

/** The load test: figures, each job, and the replica curve (as a code block). */
export function loadTestParts(t: LoadTestResult): (string | Table)[] {
  const ok = t.jobs.length - t.failed.length;
  return [
    factsTable('Load test', [
      ['jobs', `${t.jobs.length} at once: ${ok} rendered, ${t.failed.length} failed`],
      ['latency p50', secondsText(t.p50Ms)],
      ['latency p95', secondsText(t.p95Ms)],
      ['latency max', secondsText(t.maxMs)],
      ['peak replicas', String(t.peakReplicas)],
    ]),
    {
      title: 'Jobs (submitted → output fetched)',
      headers: ['job', 'prompt id', 'result', 'latency', 'output or error'],
      rows: t.jobs.map((j) => [
        String(j.index),
        j.promptId ?? '-',
        j.ok ? 'ok' : 'FAILED',
        secondsText(j.latencyMs),
        j.ok ? (j.output?.filename ?? '') : (j.error ?? ''),
      ]),
    },
    `Replicas over time (# running, + starting):\n\n\`\`\`\n${replicaCurve(t.samples).join('\n')}\n\`\`\``,
  ];
}
