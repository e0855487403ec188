// The worker Dockerfile cannot be built here (no Docker engine): it is linted with dockerfile-utils
// (the validator behind VS Code's Dockerfile support) and checked against the image's own rules.
// Each rule is also shown to fire on a Dockerfile that breaks it.
import { describe, expect, it } from '@jest/globals';
import { validate } from 'dockerfile-utils';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');
const context = path.join(root, 'comfyui-worker');
const dockerfile = readFileSync(path.join(context, 'Dockerfile'), 'utf8');

type Instruction = { keyword: string; args: string; line: number };

/** Instructions with continuation lines joined, comments and the syntax directive dropped. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) return;
    if (pending !== '' && line.startsWith('#')) return;
    if (pending === '') start = index + 1;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    const full = `${pending}${line}`;
    pending = '';
    const match = /^(\S+)\s*(.*)$/.exec(full);
    if (match) out.push({ keyword: match[1]!.toUpperCase(), args: match[2]!, line: start });
  });
  return out;
}

const secretName = /TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_KEY/i;

/** The image's rules; each problem names the line and what is wrong. */
function dockerfileProblems(text: string): string[] {
  const problems: string[] = [];
  const all = instructions(text);
  const stages: string[] = [];
  let finalUser: string | undefined;
  let inFinalStage = false;
  const fromIndexes = all.flatMap((ins, i) => (ins.keyword === 'FROM' ? [i] : []));
  const lastFrom = fromIndexes[fromIndexes.length - 1] ?? -1;

  all.forEach((ins, i) => {
    const at = `line ${ins.line}`;
    if (ins.keyword === 'FROM') {
      const [image = '', , alias] = ins.args.replace(/--platform=\S+\s+/, '').split(/\s+/);
      if (!stages.includes(image)) {
        const tag = /^[^@]+:([^/:@]+)$/.exec(image)?.[1];
        if (!tag) problems.push(`${at}: base image ${image} has no exact tag`);
        else if (tag === 'latest') problems.push(`${at}: base image ${image} uses latest`);
      }
      if (alias) stages.push(alias);
      inFinalStage = i === lastFrom;
    }
    if (ins.keyword === 'USER' && inFinalStage) finalUser = ins.args.trim();
    if (ins.keyword === 'ARG' || ins.keyword === 'ENV') {
      for (const name of ins.args.match(/(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)/g) ?? []) {
        if (secretName.test(name)) {
          problems.push(`${at}: ${ins.keyword} ${name.trim()} looks like a secret`);
        }
      }
    }
    if (ins.keyword === 'RUN') {
      const usesSecret = /--mount=type=secret/.test(ins.args);
      if (/hf_token|HF_TOKEN/.test(ins.args) && !usesSecret) {
        problems.push(`${at}: the HF token is used without a BuildKit secret mount`);
      }
      if (/\bpip install\b/.test(ins.args) && !/target=\/root\/\.cache\/pip/.test(ins.args)) {
        problems.push(`${at}: pip install without a pip cache mount`);
      }
      if (/apt-get install/.test(ins.args) && !/target=\/var\/cache\/apt/.test(ins.args)) {
        problems.push(`${at}: apt-get install without an apt cache mount`);
      }
      if (/huggingface\.co|\.safetensors/.test(ins.args)) {
        problems.push(`${at}: models are baked into the image`);
      }
    }
    if (ins.keyword === 'COPY' || ins.keyword === 'ADD') {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      if (/\.safetensors/.test(ins.args)) problems.push(`${at}: models are baked into the image`);
      if (!/--from=/.test(ins.args)) {
        for (const source of words.slice(0, -1)) {
          if (!existsSync(path.join(context, source))) {
            problems.push(`${at}: ${ins.keyword} source ${source} is not in comfyui-worker/`);
          }
        }
      }
    }
  });

  const finalStage = all.slice(lastFrom);
  if (finalUser === undefined || /^(root|0)(:|$)/.test(finalUser)) {
    problems.push('the final stage does not switch to a non-root USER');
  }
  const healthchecks = finalStage.filter((i) => i.keyword === 'HEALTHCHECK');
  if (healthchecks.length !== 1 || !/\bCMD\b/.test(healthchecks[0]?.args ?? '')) {
    problems.push('the final stage needs exactly one HEALTHCHECK with a CMD');
  }
  if (!finalStage.some((i) => i.keyword === 'EXPOSE' && /(^|\s)8188(\/tcp)?(\s|$)/.test(i.args))) {
    problems.push('the final stage does not EXPOSE 8188');
  }
  const entry = finalStage.find((i) => i.keyword === 'ENTRYPOINT');
  const entryArgs = entry ? (JSON.parse(entry.args) as string[]) : [];
  if (entryArgs[0] !== '/usr/bin/tini' || !entryArgs.at(-1)?.endsWith('/entrypoint.sh')) {
    problems.push('ENTRYPOINT must be tini (signals, reaping) in exec form, then entrypoint.sh');
  }
  const comfyRef = all.find((i) => i.keyword === 'ARG' && i.args.startsWith('COMFYUI_REF'));
  const refDefault = comfyRef?.args.split('=')[1]?.trim() ?? '';
  if (['', 'main', 'master', 'HEAD'].includes(refDefault)) {
    problems.push(`COMFYUI_REF must default to a release tag or commit, not '${refDefault}'`);
  }
  for (const label of ['title', 'source', 'licenses', 'description']) {
    if (!text.includes(`org.opencontainers.image.${label}=`)) {
      problems.push(`OCI label org.opencontainers.image.${label} is missing`);
    }
  }
  return problems;
}

