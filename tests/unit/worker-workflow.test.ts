// The worker-image workflow cannot run here: beyond actionlint and the wiring checks every
// workflow gets (workflows.test.ts), this checks what makes it safe: the smoke test gates the push,
// the cache/provenance/SBOM settings, no `latest`, no secret as a build argument.
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

const root = path.resolve(import.meta.dirname, '../..');
const secretName = /TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_KEY/i;

type Step = {
  name?: string;
  shell?: string;
  id?: string;
  uses?: string;
  run?: string;
  if?: string;
  with?: Record<string, unknown>;
  env?: Record<string, string>;
};
type ImageWorkflow = {
  on: { push: { branches: string[]; paths: string[]; tags: string[] }; workflow_dispatch: unknown };
  permissions: Record<string, string>;
  jobs: { image: { permissions: Record<string, string>; steps: Step[] } };
};

describe('worker-image workflow', () => {
  const workflow = parseYaml(
    readFileSync(path.join(root, '.github/workflows/worker-image.yml'), 'utf8'),
  ) as ImageWorkflow;
  const steps = workflow.jobs.image.steps;
  const builds = steps.filter((s) => s.uses?.startsWith('docker/build-push-action@'));
  const smokeIndex = steps.findIndex((s) => s.run?.includes('comfyui-worker/smoke-test.sh'));

  it('runs on pushes to main that touch the image, on v* tags and by hand', () => {
    expect(workflow.on.push.branches).toEqual(['main']);
    expect(workflow.on.push.paths).toContain('comfyui-worker/**');
    expect(workflow.on.push.tags).toEqual(['v*']);
    expect(workflow.on).toHaveProperty('workflow_dispatch');
  });

  it('has least privilege: contents read, packages write, no id-token', () => {
    expect(workflow.permissions).toEqual({ contents: 'read' });
    expect(workflow.jobs.image.permissions).toEqual({ contents: 'read', packages: 'write' });
  });

  it('smoke-tests the loaded image before anything is pushed', () => {
    const [smoke, push] = builds;
    expect(builds).toHaveLength(2);
    expect(smoke!.with).toMatchObject({ load: true, push: false, tags: 'comfyui-worker:smoke' });
    expect(steps[smokeIndex]!.run).toContain('smoke-test.sh comfyui-worker:smoke');
    expect(steps.indexOf(smoke!)).toBeLessThan(smokeIndex);
    expect(steps.indexOf(push!)).toBeGreaterThan(smokeIndex);
    const login = steps.findIndex((s) => s.uses?.startsWith('docker/login-action@'));
    expect(login).toBeGreaterThan(smokeIndex);
  });

  it('pushes with the registry cache, provenance and an SBOM', () => {
    const push = builds[1]!.with!;
    expect(push.push).toBe(true);
    expect(push['cache-to']).toMatch(/^type=registry,ref=.*:buildcache,mode=max$/);
    expect(push['cache-from']).toMatch(/^type=registry,ref=.*:buildcache$/);
    expect(builds[0]!.with!['cache-from']).toBe(push['cache-from']);
    expect(push.provenance).toBe('mode=max');
    expect(push.sbom).toBe(true);
  });

  it('never tags latest and tags sha, branch, semver and date', () => {
    const meta = steps.find((s) => s.uses?.startsWith('docker/metadata-action@'))!.with!;
    expect(String(meta.flavor)).toContain('latest=false');
    for (const kind of ['type=sha', 'type=ref,event=branch', 'type=semver', '{{date ']) {
      expect(String(meta.tags)).toContain(kind);
    }
  });

  it('passes no secret as a build argument', () => {
    for (const build of builds) {
      expect(String(build.with!['build-args'] ?? '')).not.toMatch(secretName);
      expect(String(build.with!['build-args'] ?? '')).not.toContain('secrets.');
    }
  });

  it('checks comfyui-ref first, and its check refuses what git could take for an option', () => {
    const checkIndex = steps.findIndex((s) => s.name === 'Check inputs');
    expect(checkIndex).toBe(0);
    const script = steps[checkIndex]!.run!;
    const check = (ref: string) =>
      spawnSync('bash', ['-euo', 'pipefail', '-c', script], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', COMFYUI_REF: ref },
        encoding: 'utf8',
      });
    expect(steps[checkIndex]!.shell).toBe('bash');
    for (const good of ['', 'v0.11.1', 'master', 'feature/x', 'a'.repeat(40), 'a'.repeat(100)]) {
      expect(check(good).status).toBe(0);
    }
    for (const bad of ['--upload-pack=touch /tmp/x', '-x', 'a;b', '$(id)', 'v1 v2']) {
      const r = check(bad);
      expect(r.status).toBe(1);
      expect(r.stdout).toBe(
        `::error title=comfyui-ref::comfyui-ref must be a ComfyUI tag, branch or commit (letters, digits, . _ / -, at most 100), got '${bad}'\n`,
      );
    }
  });

  it('checks the whole comfyui-ref: a second line (another build-arg) fails, printed on one line', () => {
    const script = steps.find((s) => s.name === 'Check inputs')!.run!;
    const check = (ref: string) =>
      spawnSync('bash', ['-e', '-c', script], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', COMFYUI_REF: ref },
        encoding: 'utf8',
      });
    const multiLine = [
      'v0.11.1\nCOMFYUI_REF=evil',
      'master\n--upload-pack=touch /tmp/x',
      'v1\nv2',
      'v1\n',
      '\nv1',
      'v1\r',
      'v1\n::add-mask::x',
      'a'.repeat(101),
    ];
    for (const bad of multiLine) {
      const r = check(bad);
      expect({ bad, status: r.status }).toEqual({ bad, status: 1 });
      // One annotation line: a newline in the value cannot start another workflow command.
      expect(r.stdout.split('\n')).toHaveLength(2);
      expect(r.stdout).toMatch(/^::error title=comfyui-ref::comfyui-ref must be .*, got \S/);
    }
    expect(check('v1\n::add-mask::x').stdout).toContain("got $'v1\\n::add-mask::x'");
  });

  describe('run summary', () => {
    const summary = steps.find((s) => s.run?.includes('GITHUB_STEP_SUMMARY'))!;
    const render = (env: Record<string, string>) => {
      const dir = mkdtempSync(path.join(tmpdir(), 'worker-summary-'));
      const file = path.join(dir, 'summary.md');
      const r = spawnSync('bash', ['-eo', 'pipefail', '-c', summary.run!], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', GITHUB_STEP_SUMMARY: file, ...env },
        encoding: 'utf8',
      });
      const text = readFileSync(file, 'utf8');
      rmSync(dir, { recursive: true, force: true });
      return { status: r.status, text };
    };

    it('always runs and reads the push digest through env', () => {
      expect(summary.if).toBe('always()');
      expect(summary.run).not.toContain('${{');
      expect(JSON.stringify(summary.env)).toContain('steps.push.outputs.digest');
    });

    it('names the digest and the image-tag for deploy-serverless after a push', () => {
      const digest = `sha256:${'ab'.repeat(32)}`;
      const { status, text } = render({
        IMAGE: 'ghcr.io/ahelme/comfyui-worker',
        SHA_TAG: 'sha-0123abc',
        DIGEST: digest,
        TAGS: 'ghcr.io/ahelme/comfyui-worker:sha-0123abc\nghcr.io/ahelme/comfyui-worker:main\n',
        PUSHED: 'success',
      });
      expect(status).toBe(0);
      expect(text).toContain(`| pinned reference | \`ghcr.io/ahelme/comfyui-worker@${digest}\` |`);
      expect(text).toContain(
        `| deploy-serverless \`image-tag\` | \`sha-0123abc\` or \`${digest}\` |`,
      );
      expect(text).toContain('- `ghcr.io/ahelme/comfyui-worker:main`');
    });

    it('says plainly when nothing was pushed', () => {
      const { status, text } = render({ PUSHED: 'skipped', DIGEST: '' });
      expect(status).toBe(0);
      expect(text).toContain('Nothing was pushed (push step: skipped).');
      expect(text).not.toContain('digest');
    });
  });
});
