// The planner (live → desired diff and minimal writes), desired-state resolution and cost.
import { beforeAll, describe, expect, it } from '@jest/globals';
import path from 'node:path';
import { InputError, OpsError } from '../../src/lib/errors.js';
import { tableToText } from '../../src/lib/summary.js';
import { loadWorkshopConfig, type WorkshopConfig } from '../../src/serverless/config.js';
import {
  checkCostLimit,
  costTable,
  estimateCost,
  pricePerReplicaHour,
} from '../../src/serverless/cost.js';
import { desiredSpec, imageReference, resolveDesired } from '../../src/serverless/desired.js';
import {
  normalizeContainerTypes,
  normalizeDeployment,
  type PriceRow,
} from '../../src/serverless/normalize.js';
import { planDeployment } from '../../src/serverless/plan.js';
import { planTable } from '../../src/serverless/report.js';
import type { DeploymentSpec, LiveDeployment } from '../../src/serverless/verda-types.js';

let config: WorkshopConfig;
beforeAll(async () => {
  config = await loadWorkshopConfig(path.resolve(import.meta.dirname, '../../config/workshop.yml'));
});

const image = 'ghcr.io/ahelme/comfyui-worker:sha-1';
const spec = (o: Parameters<typeof resolveDesired>[1] = {}) =>
  desiredSpec(resolveDesired(config, o), image);

/** What the API would answer for a spec: server names, image object, extras it adds. */
function liveOf(s: DeploymentSpec): {
  deployment: LiveDeployment;
  scaling: DeploymentSpec['scaling'];
} {
  const raw = {
    ...s,
    endpoint_base_url: `https://containers.datacrunch.io/${s.name}`,
    created_at: '2026-11-28T00:00:00Z',
    containers: s.containers.map((c, i) => ({
      ...c,
      name: `comfyui-worker-${i}`,
      image: { image: c.image, last_updated_at: '2026-11-28T00:00:00Z' },
      env: [...c.env].reverse(),
      autoupdate: { enabled: false },
    })),
  };
  delete (raw as Partial<typeof raw>).scaling;
  return {
    deployment: normalizeDeployment(raw),
    scaling: {
      ...s.scaling,
      scaling_triggers: { ...s.scaling.scaling_triggers, cpu_utilization: { enabled: false } },
    },
  };
}

describe('planDeployment', () => {
  it('plans a create with every desired field against (absent)', () => {
    const plan = planDeployment(spec(), undefined);
    expect(plan.action).toBe('create');
    expect(plan.changes).toContainEqual({
      field: 'containers[0].image',
      live: '(absent)',
      desired: image,
    });
    expect(plan.changes).toContainEqual({
      field: 'scaling.max_replica_count',
      live: '(absent)',
      desired: '40',
    });
    expect(plan.changes).toContainEqual({
      field: 'containers[0].env.HF_TOKEN',
      live: '(absent)',
      desired: 'secret hf-token',
    });
  });

  it('is a no-op against its own read-back (server names, image object, extras, env order)', () => {
    const plan = planDeployment(spec(), liveOf(spec()));
    expect(plan).toEqual({ action: 'none', changes: [] });
  });

  it('reads a field the API sends as null as absent, and refuses one outside the contract', () => {
    const s = spec();
    const answer = (edit: (c: Record<string, unknown>) => void) => {
      const container: Record<string, unknown> = {
        ...s.containers[0],
        healthcheck: { ...s.containers[0]!.healthcheck, port: null },
        entrypoint_overrides: null,
      };
      edit(container);
      return { ...s, containers: [container], scaling: undefined };
    };
    const read = normalizeDeployment(answer(() => undefined));
    expect(read.containers[0]?.healthcheck).not.toHaveProperty('port');
    expect(() =>
      normalizeDeployment(
        answer((c) => {
          c.env = [{ name: 'X', value_or_reference_to_secret: 'y', type: 'shell' }];
        }),
      ),
    ).toThrow(/outside the API contract: containers\[0\]\.env\[0\]\.type: /);
  });

  it('refuses an endpoint URL the inference key must never go to, where the answer is read', () => {
    const s = spec();
    const read = (url: string) =>
      normalizeDeployment({ ...s, scaling: undefined, endpoint_base_url: url });
    expect(read('https://containers.datacrunch.io/comfyume-workers').endpoint_base_url).toBe(
      'https://containers.datacrunch.io/comfyume-workers',
    );
    expect(read('').endpoint_base_url).toBe('');
    expect(() => read('http://containers.example/comfyume-workers')).toThrow(
      /neither the inference key nor a publish goes to it/,
    );
  });

  it('changes scaling through the scaling patch only', () => {
    const plan = planDeployment(spec({ maxReplicas: 16 }), liveOf(spec()));
    expect(plan.changes).toEqual([
      { field: 'scaling.max_replica_count', live: '40', desired: '16' },
    ]);
    expect(plan.deploymentPatch).toBeUndefined();
    expect(plan.scalingPatch).toMatchObject({ max_replica_count: 16, min_replica_count: 0 });
  });

  it('replaces containers whole with their server names when the image changes', () => {
    const next = desiredSpec(resolveDesired(config, {}), 'ghcr.io/ahelme/comfyui-worker:sha-2');
    const plan = planDeployment(next, liveOf(spec()));
    expect(plan.changes).toEqual([
      { field: 'containers[0].image', live: image, desired: 'ghcr.io/ahelme/comfyui-worker:sha-2' },
    ]);
    expect(plan.deploymentPatch).toEqual({
      containers: [{ ...next.containers[0], name: 'comfyui-worker-0' }],
    });
    expect(plan.deploymentPatch?.containers?.[0]?.volume_mounts).toContainEqual({
      type: 'shared',
      mount_path: '/mnt/sfs',
      volume_id: 'sfs-comfyume-models',
    });
    expect(plan.scalingPatch).toBeUndefined();
  });

  it('shows env removals and compute/spot changes as field: live → desired', () => {
    const live = liveOf(spec());
    live.deployment.containers[0]?.env.push({
      name: 'DEBUG',
      value_or_reference_to_secret: '1',
      type: 'plain',
    });
    const plan = planDeployment(spec({ preset: 'h200-spot' }), live);
    expect(plan.changes).toEqual([
      { field: 'is_spot', live: 'false', desired: 'true' },
      { field: 'compute.name', live: 'H100', desired: 'H200' },
      { field: 'containers[0].env.DEBUG', live: '1', desired: '(absent)' },
    ]);
    expect(Object.keys(plan.deploymentPatch ?? {})).toEqual(['is_spot', 'compute', 'containers']);
    expect(tableToText(planTable(plan))).toContain('compute.name             H100   H200');
  });
});

