// The job summary of a deploy-serverless run: facts, the plan (field: live → desired), the cost
// and the status timeline, as tables rendered by src/lib/summary.
import { formatUsd } from '../lib/format.js';
import { factsTable, type Table } from '../lib/summary.js';
import { costTable } from './cost.js';
import type { DeployResult } from './deploy.js';
import type { Plan } from './plan.js';
import { timelineTable, type TimelineEntry } from './wait.js';

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
    if (r.cost) parts.push(costTable(r.cost));
    if (r.timeline.length) parts.push(timelineTable(r.timeline));
  }
  if (failure) {
    parts.push(`**Failed:** ${failure.message.split('\n')[0] ?? ''}`);
    if (failure.timeline.length) parts.push(timelineTable(failure.timeline));
  }
  return parts;
}
