// Cost from /container-types: the price per replica-hour for the GPU, count and spot flag, times
// max replicas, and a workshop estimate beside the seed's budget. Prices are read every time,
// never hardcoded; only the seed's budget is written down here.
import { OpsError } from '../lib/errors.js';
import { formatUsd } from '../lib/format.js';
import type { Table } from '../lib/summary.js';
import type { PriceRow } from './normalize.js';

export interface CostEstimate {
  gpu: string;
  gpuCount: number;
  spot: boolean;
  currency: string;
  perReplicaHour: number;
  minReplicas: number;
  maxReplicas: number;
  /** At max replicas: what max-hourly-cost is compared with. */
  hourlyMax: number;
  /** At min replicas (0 = nothing billed while idle). */
  hourlyMin: number;
  workshopHours: number;
  /** A workshop at max replicas for workshopHours. */
  workshopMax: number;
}

/** Price per replica-hour; a missing size row falls back to size 1 × count (prices scale so). */
export function pricePerReplicaHour(
  rows: PriceRow[],
  gpu: string,
  count: number,
  spot: boolean,
): number | undefined {
  const pick = (row: PriceRow | undefined) => (spot ? row?.spot : row?.onDemand);
  const exact = pick(rows.find((r) => r.model === gpu && r.size === count));
  if (exact !== undefined) return exact;
  const one = pick(rows.find((r) => r.model === gpu && r.size === 1));
  return one === undefined ? undefined : one * count;
}

export function estimateCost(
  rows: PriceRow[],
  d: {
    gpu: string;
    gpuCount: number;
    spot: boolean;
    minReplicas: number;
    maxReplicas: number;
    workshopHours: number;
  },
): CostEstimate {
  const perReplicaHour = pricePerReplicaHour(rows, d.gpu, d.gpuCount, d.spot);
  if (perReplicaHour === undefined) {
    const models = [...new Set(rows.map((r) => r.model))].join(', ');
    throw new OpsError(
      `Verda /container-types has no ${d.spot ? 'spot ' : ''}price for ${d.gpuCount}x ${d.gpu} (priced: ${models || 'none'})`,
    );
  }
  const round = (n: number) => Math.round(n * 10_000) / 10_000;
  return {
    ...d,
    currency: rows[0]?.currency ?? 'usd',
    perReplicaHour,
    hourlyMax: round(perReplicaHour * d.maxReplicas),
    hourlyMin: round(perReplicaHour * d.minReplicas),
    workshopMax: round(perReplicaHour * d.maxReplicas * d.workshopHours),
  };
}

/** A plan refused for its cost: carries the estimate so the summary can show it. */
export class CostLimitError extends OpsError {
  constructor(
    message: string,
    readonly cost: CostEstimate,
  ) {
    super(message);
    this.name = 'CostLimitError';
  }
}

/** Refuses a plan whose cost at max replicas exceeds the limit; called before any write. */
export function checkCostLimit(
  cost: CostEstimate,
  maxHourlyCost: number | undefined,
  limitName = 'max-hourly-cost',
): void {
  if (maxHourlyCost === undefined || cost.hourlyMax <= maxHourlyCost) return;
  throw new CostLimitError(
    `Refusing: ${cost.maxReplicas} x ${cost.gpuCount}x ${cost.gpu}${cost.spot ? ' spot' : ''} costs ${formatUsd(cost.hourlyMax)}/h at max replicas, above ${limitName} ${formatUsd(maxHourlyCost)}/h. Lower max-replicas (at most ${Math.floor(maxHourlyCost / cost.perReplicaHour)}) or choose a cheaper preset.`,
    cost,
  );
}

/**
 * Refuses a plan whose workshop (workshopHours at max replicas: every replica busy the whole
 * time, the most it can bill) exceeds the per-workshop cap; called before any write, beside the
 * hourly cap.
 */
export function checkWorkshopCost(
  cost: CostEstimate,
  maxWorkshopCost: number | undefined,
  limitName = 'max_workshop_cost_usd',
): void {
  if (maxWorkshopCost === undefined || cost.workshopMax <= maxWorkshopCost) return;
  const fits = Math.floor(maxWorkshopCost / (cost.perReplicaHour * cost.workshopHours));
  throw new CostLimitError(
    `Refusing: a workshop of ${cost.workshopHours} h at ${cost.maxReplicas} x ${cost.gpuCount}x ${cost.gpu}${cost.spot ? ' spot' : ''} costs up to ${formatUsd(cost.workshopMax)}, above ${limitName} ${formatUsd(maxWorkshopCost)}. Lower max-replicas (at most ${fits}) or choose a cheaper preset.`,
    cost,
  );
}

/** The seed's Phase 13 budget per workshop: "acceptable" max 16 containers, "ideal" max 40. */
export const SEED_BUDGET = [
  { replicas: 16, scenario: 'acceptable', lowUsd: 80, highUsd: 100 },
  { replicas: 40, scenario: 'ideal', lowUsd: 200, highUsd: 250 },
] as const;

export interface BudgetRow {
  replicas: number;
  scenario: string;
  hourly: number;
  /** workshopHours at that many replicas, all busy. */
  workshop: number;
  lowUsd: number;
  highUsd: number;
  /** workshop - highUsd when above the budget, else 0. */
  overUsd: number;
}

/** A workshop at the seed's 16 and 40 replicas with today's price, beside the seed's budget. */
export function budgetRows(cost: CostEstimate): BudgetRow[] {
  const round = (n: number) => Math.round(n * 100) / 100;
  return SEED_BUDGET.map((b) => {
    const hourly = round(cost.perReplicaHour * b.replicas);
    const workshop = round(cost.perReplicaHour * b.replicas * cost.workshopHours);
    return { ...b, hourly, workshop, overUsd: round(Math.max(0, workshop - b.highUsd)) };
  });
}

export function budgetTable(cost: CostEstimate): Table {
  return {
    title: `Cost per workshop (${cost.workshopHours} h, every replica busy) against the seed's budget`,
    headers: ['replicas', 'per hour', 'workshop', "seed's budget", 'verdict'],
    rows: budgetRows(cost).map((r) => [
      `${r.replicas} (${r.scenario}, ${cost.gpuCount}x ${cost.gpu}${cost.spot ? ' spot' : ''})`,
      formatUsd(r.hourly),
      formatUsd(r.workshop),
      `$${r.lowUsd}–${r.highUsd}`,
      r.overUsd > 0 ? `over by ${formatUsd(r.overUsd)}` : 'within',
    ]),
  };
}

export function costTable(cost: CostEstimate): Table {
  const money = (n: number) =>
    `${formatUsd(n)}${cost.currency === 'usd' ? '' : ` ${cost.currency.toUpperCase()}`}`;
  return {
    title: 'Cost',
    headers: ['', 'per hour', `workshop (${cost.workshopHours} h)`],
    rows: [
      [
        `1 replica (${cost.gpuCount}x ${cost.gpu}${cost.spot ? ', spot' : ''})`,
        money(cost.perReplicaHour),
        money(cost.perReplicaHour * cost.workshopHours),
      ],
      [
        `min ${cost.minReplicas} replicas (idle)`,
        money(cost.hourlyMin),
        money(cost.hourlyMin * cost.workshopHours),
      ],
      [`max ${cost.maxReplicas} replicas`, money(cost.hourlyMax), money(cost.workshopMax)],
    ],
  };
}