describe('worker Dockerfile', () => {
  it('has no findings from the dockerfile-utils validator', () => {
    const findings = validate(dockerfile).map(
      (d) => `${d.range.start.line + 1}: ${d.message} (${String(d.code)})`,
    );
    expect(findings).toEqual([]);
  });

  it('the validator does report broken instructions (it is really linting)', () => {
    const broken = dockerfile
      .replace('HEALTHCHECK --interval=15s', 'HEALTHCHECK --interval=15')
      .replace('COPY --chmod=0755', 'COPY --chmood=0755');
    const messages = validate(broken).map((d) => d.message);
    expect(messages).toEqual(
      expect.arrayContaining([
        expect.stringContaining('missing unit in duration 15'),
        expect.stringContaining('Unknown flag: chmood'),
      ]),
    );
  });

  it('follows the image rules', () => {
    expect(dockerfileProblems(dockerfile)).toEqual([]);
  });

  it('pins a CUDA runtime base by exact tag and runs ComfyUI as uid 1000', () => {
    expect(dockerfile).toMatch(/^FROM nvidia\/cuda:12\.8\.1-runtime-ubuntu24\.04 AS base$/m);
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);
    expect(dockerfile).toMatch(/^ARG COMFYUI_REF=v\d+\.\d+\.\d+$/m);
  });

  it.each([
    [
      'a latest base',
      ['FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS base', 'FROM nvidia/cuda:latest AS base'],
      'uses latest',
    ],
    [
      'an untagged base',
      ['FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS base', 'FROM nvidia/cuda AS base'],
      'has no exact tag',
    ],
    ['root at the end', ['USER 1000:1000', 'USER root'], 'non-root USER'],
    ['no USER', ['USER 1000:1000', ''], 'non-root USER'],
    [
      'a token build arg',
      ['ARG COMFYUI_COMMIT=', 'ARG HF_TOKEN='],
      'ARG HF_TOKEN looks like a secret',
    ],
    [
      'a secret env',
      ['CPU_ONLY=false', 'CPU_ONLY=false \\\n    REGISTRY_PASSWORD=x'],
      'ENV REGISTRY_PASSWORD looks like a secret',
    ],
    [
      'no HEALTHCHECK',
      ['HEALTHCHECK --interval=15s', '# HEALTHCHECK --interval=15s'],
      'exactly one HEALTHCHECK',
    ],
    ['no EXPOSE 8188', ['EXPOSE 8188', 'EXPOSE 8080'], 'does not EXPOSE 8188'],
    [
      'a shell-form entrypoint',
      [
        'ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/opt/comfyui-worker/entrypoint.sh"]',
        'ENTRYPOINT ["/opt/comfyui-worker/entrypoint.sh"]',
      ],
      'ENTRYPOINT must be tini',
    ],
    [
      'ComfyUI from master',
      ['ARG COMFYUI_REF=v0.11.1\n', 'ARG COMFYUI_REF=master\n'],
      "not 'master'",
    ],
    [
      'a missing COPY source',
      ['COPY --chmod=0755 entrypoint.sh', 'COPY --chmod=0755 start.sh'],
      'source start.sh is not in comfyui-worker/',
    ],
    [
      'a baked model',
      ['USER 1000:1000', 'COPY model.safetensors /opt/ComfyUI/models/\nUSER 1000:1000'],
      'models are baked',
    ],
    [
      'pip without cache',
      ['RUN --mount=type=cache,target=/root/.cache/pip \\\n    printf', 'RUN printf'],
      'pip install without a pip cache mount',
    ],
    [
      'the HF token in plain sight',
      ['RUN python3 -m venv', 'RUN HF_TOKEN=$(cat /tmp/t) python3 -m venv'],
      'without a BuildKit secret mount',
    ],
    [
      'a missing OCI label',
      ['org.opencontainers.image.licenses="MIT"', 'x.licenses="MIT"'],
      'org.opencontainers.image.licenses is missing',
    ],
  ])('the rules catch %s', (_what, [from, to], expected) => {
    expect(dockerfile).toContain(from);
    const broken = dockerfile.replace(from!, to!);
    expect(dockerfileProblems(broken).join('\n')).toContain(expected);
  });

  it('installs rclone, the pinned custom nodes (checked installer, list) and the worker helpers', () => {
    const runtimeApt = instructions(dockerfile).find(
      (i) => i.keyword === 'RUN' && /apt-get install/.test(i.args) && /tini/.test(i.args),
    );
    expect(runtimeApt?.args).toMatch(/\srclone\s/);
    expect(dockerfile).toContain(
      'RUN /tmp/install-custom-nodes.sh /tmp/custom-nodes.txt /src/custom_nodes',
    );
    expect(dockerfile).toMatch(
      /^COPY --from=source --chown=1000:1000 \/src\/custom_nodes\/ \/opt\/ComfyUI\/custom_nodes\/$/m,
    );
    // The pinned nodes' requirements cannot move torch.
    expect(dockerfile).toMatch(/pip install -c \/opt\/torch-constraints\.txt -r "\$\{req\}"/);
    expect(dockerfile).toMatch(
      /^COPY --chmod=0644 extra_model_paths\.yaml worker\.py models\.json custom-nodes\.txt \/opt\/comfyui-worker\/$/m,
    );
    expect(dockerfile).toMatch(/^COPY comfyume_worker \/opt\/comfyui-worker\/comfyume_worker$/m);
  });

  it('keeps the build context small and the scripts in it', () => {
    const ignored = readFileSync(path.join(context, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['**/*.safetensors', 'README.md']));
    for (const kept of [
      'entrypoint.sh',
      'healthcheck.sh',
      'extra_model_paths.yaml',
      'custom_nodes',
      'comfyume_worker',
      'worker.py',
      'models.json',
      'custom-nodes.txt',
      'install-custom-nodes.sh',
    ]) {
      expect(ignored).not.toContain(kept);
    }
  });
});
