// config/workshop.yml as committed (the seed's Phase 13 values) and the schema's strictness.
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../../src/lib/errors.js';
import { InputError } from '../../src/lib/errors.js';
import { costCap, loadWorkshopConfig, parseWorkshopConfig } from '../../src/serverless/config.js';

const file = path.resolve(import.meta.dirname, '../../config/workshop.yml');
type Section = Record<string, unknown>;
type Raw = {
  [key: string]: unknown;
  image: Section;
  compute: Section;
  container: Section;
  scaling: Section;
  presets: Section;
};
const raw = () => parseYaml(readFileSync(file, 'utf8')) as Raw;

function problems(mutate: (c: Raw) => void): string[] {
  const c = raw();
  mutate(c);
  try {
    parseWorkshopConfig(c, 'workshop.yml');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('config/workshop.yml', () => {
  it('holds the Phase 13 desired state', async () => {
    const c = await loadWorkshopConfig(file);
    expect(c.image.repository).toBe('ghcr.io/ahelme/comfyui-worker');
    expect(c.image.tag).toBeUndefined();
    expect(c.compute).toEqual({ gpu: 'H100', count: 1 });
    expect(c.scaling).toMatchObject({
      min_replicas: 0,
      max_replicas: 40,
      queue_load: 1,
      scale_up_delay_seconds: 0,
      scale_down_delay_seconds: 300,
      concurrent_requests_per_replica: 1,
    });
    expect(c.container.port).toBe(8188);
    // Readiness (models present, not draining), which Verda routes on; not liveness (/health).
    expect(c.container.health_path).toBe('/ready');
    expect(c.container.command?.join(' ')).toBe(
      'python3 /opt/ComfyUI/main.py --listen 0.0.0.0 --port 8188 --extra-model-paths-config /opt/comfyui-worker/extra_model_paths.yaml',
    );
    expect(c.container.volumes.map((v) => `${v.type} ${v.mount_path}`)).toEqual([
      'shared /mnt/sfs',
      'scratch /data',
    ]);
    expect(c.container.env.HF_TOKEN).toEqual({ secret: 'hf-token' });
    // The worker's R2 output settings: the bucket plain, every credential a secret reference.
    expect(c.container.env.OUTPUT_BUCKET).toEqual(expect.any(String));
    for (const name of [
      'RCLONE_CONFIG_R2_ACCESS_KEY_ID',
      'RCLONE_CONFIG_R2_SECRET_ACCESS_KEY',
      'RCLONE_CONFIG_R2_ENDPOINT',
    ]) {
      expect(c.container.env[name]).toEqual({ secret: expect.any(String) });
    }
    expect(Object.keys(c.presets)).toEqual([
      'h100',
      'h100-spot',
      'h200',
      'h200-spot',
      'b300',
      'b300-spot',
    ]);
    expect(c.presets['b300-spot']).toEqual({ gpu: 'B300', spot: true });
    expect(c.default_preset).toBe('h100');
    expect(c.max_hourly_cost_usd).toBe(200);
    expect(c.max_workshop_cost_usd).toBe(550);
  });
});

describe('the hard cost cap', () => {
  it('applies the config cap when the input is empty, and a lower input instead', async () => {
    const c = await loadWorkshopConfig(file);
    expect(costCap(c, 'config/workshop.yml', undefined)).toEqual({
      usd: 200,
      name: 'max_hourly_cost_usd in config/workshop.yml',
    });
    expect(costCap(c, 'config/workshop.yml', 150)).toEqual({ usd: 150, name: 'max-hourly-cost' });
    expect(costCap(c, 'config/workshop.yml', 200)).toEqual({ usd: 200, name: 'max-hourly-cost' });
  });

  it('refuses an input above the cap, naming the input, the value and the cap', async () => {
    const c = await loadWorkshopConfig(file);
    const above = () => costCap(c, 'config/workshop.yml', 200.01);
    expect(above).toThrow(InputError);
    expect(above).toThrow(
      `Input 'max-hourly-cost' is invalid: got "200.01"; expected at most 200, the cap max_hourly_cost_usd in config/workshop.yml (the input can only lower it; empty = the cap).`,
    );
  });
});

describe('the schema', () => {
  it.each<[string, (c: Raw) => void, string]>([
    [
      'a misspelt key',
      (c) => (c.scaling.max_replica = 3),
      'scaling: Unrecognized key: "max_replica"',
    ],
    ['an unknown top-level key', (c) => (c.gpu = 'H100'), '(top level): Unrecognized key: "gpu"'],
    [
      'an invalid name',
      (c) => (c.name = 'Comfy_Workers'),
      'name: lower-case letters, digits and inner dashes',
    ],
    ['a 64-character name', (c) => (c.name = 'a'.repeat(64)), 'name: Too big'],
    [
      'max below min',
      (c) => (c.scaling.min_replicas = 50),
      'scaling.max_replicas: must be >= min_replicas',
    ],
    ['an unknown GPU', (c) => (c.compute.gpu = 'H100-SXM5-80GB'), 'compute.gpu: Invalid option'],
    [
      'a latest tag',
      (c) => (c.image.tag = 'latest'),
      'image.tag: a tag other than latest, or sha256:<digest>',
    ],
    [
      'a tagged repository',
      (c) => (c.image.repository = 'ghcr.io/ahelme/comfyui-worker:v1'),
      'image.repository: an image repository without tag',
    ],
    ['a queue load below 1', (c) => (c.scaling.queue_load = 0.5), 'scaling.queue_load: Too small'],
    ['a port out of range', (c) => (c.container.port = 70000), 'container.port: Too big'],
    [
      'a bad env name',
      (c) => ((c.container.env as Record<string, unknown>).lower = 'x'),
      'container.env.lower',
    ],
    [
      'a shared volume without id',
      (c) => (c.container.volumes = [{ type: 'shared', mount_path: '/mnt/sfs' }]),
      'container.volumes[0].volume_id',
    ],
    [
      'two volumes on one path',
      (c) =>
        (c.container.volumes = [
          { type: 'scratch', mount_path: '/data' },
          { type: 'scratch', mount_path: '/data' },
        ]),
      'container.volumes: two volumes share a mount_path',
    ],
    [
      'a default preset that does not exist',
      (c) => (c.default_preset = 'a100'),
      'default_preset: not one of the presets',
    ],
    [
      'no cost cap',
      (c) => delete c.max_hourly_cost_usd,
      'max_hourly_cost_usd: Invalid input: expected number, received undefined',
    ],
    ['a zero cost cap', (c) => (c.max_hourly_cost_usd = 0), 'max_hourly_cost_usd: Too small'],
    [
      'an infinite cost cap (YAML .inf)',
      (c) => (c.max_hourly_cost_usd = Infinity),
      'max_hourly_cost_usd: Invalid input: expected number, received Infinity',
    ],
    [
      'a cost cap as text',
      (c) => (c.max_hourly_cost_usd = 'none'),
      'max_hourly_cost_usd: Invalid input: expected number',
    ],
    [
      'a preset with an unknown GPU',
      (c) => ((c.presets as Record<string, unknown>).x = { gpu: 'V100', spot: false }),
      'presets.x.gpu: Invalid option',
    ],
  ])('reports %s with its path', (_what, mutate, expected) => {
    expect(problems(mutate).join('\n')).toContain(expected);
  });

  it('names the file and every problem at once', () => {
    const c = raw();
    c.scaling.min_replicas = -1;
    c.compute.count = 0;
    expect(() => parseWorkshopConfig(c, 'x.yml')).toThrow(
      /^Config x.yml is invalid:\n {2}- compute.count: .*\n {2}- scaling.min_replicas: /,
    );
  });

  it('reports unreadable and non-YAML files', async () => {
    await expect(loadWorkshopConfig('/nonexistent.yml')).rejects.toThrow(/cannot be read/);
    await expect(
      loadWorkshopConfig(path.resolve(import.meta.dirname, '../../package.json')),
    ).rejects.toThrow(ConfigError);
  });
});
