// .github/workflows/workshop.yml: its dispatch inputs reach deploy-serverless, its choices match
// config/workshop.yml, and the guard rails (approval on the job that holds the Verda secrets,
// concurrency, nightly stop) are in place. Expressions are evaluated with GitHub's evaluator.
import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { InputError } from '../../src/lib/errors.js';
import { inputsFromRecord } from '../../src/lib/inputs.js';
import { parseDeployInputs } from '../../src/actions/deploy-serverless/inputs.js';
import { evaluateField } from '../helpers/github-expr.js';

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
  secrets?: unknown;
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
      'load-test',
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

  it('never cancels a running workshop operation', () => {
    expect(wf.concurrency).toEqual({ group: 'workshop', 'cancel-in-progress': false });
  });

  it('stops the fleet on schedule unless WORKSHOP_RUNNING is true', () => {
    expect(wf.on.schedule).toHaveLength(1);
    const runs = (event: string, running: string) =>
      evaluateField(`\${{ ${wf.jobs.fleet?.if ?? 'true'} }}`, {
        github: { event_name: event },
        vars: { WORKSHOP_RUNNING: running },
      });
    expect(runs('schedule', 'false')).toBe(true);
    expect(runs('schedule', 'true')).toBe(false);
    expect(runs('workflow_dispatch', 'true')).toBe(true);
    expect(command({ github: { event_name: 'schedule' } })).toBe('stop');
  });

  it('does not let an empty max-hourly-cost lift the cap: the action applies the config cap', () => {
    expect(dispatch['max-hourly-cost']?.default ?? '').toBe('');
    expect(dispatch['max-hourly-cost']?.description).toContain('max_hourly_cost_usd');
  });

  it('hands credentials over as secrets only', () => {
    for (const name of ['verda-client-id', 'verda-client-secret', 'inference-api-key']) {
      expect(deployStep?.with?.[name]).toMatch(/^\$\{\{ secrets\.[A-Z_]+ \}\}$/);
    }
  });
});

// The Verda API credentials: whoever holds them can start 40 GPUs.
const verdaApiSecret = /secrets\.VERDA_(CLIENT_ID|CLIENT_SECRET|INFERENCE_API_KEY)\b/;
const reviewed = 'workshop';
const unreviewed = 'workshop-readonly';
/** Commands that only read or lower cost: the only ones allowed the environment without reviewers. */
const readOrLower = ['plan', 'status', 'stop'];

const environmentOf = (contexts: Record<string, unknown>) =>
  evaluateField(wf.jobs.fleet?.environment ?? '', contexts);
const command = (contexts: Record<string, unknown>) =>
  evaluateField(deployStep?.with?.command ?? '', contexts);

/** The command deploy-serverless would run with this value, or undefined when it refuses it. */
function actionRuns(value: string): string | undefined {
  const record = {
    command: value,
    'verda-client-id': 'id',
    'verda-client-secret': 'secret',
    'inference-api-key': 'key',
    'min-replicas': '1',
    'max-replicas': '2',
  };
  try {
    return parseDeployInputs(inputsFromRecord(record)).command;
  } catch (err) {
    if (err instanceof InputError && err.input === 'command') return undefined;
    throw err;
  }
}

describe('the Verda secrets are guarded where they are used', () => {
  const workflowDir = path.join(root, '.github/workflows');
  const files = readdirSync(workflowDir).filter((f) => /\.ya?ml$/.test(f));

  it.each(files)('%s: every job that gets a Verda API secret runs in an environment', (file) => {
    const text = readFileSync(path.join(workflowDir, file), 'utf8');
    const jobs = (parseYaml(text) as { jobs: Record<string, Job> }).jobs;
    for (const [id, job] of Object.entries(jobs)) {
      const json = JSON.stringify(job);
      // `secrets: inherit` hands every secret on, the Verda ones included.
      if (verdaApiSecret.test(json) || job.secrets === 'inherit') {
        expect({ id, environment: job.environment }).toEqual({
          id,
          environment: expect.any(String),
        });
      }
    }
  });

  it('has one job, the one with the secrets, and no separate approval job', () => {
    expect(Object.keys(wf.jobs)).toEqual(['fleet']);
    expect(JSON.stringify(wf.jobs.fleet)).toMatch(verdaApiSecret);
    expect(wf.jobs.fleet?.needs).toBeUndefined();
  });

  it.each([
    ['plan', unreviewed],
    ['status', unreviewed],
    ['stop', unreviewed],
    ['scale', reviewed],
    ['apply', reviewed],
    ['start', reviewed],
    ['delete', reviewed],
    // Renders jobs on as many replicas as the queue asks for: it costs, so it is reviewed.
    ['load-test', reviewed],
  ])('dispatching %s runs in the %s environment', (cmd, expected) => {
    const contexts = { github: { event_name: 'workflow_dispatch' }, inputs: { command: cmd } };
    expect(environmentOf(contexts)).toBe(expected);
    expect(command(contexts)).toBe(cmd);
  });

  it('covers every command option of the dispatch form in that table', () => {
    expect(dispatch.command?.options?.filter((c) => !readOrLower.includes(c)).sort()).toEqual([
      'apply',
      'delete',
      'load-test',
      'scale',
      'start',
    ]);
  });

  it('runs the nightly stop, and only a stop, in the environment without reviewers', () => {
    const contexts = { github: { event_name: 'schedule' } };
    expect(environmentOf(contexts)).toBe(unreviewed);
    expect(command(contexts)).toBe('stop');
  });

  // Whatever reaches the expression, the unreviewed environment only ever runs a command that
  // reads or lowers cost (GitHub compares strings case-insensitively: 'STOP' maps there too,
  // and the action refuses it). Any other event or value gets the reviewed environment.
  const events = ['workflow_dispatch', 'schedule', 'push', 'workflow_call', 'repository_dispatch'];
  const values = [
    ...deployCommandsAndVariants(),
    '',
    'Scale',
    'stop ',
    ' plan',
    'stop,scale',
    '["stop"]',
    'stop\nscale',
    'status && scale',
  ];
  it.each(events)('cannot be steered to the unreviewed environment on %s', (event) => {
    for (const value of [...values, undefined]) {
      const contexts = {
        github: { event_name: event },
        inputs: value === undefined ? {} : { command: value },
      };
      const env = environmentOf(contexts);
      expect([reviewed, unreviewed]).toContain(env);
      if (env !== unreviewed) continue;
      const runs = actionRuns(String(command(contexts) ?? ''));
      expect({ value, runs: runs === undefined || readOrLower.includes(runs) }).toEqual({
        value,
        runs: true,
      });
    }
  });
});

function deployCommandsAndVariants(): string[] {
  const options = dispatch.command?.options ?? [];
  return options.flatMap((c) => [c, c.toUpperCase(), c[0]!.toUpperCase() + c.slice(1)]);
}
