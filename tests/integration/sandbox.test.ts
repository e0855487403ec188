// `npm run sandbox` is the README's first command: it must run every pipeline to the end.
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from '../helpers/run-action.js';

describe('the embedded sandbox', () => {
  it('backs up the fixture host with models, re-syncs nothing, starts and stops the workshop', () => {
    const result = spawnSync(
      process.execPath,
      [
        '--openssl-legacy-provider',
        '--import',
        'tsx',
        path.join(repoRoot, 'src/cli/main.ts'),
        'sandbox',
      ],
      {
        cwd: repoRoot,
        encoding: 'utf8',
        timeout: 110_000,
        env: { ...process.env, NODE_OPTIONS: '' },
      },
    );
    const out = result.stdout;
    expect({ code: result.status, tail: out.slice(-400) }).toEqual({
      code: 0,
      tail: expect.stringContaining('every pipeline passed'),
    });
    expect(out).toMatch(/items=9\b/);
    expect(out).toMatch(/tailscale-ip=100\.89\.38\.43/);
    expect(out).toMatch(/manifest lists 9 items/);
    expect(out).toMatch(/uploaded=0\s+\n?.*skipped=3/s);
    expect(out).toMatch(/hourly-cost-max=143\.20/);
    expect(out).toMatch(/status=paused/);
    expect(out).not.toMatch(/::add-mask::|BEGIN OPENSSH PRIVATE KEY|AGE-SECRET-KEY-/);
    expect(result.stderr + out).not.toMatch(/add-mask/);
  }, 120_000);
});
