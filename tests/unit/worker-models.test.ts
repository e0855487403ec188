// comfyui-worker/models.json, the worker's list of the models the workshop needs: generated from
// config/models.yml (required models only), sizes and sha256 filled from the vault's manifest,
// and the committed file kept in sync with the config (like dist/).
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseModelsConfig, loadModelsConfig } from '../../src/models/config.js';
import { parseManifestText } from '../../src/models/bucket.js';
import { renderWorkerModelList, workerModelList } from '../../src/models/worker-models.js';

const root = path.resolve(import.meta.dirname, '../..');
const sha = (c: string) => c.repeat(64);

const config = parseModelsConfig('models.yml', {
  models: [
    { path: 'checkpoints/a.safetensors', required: true },
    { path: 'loras/b.safetensors', size: 20, sha256: sha('b') },
    { path: 'loras/optional.safetensors', required: false },
  ],
});

describe('workerModelList', () => {
  it('keeps the required models only, with null size and sha256 when nothing records them', () => {
    expect(workerModelList(config)).toEqual({
      version: 1,
      source: 'models.yml',
      models: [
        { path: 'checkpoints/a.safetensors', size: null, sha256: null },
        { path: 'loras/b.safetensors', size: 20, sha256: sha('b') },
      ],
    });
  });

  it('fills sizes and sha256 from the vault manifest', () => {
    const manifest = parseManifestText(
      JSON.stringify({
        version: 1,
        updated: '2026-01-01T00:00:00Z',
        files: [
          { path: 'checkpoints/a.safetensors', size: 1234, sha256: sha('a') },
          { path: 'loras/b.safetensors', size: 20, sha256: sha('b') },
        ],
      }),
      'models-manifest.json',
    );
    expect(workerModelList(config, manifest).models[0]).toEqual({
      path: 'checkpoints/a.safetensors',
      size: 1234,
      sha256: sha('a'),
    });
  });

  it('refuses a manifest that disagrees with models.yml, naming both values', () => {
    const manifest = new Map([['loras/b.safetensors', { size: 21, sha256: sha('b') }]]);
    expect(() => workerModelList(config, manifest)).toThrow(
      'model loras/b.safetensors: models.yml says size 20 but the models manifest says 21',
    );
  });

  it('the committed comfyui-worker/models.json is what config/models.yml gives', async () => {
    const fresh = renderWorkerModelList(
      workerModelList(await loadModelsConfig(path.join(root, 'config/models.yml'))),
    );
    const committed = readFileSync(path.join(root, 'comfyui-worker/models.json'), 'utf8');
    // Same models and values; `source` is the path as the generator was called (relative).
    expect(JSON.parse(committed)).toEqual({ ...JSON.parse(fresh), source: 'config/models.yml' });
  });

  it('the worker (Python) reads the generated list', () => {
    const r = spawnSync(
      'python3',
      [
        '-B',
        path.join(root, 'comfyui-worker/worker.py'),
        'check-models',
        '--list',
        path.join(root, 'comfyui-worker/models.json'),
        '--models-dir',
        '/nonexistent',
      ],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(1);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('summary\t0\t4\t0');
    expect(r.stdout).toContain('missing\tcheckpoints/ltx-2-19b-dev-fp8.safetensors\tno such file');
  });
});
