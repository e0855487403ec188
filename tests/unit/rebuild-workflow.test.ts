// rebuild-host.yml and gpu-host.yml cannot run here (no Verda, no GitHub): their wiring is checked.
// The phases run in order, each job that spends money or holds the restore identity is in a
// reviewed environment, the first SSH connection pins the bootstrap key provision-host made and
// later ones the backup's own keys, the preset must be typed twice, and the hourly reap and the
// read-only commands are the only ones that run without review.
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { evaluateField } from '../helpers/github-expr.js';

const root = path.resolve(import.meta.dirname, '../..');
type Step = { id?: string; uses?: string; run?: string; with?: Record<string, string> };
type Job = {
  needs?: string | string[];
  if?: string;
  environment?: string;
  steps: Step[];
  outputs?: Record<string, string>;
};
const load = (file: string) =>
  parseYaml(readFileSync(path.join(root, '.github/workflows', file), 'utf8')) as {
    on: { workflow_dispatch: { inputs: Record<string, { options?: string[] }> } };
    jobs: Record<string, Job>;
  };
const rebuild = load('rebuild-host.yml');
const jobs = rebuild.jobs;
const stepOf = (job: string, uses: string) =>
  jobs[job]!.steps.find((s) => s.uses === uses) ?? ({} as Step);
const needs = (job: string) => [jobs[job]!.needs ?? []].flat();

