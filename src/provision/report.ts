// provision-host's summaries: the plan with its hourly cost, what create did with its phase
// times, the host's status with its cost so far, and what the safety net reaped.
import { formatDuration, formatUsd } from '../lib/format.js';
import { factsTable, type Table } from '../lib/summary.js';
import type { HostTarget } from './host-config.js';
import type { HostPlan } from './plan.js';
import type { CreateResult, HostStatus, Reaped } from './provision.js';

const perHour = (n: number) => `${formatUsd(n)}/h`;

export function planTable(plan: HostPlan): (Table | string)[] {
  const { target } = plan;
  const rows: string[][] = [
    [
      `instance ${target.hostname}`,
      `${plan.instanceType.name}${plan.spot ? ' (spot)' : ''}${plan.existing ? `, exists: ${plan.existing.status}` : ''}`,
      perHour(plan.instancePerHour),
    ],
  ];
  if (!plan.existing)
    rows.push([
      'OS volume',
      `NVMe, ${target.config['os-volume-gb']} GB`,
      perHour(plan.osVolumePerHour),
    ]);
  for (const v of plan.volumes)
    rows.push([
      `volume "${v.want.name}"`,
      `${v.want.type}, ${v.existing?.sizeGb ?? v.want['size-gb']} GB, ${v.existing ? `exists (${v.existing.status})` : 'to create'}`,
      perHour(v.perHour),
    ]);
  rows.push([
    '**total**',
    `cap ${perHour(target.preset['max-hourly-cost'])} (preset ${target.presetName})`,
    `**${perHour(plan.totalPerHour)}**`,
  ]);
  const parts: (Table | string)[] = [
    {
      title: `Plan: ${target.hostname} in ${target.config.location}`,
      headers: ['', 'what', 'cost'],
      rows,
    },
  ];
  if (plan.available === false)
    parts.push(
      `**No capacity now:** ${plan.instanceType.name} is not available in ${target.config.location}.`,
    );
  parts.push(
    plan.existing
      ? `The instance exists (${plan.existing.status}): create would change nothing.`
      : `create would:\n${plan.steps.map((s) => `- ${s}`).join('\n')}`,
  );
  return parts;
}

export function createTable(result: CreateResult): (Table | string)[] {
  const i = result.instance;
  const t = result.timings;
  const facts: [string, string][] = [
    ['instance', `${i.hostname} (${i.id}), ${i.instanceType}, ${i.status}`],
    ['address', i.ip ?? '(none yet)'],
    ['cost', perHour(result.plan.totalPerHour)],
  ];
  if (result.created) {
    facts.push(
      [
        'volumes',
        `${formatDuration(t.volumesMs)} (created: ${result.createdVolumes.join(', ') || 'none'})`,
      ],
      ['provision', `${formatDuration(t.instanceMs)} (POST to running)`],
    );
    if (t.sshMs !== undefined)
      facts.push([
        'SSH',
        `${formatDuration(t.sshMs)} (running to the bootstrap host key answering)`,
      ]);
    if (result.bootstrapFingerprint)
      facts.push([
        'bootstrap host key',
        `\`${result.bootstrapFingerprint}\` (replaced by the restore)`,
      ]);
  } else facts.push(['created', 'nothing: the instance existed']);
  return [factsTable(`Host ${i.hostname}`, facts)];
}

export function statusTable(target: HostTarget, status: HostStatus): (Table | string)[] {
  const i = status.instance;
  if (!i) return [`No instance ${target.hostname} in ${target.config.location}.`];
  const facts: [string, string][] = [
    ['instance', `${i.hostname} (${i.id}), ${i.instanceType}${i.isSpot ? ' spot' : ''}`],
    ['status', i.status],
    ['address', i.ip ?? '(none)'],
    [
      'volumes',
      status.volumes.map((v) => `"${v.name}" ${v.type} ${v.sizeGb} GB ${v.status}`).join('; ') ||
        'none',
    ],
    ['cost', perHour(status.perHour)],
  ];
  if (status.ageMs !== undefined) facts.push(['age', formatDuration(status.ageMs)]);
  if (status.costSoFar !== undefined)
    facts.push(['cost so far', `${formatUsd(status.costSoFar)} (at today's prices)`]);
  return [factsTable(`Host ${i.hostname}`, facts)];
}

/** What stop must say: a shut-down instance is billed as a running one. */
export function stoppedBillingNote(hourly: number): string {
  return `a shut-down instance is still billed (${perHour(hourly)} with its volumes): delete it (command=delete keeps the volumes) to stop paying for it`;
}

export function reapTable(reaped: Reaped[], dryRun: boolean): (Table | string)[] {
  if (reaped.length === 0) return ['No test instance over its max-running-hours.'];
  return [
    {
      title: dryRun
        ? 'Test instances over their limit (dry run: kept)'
        : 'Test instances deleted (volumes kept)',
      headers: ['hostname', 'preset', 'age', 'limit', 'cost'],
      rows: reaped.map((r) => [
        r.hostname,
        r.preset,
        formatDuration(r.ageMs),
        `${r.limitHours} h`,
        perHour(r.perHour),
      ]),
    },
  ];
}
