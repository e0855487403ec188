// The nightly workflow's wiring for backups a leaked nightly token cannot wipe: the backup job
// deletes nothing (apply-retention false), and retention is its own job with its own R2 secrets
// in its own environment, without SSH, the tailnet or the signing key.
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

type Step = { uses?: string; with?: Record<string, unknown> };
type Job = { needs?: string | string[]; environment?: unknown; steps?: Step[] };
const workflow = parseYaml(
  readFileSync(
    path.resolve(import.meta.dirname, '../../.github/workflows/nightly-backup.yml'),
    'utf8',
  ),
) as { jobs: Record<string, Job> };

const backupSteps = (job: Job) =>
  (job.steps ?? []).filter((s) => s.uses === './actions/backup-verda');
const jobs = Object.entries(workflow.jobs);
const byMode = (mode: string) =>
  jobs.filter(([, job]) => backupSteps(job).some((s) => (s.with?.mode ?? 'backup') === mode));

describe('nightly-backup.yml: retention as its own job', () => {
  it('the backup job applies no retention', () => {
    const backups = byMode('backup');
    expect(backups.map(([id]) => id)).toEqual(['backup']);
    for (const step of backupSteps(backups[0]![1]))
      expect(String(step.with?.['apply-retention'])).toBe('false');
  });

  it('the retention job runs after it, with its own R2 secrets in its own environment, and nothing of SSH', () => {
    const retention = byMode('retention');
    expect(retention).toHaveLength(1);
    const [, job] = retention[0]!;
    expect([job.needs].flat()).toContain('backup');
    expect(job.environment).toBe('backup-retention');
    const step = backupSteps(job)[0]!;
    expect(step.with?.['r2-access-key-id']).toBe('${{ secrets.R2_RETENTION_ACCESS_KEY_ID }}');
    expect(step.with?.['r2-secret-access-key']).toBe(
      '${{ secrets.R2_RETENTION_SECRET_ACCESS_KEY }}',
    );
    for (const input of [
      'host',
      'user',
      'ssh-private-key',
      'host-key-fingerprints',
      'signing-key',
      'age-recipients',
      'github-token',
    ])
      expect(Object.keys(step.with ?? {})).not.toContain(input);
    expect((job.steps ?? []).map((s) => s.uses ?? '')).not.toContainEqual(
      expect.stringContaining('tailscale'),
    );
    // The backup job's token is not the retention job's.
    const backupStep = backupSteps(workflow.jobs.backup!)[0]!;
    expect(backupStep.with?.['r2-secret-access-key']).not.toBe(step.with?.['r2-secret-access-key']);
    expect(JSON.stringify(workflow.jobs.backup)).not.toContain('R2_RETENTION_');
  });
});

describe('nightly-backup.yml: drift detection', () => {
  type VerifyStep = Step & { if?: string; name?: string };
  const steps = (workflow.jobs.backup?.steps ?? []) as VerifyStep[];
  const at = (uses: string) => steps.findIndex((s) => s.uses === uses);

  it('checks the host after the backup, even when the backup failed, with the alert on', () => {
    const verify = at('./actions/verify-host');
    expect(verify).toBeGreaterThan(at('./actions/backup-verda'));
    const step = steps[verify]!;
    expect(step.if).toBe('${{ !cancelled() }}');
    expect(step.with?.alert).toBe('true');
    expect(step.with?.['github-token']).toBe('${{ github.token }}');
  });

  it('reaches the host as the backup does: same host, user, key and pins', () => {
    const backup = steps[at('./actions/backup-verda')]!.with ?? {};
    const verify = steps[at('./actions/verify-host')]!.with ?? {};
    for (const input of ['host', 'user', 'ssh-private-key', 'host-key-fingerprints'])
      expect([input, verify[input]]).toEqual([input, backup[input]]);
    // The drift check needs no R2 or signing secret.
    expect(JSON.stringify(verify)).not.toMatch(/R2_|SIGNING|AGE/);
  });
});