describe('rebuild-host.yml: one button', () => {
  it('runs plan, provision, restore, verify in that order, and the summary after all of them', () => {
    expect(needs('provision')).toEqual(['plan']);
    expect(needs('restore')).toEqual(['provision']);
    expect(needs('verify')).toEqual(['provision', 'restore']);
    expect(needs('summary').sort()).toEqual(['plan', 'provision', 'restore', 'verify']);
    expect(stepOf('plan', './actions/provision-host').with?.command).toBe('plan');
    expect(stepOf('provision', './actions/provision-host').with?.command).toBe('create');
    expect(stepOf('restore', './actions/restore-host').uses).toBe('./actions/restore-host');
    expect(stepOf('verify', './actions/verify-host').uses).toBe('./actions/verify-host');
    expect(stepOf('summary', './actions/provision-host').with?.command).toBe('status');
  });

  it('provisions only when the preset is typed twice', () => {
    const gate = jobs.provision!.if ?? '';
    for (const preset of rebuild.on.workflow_dispatch.inputs.preset!.options ?? []) {
      expect(evaluateField(gate, { inputs: { preset, confirm: preset } })).toBe(true);
      expect(evaluateField(gate, { inputs: { preset, confirm: '' } })).toBe(false);
    }
    expect(evaluateField(gate, { inputs: { preset: 'h100', confirm: 'v100-test' } })).toBe(false);
  });

  it('fails at once, naming why, when the preset is not typed twice', () => {
    const check = jobs.plan!.steps.find((st) => st.run?.includes('exit 1')) as Step & {
      if?: string;
    };
    expect(check.run).toContain('::error::confirm must be the preset');
    expect(evaluateField(check.if ?? '', { inputs: { preset: 'h100', confirm: '' } })).toBe(true);
    expect(evaluateField(check.if ?? '', { inputs: { preset: 'h100', confirm: 'h100' } })).toBe(
      false,
    );
  });

  it('restores only onto an instance this run created (one with a bootstrap key)', () => {
    const gate = jobs.restore!.if ?? '';
    const run = (fingerprint: string) =>
      evaluateField(gate, {
        needs: { provision: { outputs: { 'bootstrap-fingerprint': fingerprint } } },
      });
    expect(run('SHA256:abc')).toBe(true);
    expect(run('')).toBe(false);
  });

  it('keeps money and the restore identity behind reviewed environments', () => {
    expect(jobs.plan!.environment).toBe('gpu-host-readonly');
    expect(jobs.provision!.environment).toBe('gpu-host');
    expect(jobs.restore!.environment).toBe('gpu-host-restore');
    expect(jobs.summary!.environment).toBe('gpu-host-readonly');
    // The identity of the whole host only where it is needed.
    for (const [id, job] of Object.entries(jobs)) {
      const text = JSON.stringify(job);
      if (text.includes('secrets.BACKUP_AGE_IDENTITY')) expect(id).toBe('restore');
      if (/secrets\.VERDA_CLIENT_(ID|SECRET)/.test(text)) expect(job.environment).toBeDefined();
    }
    // The restore reads the bucket with the read-only token; it never writes backups.
    const restore = stepOf('restore', './actions/restore-host').with ?? {};
    expect(restore['r2-access-key-id']).toBe('${{ secrets.R2_READ_ACCESS_KEY_ID }}');
  });

  it('pins the bootstrap key for the first connection, the backup keys after the restore', () => {
    expect(jobs.provision!.outputs?.['bootstrap-fingerprint']).toBe(
      '${{ steps.host.outputs.bootstrap-host-key-fingerprint }}',
    );
    const create = stepOf('provision', './actions/provision-host').with ?? {};
    expect(create['ssh-private-key']).toBe('${{ secrets.VERDA_SSH_PRIVATE_KEY }}');
    const pins = jobs.restore!.steps.find((s) => s.id === 'pins');
    expect(pins?.run).toContain('"$BOOTSTRAP"');
    const restore = stepOf('restore', './actions/restore-host').with ?? {};
    expect(restore['host-key-fingerprints']).toBe('${{ steps.pins.outputs.fingerprints }}');
    expect(restore.host).toBe('${{ needs.provision.outputs.ip }}');
    const pull = stepOf('restore', './actions/sync-models').with ?? {};
    expect(pull.direction).toBe('pull');
    // The host fetches the vault from R2 itself: the runner only signs.
    expect(pull['pull-via']).toBe('host');
    expect(pull['host-key-fingerprints']).toBe(
      '${{ steps.restore.outputs.restored-host-key-fingerprints }}',
    );
    const verify = stepOf('verify', './actions/verify-host').with ?? {};
    expect(verify['host-key-fingerprints']).toBe('${{ vars.VERDA_HOST_KEY_FINGERPRINTS }}');
    // Verified at its old Tailscale IP, through the tailnet: the restored identity works.
    expect(verify.host).toBe('${{ vars.VERDA_HOST }}');
    const tailnet = jobs.verify!.steps.find((s) => s.uses?.startsWith('tailscale/github-action@'));
    expect(tailnet?.with?.ping).toBe('${{ vars.VERDA_HOST }}');
  });

  it('skips the model pull when asked', () => {
    const models = jobs.restore!.steps.find((s) => s.uses === './actions/sync-models') as Step & {
      if?: string;
    };
    expect(evaluateField(models.if ?? '', { inputs: { models: 'skip' } })).toBe(false);
    expect(evaluateField(models.if ?? '', { inputs: { models: 'pull' } })).toBe(true);
  });
});

describe('gpu-host.yml: by hand, and the hourly safety net', () => {
  const wf = load('gpu-host.yml');
  const host = wf.jobs.host!;
  const environmentOf = (contexts: Record<string, unknown>) =>
    evaluateField(host.environment ?? '', contexts);
  const command = host.steps.find((s) => s.uses === './actions/provision-host')?.with?.command;
  const commandOf = (contexts: Record<string, unknown>) => evaluateField(command ?? '', contexts);

  it.each([
    ['plan', 'gpu-host-readonly'],
    ['status', 'gpu-host-readonly'],
    ['reap', 'gpu-host-readonly'],
    ['stop', 'gpu-host'],
    ['start', 'gpu-host'],
    ['delete', 'gpu-host'],
  ])('dispatching %s runs in %s', (command, environment) => {
    expect(
      environmentOf({ github: { event_name: 'workflow_dispatch' }, inputs: { command } }),
    ).toBe(environment);
  });

  it('the schedule reaps, and only reaps, without review', () => {
    const contexts = { github: { event_name: 'schedule' }, inputs: {} };
    expect(environmentOf(contexts)).toBe('gpu-host-readonly');
    expect(commandOf(contexts)).toBe('reap');
  });
});
