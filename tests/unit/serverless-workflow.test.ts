// .github/workflows/workshop.yml: its dispatch inputs reach deploy-serverless, its choices match
// config/workshop.yml, and the guard rails (approval, concurrency, nightly stop) are in place.
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

const root = path.resolve(import.meta.dirname, '../..');
const read = (p: string) =>
  parseYaml(readFileSync(path.join(root, p), 'utf8')) as Record<string, never>;

interface Input {
  type: string;
  options?: string[];
  default?: unknown;
  description?: string;
}
interface Step {
  id?: string;
  uses?: string;
  with?: Record<string, string>;
}
interface Job {
  if?: string;
  environment?: string;
  needs?: string;
  steps?: Step[];
}
const wf = read('.github/workflows/workshop.yml') as unknown as {
  on: { workflow_dispatch: { inputs: Record<string, Input> }; schedule: { cron: string }[] };
  concurrency: { group: string; 'cancel-in-progress': boolean };
  jobs: Record<string, Job>;
};
const config = read('config/workshop.yml') as unknown as {
  presets: Record<string, unknown>;
  default_preset: string;
  name: string;
};
const actionInputs = Object.keys(
  (read('actions/deploy-serverless/action.yml') as unknown as { inputs: Record<string, unknown> })
    .inputs,
);
const deployStep = wf.jobs.fleet?.steps?.find((s) => s.uses === './actions/deploy-serverless');
const dispatch = wf.on.workflow_dispatch.inputs;

describe('workshop workflow', () => {
  it('passes every dispatch input to the action under the same name', () => {
    for (const name of Object.keys(dispatch)) {
      expect(actionInputs).toContain(name);
      expect(deployStep?.with?.[name]).toContain(`inputs.${name}`);
    }
  });

  it('offers the commands and presets the action and the config know, with the issue defaults', () => {
    expect(dispatch.command?.options?.sort()).toEqual([
      'apply',
      'delete',
      'plan',
      'scale',
      'start',
      'status',
      'stop',
    ]);
    expect(dispatch.preset?.options).toEqual(Object.keys(config.presets));
    expect(dispatch.preset?.default).toBe(config.default_preset);
    expect(dispatch['max-replicas']?.default).toBe('40');
    expect(dispatch['min-replicas']?.default).toBe('0');
    expect(dispatch.confirm?.description).toContain(config.name);
  });

  it('gates apply/start/delete behind the workshop environment and never cancels a run', () => {
    expect(wf.jobs.approve?.environment).toBe('workshop');
    expect(wf.jobs.approve?.if).toContain('["apply", "start", "delete"]');
    expect(wf.jobs.fleet?.needs).toBe('approve');
    expect(wf.jobs.fleet?.if).toContain(
      "needs.approve.result == 'success' || needs.approve.result == 'skipped'",
    );
    expect(wf.concurrency).toEqual({ group: 'workshop', 'cancel-in-progress': false });
  });

  it('stops the fleet on schedule unless WORKSHOP_RUNNING is true', () => {
    expect(wf.on.schedule).toHaveLength(1);
    expect(deployStep?.with?.command).toBe(
      "${{ github.event_name == 'schedule' && 'stop' || inputs.command }}",
    );
    expect(wf.jobs.fleet?.if).toContain("vars.WORKSHOP_RUNNING != 'true'");
  });

  it('hands credentials over as secrets only', () => {
    for (const name of ['verda-client-id', 'verda-client-secret', 'inference-api-key']) {
      expect(deployStep?.with?.[name]).toMatch(/^\$\{\{ secrets\.[A-Z_]+ \}\}$/);
    }
  });
});