describe('resolveDesired', () => {
  it('applies preset, then inputs, over the config', () => {
    const d = resolveDesired(config, {
      preset: 'b300-spot',
      maxReplicas: 16,
      minReplicas: 2,
      imageTag: 'v1.2',
    });
    expect(d).toMatchObject({
      gpu: 'B300',
      spot: true,
      minReplicas: 2,
      maxReplicas: 16,
      imageTag: 'v1.2',
    });
    expect(resolveDesired(config, { preset: 'h100', gpu: 'H200', spot: true })).toMatchObject({
      gpu: 'H200',
      spot: true,
    });
  });

  it('refuses unknown presets and GPUs, max below min and latest, naming the input', () => {
    const err = (o: Parameters<typeof resolveDesired>[1]) => {
      try {
        resolveDesired(config, o);
      } catch (e) {
        return e;
      }
      return undefined;
    };
    expect(err({ preset: 'a100' })).toMatchObject({ input: 'preset', value: 'a100' });
    expect(err({ gpu: 'V100' })).toMatchObject({ input: 'gpu', value: 'V100' });
    expect(err({ minReplicas: 50 })).toMatchObject({ input: 'min-replicas', value: '50' });
    expect(err({ imageTag: 'latest' })).toBeInstanceOf(InputError);
    expect(err({ imageTag: 'v1 2' })).toBeInstanceOf(InputError);
  });

  it('builds digest references with @', () => {
    const digest = `sha256:${'0'.repeat(64)}`;
    expect(imageReference('ghcr.io/a/b', digest)).toBe(`ghcr.io/a/b@${digest}`);
    expect(imageReference('ghcr.io/a/b', 'v1')).toBe('ghcr.io/a/b:v1');
  });
});

describe('cost', () => {
  const rows: PriceRow[] = normalizeContainerTypes([
    {
      model: 'H100',
      gpu: { number_of_gpus: 1 },
      serverless_price: 3.58,
      serverless_spot_price: '1.79',
      currency: 'usd',
    },
    {
      model: 'H100',
      gpu: { number_of_gpus: 2 },
      serverless_price: '7.16',
      serverless_spot_price: 3.58,
      currency: 'usd',
    },
    {
      model: 'B300',
      gpu: { number_of_gpus: 1 },
      serverless_price: '8.25',
      serverless_spot_price: 'n/a',
      currency: 'usd',
    },
    {
      model: 'CPU Node',
      cpu: { number_of_cores: 8 },
      gpu: { number_of_gpus: 0 },
      serverless_price: 0.06,
      currency: 'usd',
    },
  ]);

  it('reads prices as numbers or strings, per size, spot or not', () => {
    expect(pricePerReplicaHour(rows, 'H100', 1, false)).toBe(3.58);
    expect(pricePerReplicaHour(rows, 'H100', 1, true)).toBe(1.79);
    expect(pricePerReplicaHour(rows, 'H100', 2, false)).toBe(7.16);
    expect(pricePerReplicaHour(rows, 'H100', 4, false)).toBeCloseTo(14.32);
    expect(pricePerReplicaHour(rows, 'B300', 1, true)).toBeUndefined();
    expect(pricePerReplicaHour(rows, 'CPU Node', 8, false)).toBe(0.06);
  });

  it('estimates per hour at max and a 3-hour workshop, and refuses above the limit', () => {
    const cost = estimateCost(rows, {
      gpu: 'H100',
      gpuCount: 1,
      spot: false,
      minReplicas: 0,
      maxReplicas: 40,
      workshopHours: 3,
    });
    expect(cost).toMatchObject({
      perReplicaHour: 3.58,
      hourlyMax: 143.2,
      hourlyMin: 0,
      workshopMax: 429.6,
    });
    expect(() => checkCostLimit(cost, 150)).not.toThrow();
    expect(() => checkCostLimit(cost, 100)).toThrow(
      /costs \$143\.20\/h at max replicas, above max-hourly-cost \$100\.00\/h\. Lower max-replicas \(at most 27\)/,
    );
    expect(tableToText(costTable(cost))).toContain('max 40 replicas        $143.20   $429.60');
    expect(() =>
      estimateCost(rows, {
        gpu: 'B300',
        gpuCount: 1,
        spot: true,
        minReplicas: 0,
        maxReplicas: 1,
        workshopHours: 3,
      }),
    ).toThrow(OpsError);
  });
});
