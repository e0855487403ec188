// The cost of a workshop through the bundle against the Verda emulator: the plan's table of a
// workshop at 16 and 40 replicas computed from the emulator's /container-types prices beside the
// seed's budget, and the per-workshop cap of config/workshop.yml refusing a plan before any write.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { repoRoot, runAction, type ActionRun } from '../helpers/run-action.js';
import { WORKSHOP_SECRETS } from '../helpers/workshop-secrets.js';
import { startVerdaEmulator, type VerdaEmulator } from '../../src/sandbox/verda.js';

jest.setTimeout(60_000);

let emu: VerdaEmulator;
let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'deploy-budget-'));
  emu = await startVerdaEmulator({
    timeScale: 0,
    tickPerRequestMs: 1_000,
    secrets: WORKSHOP_SECRETS,
    registryCredentials: ['ghcr-ahelme'],
  });
});
afterAll(async () => {
  await emu?.stop();
  await rm(tmp, { recursive: true, force: true });
});

function deploy(inputs: Record<string, string | number>): Promise<ActionRun> {
  return runAction('deploy-serverless', {
    inputs: {
      'api-url': emu.apiUrl,
      'verda-client-id': emu.clientId,
      'verda-client-secret': emu.clientSecret,
      'inference-api-key': emu.inferenceKey,
      'poll-interval': '20ms',
      'wait-timeout': '60s',
      ...inputs,
    },
    secrets: [emu.clientSecret, emu.inferenceKey, emu.clientId],
  });
}

async function config(mutate: (c: Record<string, unknown>) => void): Promise<string> {
  const c = parseYaml(await readFile(path.join(repoRoot, 'config/workshop.yml'), 'utf8')) as Record<
    string,
    unknown
  >;
  mutate(c);
  const file = path.join(tmp, `workshop-${Math.random().toString(36).slice(2)}.yml`);
  await writeFile(file, stringifyYaml(c));
  return file;
}

/** The price per replica-hour as the emulator serves it (a string for some models). */
async function emulatorPrice(model: string, spot: boolean): Promise<number> {
  const token = (await (
    await fetch(`${emu.apiUrl}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        grant_type: 'client_credentials',
        client_id: emu.clientId,
        client_secret: emu.clientSecret,
      }),
    })
  ).json()) as { access_token: string };
  const rows = (await (
    await fetch(`${emu.apiUrl}/container-types?currency=usd`, {
      headers: { authorization: `Bearer ${token.access_token}` },
    })
  ).json()) as {
    model: string;
    gpu: { number_of_gpus: number };
    serverless_price: number | string;
    serverless_spot_price: number | string;
  }[];
  const row = rows.find((r) => r.model === model && r.gpu.number_of_gpus === 1);
  if (!row) throw new Error(`the emulator has no price for ${model}`);
  return Number(spot ? row.serverless_spot_price : row.serverless_price);
}

const usd = (n: number) => `$${n.toFixed(2)}`;
const writes = () => emu.writes().map((w) => `${w.method} ${w.path} ${w.status}`);

describe('the cost of a workshop beside the seed budget', () => {
  it.each([
    ['h100', 'H100', false],
    ['h200-spot', 'H200', true],
  ] as const)(
    'plan (%s) shows a workshop at 16 and 40 replicas from the emulator prices',
    async (preset, model, spot) => {
      emu.clearRequests();
      const price = await emulatorPrice(model, spot);
      const run = await deploy({ command: 'plan', preset, 'image-tag': 'v1' });
      expect(run.errors).toEqual([]);
      expect(run.code).toBe(0);
      expect(writes()).toEqual([]);
      expect(run.summary).toContain("against the seed's budget");
      const gpu = `1x ${model}${spot ? ' spot' : ''}`;
      for (const [replicas, scenario, budget, high] of [
        [16, 'acceptable', '$80–100', 100],
        [40, 'ideal', '$200–250', 250],
      ] as const) {
        const hourly = Math.round(price * replicas * 100) / 100;
        const workshop = Math.round(price * replicas * 3 * 100) / 100;
        const verdict = workshop > high ? `over by ${usd(workshop - high)}` : 'within';
        expect(run.summary).toContain(
          `| ${replicas} (${scenario}, ${gpu}) | ${usd(hourly)} | ${usd(workshop)} | ${budget} | ${verdict} |`,
        );
      }
    },
  );

  it('the figures for 40 H100 at $3.58/h: $429.60, over the ideal budget by $179.60', async () => {
    // The emulator's captured price, written out once so the arithmetic above is not circular.
    expect(await emulatorPrice('H100', false)).toBe(3.58);
    const run = await deploy({ command: 'plan', 'image-tag': 'v1' });
    expect(run.summary).toContain(
      '| 40 (ideal, 1x H100) | $143.20 | $429.60 | $200–250 | over by $179.60 |',
    );
    expect(run.summary).toContain(
      '| 16 (acceptable, 1x H100) | $57.28 | $171.84 | $80–100 | over by $71.84 |',
    );
  });
});

describe('the per-workshop cap', () => {
  it('start above max_workshop_cost_usd is refused after reading prices, with no write', async () => {
    // 40 x H100 for 3 h = $429.60: within the hourly cap ($143.20 <= $200), above a $400 cap.
    const file = await config((c) => (c.max_workshop_cost_usd = 400));
    emu.clearRequests();
    const run = await deploy({ command: 'start', 'image-tag': 'v1', config: file });
    expect(run.code).toBe(1);
    expect(run.errors.join('\n')).toContain(
      `Refusing: a workshop of 3 h at 40 x 1x H100 costs up to $429.60, above max_workshop_cost_usd in ${file} $400.00. Lower max-replicas (at most 37)`,
    );
    expect(emu.requests().some((r) => r.path.startsWith('/container-types'))).toBe(true);
    expect(writes()).toEqual([]);
    expect(run.outputs.changed).toBe('false');
    expect(run.summary).toContain('**Refused:** Refusing: a workshop of 3 h');
    expect(run.summary).toContain('| 40 (ideal, 1x H100) | $143.20 | $429.60 |');
  });

  it('a longer workshop moves the figures and the refusal; plan only warns', async () => {
    const file = await config((c) => (c.workshop_hours = 5));
    emu.clearRequests();
    const plan = await deploy({ command: 'plan', 'image-tag': 'v1', config: file });
    expect(plan.code).toBe(0);
    expect(plan.warnings.join('\n')).toContain(
      `a workshop of 5 h at max replicas costs up to $716.00, above max_workshop_cost_usd in ${file} $550: apply would refuse it`,
    );
    expect(plan.summary).toContain('| 40 (ideal, 1x H100) | $143.20 | $716.00 |');
    const apply = await deploy({ command: 'apply', 'image-tag': 'v1', config: file });
    expect(apply.code).toBe(1);
    expect(apply.errors.join('\n')).toContain('costs up to $716.00, above max_workshop_cost_usd');
    expect(writes()).toEqual([]);
  });

  it('within both caps the same start goes ahead (the cap is not a blanket refusal)', async () => {
    emu.clearRequests();
    const run = await deploy({
      command: 'apply',
      'image-tag': 'v1',
      'max-replicas': 16,
      wait: 'false',
    });
    expect(run.errors).toEqual([]);
    expect(writes()).toEqual(['POST /container-deployments 201']);
  });
});
