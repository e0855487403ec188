// The weekly rebuild drill (restore-drill.yml, scripts/rebuild-drill/): it cannot run here (no
// Docker engine; tests/integration/host-rebuild.test.ts runs the same RESTORE.sh on a booted
// nspawn host instead), so its wiring is checked: the backup it rebuilds is the one the drill
// verified, the restored Tailscale identity never comes online, the checks it skips are the ones
// config/verify-drill.yml turns off, the identity and the container are removed whatever happens.
import { describe, expect, it } from '@jest/globals';
import { validate } from 'dockerfile-utils';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadVerifyConfig } from '../../src/host/verify-config.js';

const root = path.resolve(import.meta.dirname, '../..');
const read = (rel: string) => readFileSync(path.join(root, rel), 'utf8');
type Step = { name?: string; id?: string; if?: string; uses?: string; run?: string };
type WithStep = Step & { with?: Record<string, string> };
const workflow = parseYaml(read('.github/workflows/restore-drill.yml')) as {
  jobs: Record<string, { steps: WithStep[] }>;
};
const steps = workflow.jobs.drill!.steps;
const runSh = read('scripts/rebuild-drill/run.sh');

describe('the weekly rebuild drill', () => {
  it('rebuilds the backup the drill verified, in the same job, after the drill', () => {
    const drill = steps.findIndex((s) => s.uses === './actions/restore-drill');
    const rebuild = steps.findIndex((s) => s.id === 'rebuild');
    expect(rebuild).toBeGreaterThan(drill);
    const kept = steps[drill]!.with?.['keep-backup-dir'];
    expect(kept).toBe('${{ runner.temp }}/verified-backup');
    expect(steps[rebuild]!.run).toContain('"$RUNNER_TEMP/verified-backup"');
  });

  it('never brings the restored Tailscale identity online, and skips what a runner cannot have', async () => {
    expect(runSh).toMatch(/--skip tailscale\b/);
    const skipped = [...runSh.matchAll(/--skip-check (\S+)/g)].map((m) => m[1]).sort();
    const plan = await loadVerifyConfig(path.join(root, 'config/verify-drill.yml'));
    const all = (await loadVerifyConfig(path.join(root, 'config/verify.yml'))).checks;
    const off = all.map((c) => c.id).filter((id) => !plan.checks.some((c) => c.id === id));
    // RESTORE.sh's own verify step and verify-host leave out the same checks.
    expect(skipped).toEqual([...off].sort());
    expect(off).toEqual(expect.arrayContaining(['tailscale', 'tailscale-ip']));
  });

  it('verifies from outside, pinned to the real host key fingerprints, with the drill checks', () => {
    const verify = steps.find((s) => s.uses === './actions/verify-host')!;
    expect(verify.with).toMatchObject({
      host: '${{ steps.rebuild.outputs.address }}',
      'ssh-private-key': '${{ steps.rebuild.outputs.ssh-key }}',
      'host-key-fingerprints': '${{ vars.VERDA_HOST_KEY_FINGERPRINTS }}',
      config: 'config/verify-drill.yml',
    });
    // The throwaway key is masked before it becomes a step output.
    expect(runSh.indexOf('::add-mask::')).toBeLessThan(runSh.indexOf('ssh-key<<'));
  });

  it('removes the container, the identity and the kept backup whatever happened', () => {
    const cleanup = steps.find((s) => /Remove the rebuilt container/.test(s.name ?? ''))!;
    expect(cleanup.if).toBe('${{ always() }}');
    for (const what of ['comfyume-fresh-host', 'drill-identity', 'verified-backup'])
      expect(cleanup.run).toContain(what);
    expect(steps.indexOf(cleanup)).toBeGreaterThan(steps.findIndex((s) => s.id === 'rebuild'));
  });

  it('has a clean container recipe and script', () => {
    expect(validate(read('scripts/rebuild-drill/Dockerfile')).map((d) => d.message)).toEqual([]);
    if (existsSync('/usr/bin/shellcheck')) {
      const checked = spawnSync(
        '/usr/bin/shellcheck',
        [path.join(root, 'scripts/rebuild-drill/run.sh')],
        {
          encoding: 'utf8',
        },
      );
      expect(checked.stdout).toBe('');
    }
  });
});
