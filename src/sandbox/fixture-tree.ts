// The fixture GPU host's files: the seed's backup paths under a host root, with root-owned
// secrets, user-owned home and project, mixed modes, a symlink, junk that backups must skip,
// and model files of chosen sizes (deterministic pseudo-random bytes, so tests can re-derive them).
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, chown, lchown, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface FixtureModel {
  /** Path relative to the models directory, e.g. checkpoints/ltx-2-19b-dev-fp8.safetensors. */
  path: string;
  size: number;
}

export const DEFAULT_MODELS: FixtureModel[] = [
  { path: 'checkpoints/ltx-2-19b-dev-fp8.safetensors', size: 96 * 1024 },
  { path: 'text_encoders/gemma_3_12B_it.safetensors', size: 64 * 1024 },
  { path: 'loras/flux2-klein-style.safetensors', size: 12 * 1024 + 7 },
];

/** The fake secret in the fixture project's .env (tests check it never leaks). */
export const FIXTURE_ENV_SECRET = 'hf_fixtureSecretDoNotLeak0123456789abcdef';

/** Where things live inside the host root (absolute on the real host). */
export const FIXTURE_PATHS = {
  home: '/home/dev',
  project: '/home/dev/comfy-multi',
  models: '/home/dev/comfy-multi/data/models',
  scratch: '/mnt/scratch',
} as const;

export interface FixtureTree {
  hostRoot: string;
  modelsDir: string;
  scratchDir: string;
}

type Owner = { uid: number; gid: number };
const ROOT: Owner = { uid: 0, gid: 0 };

interface Entry {
  path: string;
  mode: number;
  owner: 'root' | 'user';
  content?: string;
  link?: string;
}

/** A deterministic byte stream for a model: AES-CTR keystream keyed by the model path. */
export function modelBytesStream(modelPath: string): ReturnType<typeof createCipheriv> {
  const key = createHash('sha256').update(`fixture-model:${modelPath}`).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
}

async function writeModel(file: string, modelPath: string, size: number): Promise<void> {
  const cipher = modelBytesStream(modelPath);
  const out = createWriteStream(file);
  const chunk = Buffer.alloc(1024 * 1024);
  for (let left = size; left > 0; left -= chunk.length) {
    const bytes = cipher.update(left >= chunk.length ? chunk : chunk.subarray(0, left));
    if (!out.write(bytes)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
}

/** user.rules exactly as ufw 0.36 writes it for SSH, the tailscale0 interface and Tailscale's UDP port. */
function ufwRules(chain: 'ufw' | 'ufw6', any: string): string {
  const chains = ['user-input', 'user-output', 'user-forward', 'before-logging-input']
    .concat(['before-logging-output', 'before-logging-forward', 'user-logging-input'])
    .concat(['user-logging-output', 'user-logging-forward', 'after-logging-input'])
    .concat(['after-logging-output', 'after-logging-forward', 'logging-deny', 'logging-allow'])
    .concat(['user-limit', 'user-limit-accept']);
  const rule = (tuple: string, spec: string) =>
    `### tuple ### ${tuple}\n-A ${chain}-user-input ${spec} -j ACCEPT\n`;
  const limit = '-m limit --limit 3/min --limit-burst 10';
  return [
    '*filter',
    ...chains.map((c) => `:${chain}-${c} - [0:0]`),
    '### RULES ###',
    '',
    rule(`allow tcp 22 ${any} any ${any} in`, '-p tcp --dport 22'),
    rule(`allow any any ${any} any ${any} in_tailscale0`, '-i tailscale0'),
    rule(`allow udp 41641 ${any} any ${any} in`, '-p udp --dport 41641'),
    '### END RULES ###',
    '',
    '### LOGGING ###',
    `-A ${chain}-after-logging-input -j LOG --log-prefix "[UFW BLOCK] " ${limit}`,
    `-A ${chain}-after-logging-forward -j LOG --log-prefix "[UFW BLOCK] " ${limit}`,
    `-I ${chain}-logging-deny -m conntrack --ctstate INVALID -j RETURN ${limit}`,
    `-A ${chain}-logging-deny -j LOG --log-prefix "[UFW BLOCK] " ${limit}`,
    `-A ${chain}-logging-allow -j LOG --log-prefix "[UFW ALLOW] " ${limit}`,
    '### END LOGGING ###',
    '',
    '### RATE LIMITING ###',
    `-A ${chain}-user-limit -m limit --limit 3/minute -j LOG --log-prefix "[UFW LIMIT BLOCK] "`,
    `-A ${chain}-user-limit -j REJECT`,
    `-A ${chain}-user-limit-accept -j ACCEPT`,
    '### END RATE LIMITING ###',
    'COMMIT',
    '',
  ].join('\n');
}

function entries(): Entry[] {
  const d = (p: string, mode: number, owner: Entry['owner']): Entry => ({ path: p, mode, owner });
  const f = (p: string, mode: number, owner: Entry['owner'], content: string): Entry => ({
    path: p,
    mode,
    owner,
    content,
  });
  return [
    d('var/lib/tailscale', 0o700, 'root'),
    f(
      'var/lib/tailscale/tailscaled.state',
      0o600,
      'root',
      // "ip" is what the tailscale stand-in of the fresh test host reads back.
      '{"ip":"100.89.38.43","_machinekey":"privkey:fixture-machine","_profiles":"fixture"}\n',
    ),
    d('var/lib/tailscale/files', 0o700, 'root'),
    f('var/lib/tailscale/derpmap.cached.json', 0o600, 'root', '{"Regions":{}}\n'),
    d('etc/ssh', 0o755, 'root'),
    f('etc/ssh/sshd_config', 0o644, 'root', 'PermitRootLogin no\nPasswordAuthentication no\n'),
    d('etc/ubuntu-advantage', 0o755, 'root'),
    f(
      'etc/ubuntu-advantage/uaclient.conf',
      0o644,
      'root',
      'contract_url: https://contracts.canonical.com\n',
    ),
    d('etc/ubuntu-advantage/private', 0o700, 'root'),
    f(
      'etc/ubuntu-advantage/private/machine-token.json',
      0o600,
      'root',
      '{"machineToken":"fixture-token"}\n',
    ),
    d('etc/fail2ban', 0o755, 'root'),
    f(
      'etc/fail2ban/jail.local',
      0o644,
      'root',
      '[sshd]\nenabled = true\nmaxretry = 5\nbantime = 1h\n',
    ),
    d('etc/fail2ban/jail.d', 0o755, 'root'),
    f('etc/fail2ban/jail.d/defaults-debian.conf', 0o644, 'root', '[sshd]\nenabled = true\n'),
    d('etc/ufw', 0o755, 'root'),
    f('etc/ufw/user.rules', 0o640, 'root', ufwRules('ufw', '0.0.0.0/0')),
    f('etc/ufw/user6.rules', 0o640, 'root', ufwRules('ufw6', '::/0')),
    f('etc/ufw/ufw.conf', 0o644, 'root', 'ENABLED=yes\nLOGLEVEL=low\n'),
    d('home', 0o755, 'root'),
    d('home/dev', 0o755, 'user'),
    f(
      'home/dev/.zshrc',
      0o644,
      'user',
      'export ZSH="$HOME/.oh-my-zsh"\nZSH_THEME="bullet-train"\nplugins=(git docker)\nsource $ZSH/oh-my-zsh.sh\n',
    ),
    f('home/dev/.bash_history', 0o600, 'user', 'ls\nnvidia-smi\n'),
    d('home/dev/.ssh', 0o700, 'user'),
    f(
      'home/dev/.ssh/authorized_keys',
      0o600,
      'user',
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureFixtureFixtureFixtureFixtureFixture admin@mello\n',
    ),
    d('home/dev/bin', 0o755, 'user'),
    f(
      'home/dev/bin/gpu-status',
      0o755,
      'user',
      '#!/bin/sh\nnvidia-smi --query-gpu=name,memory.used --format=csv\n',
    ),
    d('home/dev/.oh-my-zsh', 0o755, 'user'),
    f('home/dev/.oh-my-zsh/oh-my-zsh.sh', 0o644, 'user', '# oh-my-zsh framework (reinstallable)\n'),
    d('home/dev/.oh-my-zsh/custom', 0o755, 'user'),
    d('home/dev/.oh-my-zsh/custom/themes', 0o755, 'user'),
    f(
      'home/dev/.oh-my-zsh/custom/themes/bullet-train.zsh-theme',
      0o644,
      'user',
      'BULLETTRAIN_PROMPT_ORDER=(time status context dir git)\n',
    ),
    d('home/dev/.oh-my-zsh/custom/plugins', 0o755, 'user'),
    d('home/dev/.oh-my-zsh/custom/plugins/comfy', 0o755, 'user'),
    f(
      'home/dev/.oh-my-zsh/custom/plugins/comfy/comfy.plugin.zsh',
      0o644,
      'user',
      'alias comfy-logs="docker compose logs -f"\n',
    ),
    d('home/dev/.cache', 0o700, 'user'),
    d('home/dev/.cache/pip', 0o700, 'user'),
    f('home/dev/.cache/pip/junk.bin', 0o600, 'user', 'cache junk that must not be backed up\n'),
    d('home/dev/comfy-multi', 0o755, 'user'),
    f(
      'home/dev/comfy-multi/README.md',
      0o644,
      'user',
      '# comfy-multi\nComfyUI multi-user workshop platform.\n',
    ),
    f(
      'home/dev/comfy-multi/docker-compose.yml',
      0o644,
      'user',
      'services:\n  comfyui:\n    image: ghcr.io/comfyume/worker:1.0.0\n',
    ),
    f(
      'home/dev/comfy-multi/.env',
      0o600,
      'user',
      `HF_TOKEN=${FIXTURE_ENV_SECRET}\nREDIS_PASSWORD=fixture-redis\nDOMAIN=workshop.example\n`,
    ),
    d('home/dev/comfy-multi/workflows', 0o755, 'user'),
    f(
      'home/dev/comfy-multi/workflows/smoke-test.json',
      0o644,
      'user',
      '{"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}}\n',
    ),
    d('home/dev/comfy-multi/scripts', 0o755, 'user'),
    f(
      'home/dev/comfy-multi/scripts/start.sh',
      0o755,
      'user',
      '#!/bin/bash\nset -euo pipefail\ndocker compose up -d\n',
    ),
    { path: 'home/dev/comfy-multi/start', mode: 0o777, owner: 'user', link: 'scripts/start.sh' },
    d('home/dev/comfy-multi/data', 0o755, 'user'),
    d('home/dev/comfy-multi/data/models', 0o755, 'user'),
    d('home/dev/comfy-multi/data/outputs', 0o755, 'user'),
    f(
      'home/dev/comfy-multi/data/outputs/ComfyUI_00001_.png',
      0o644,
      'user',
      'not really a png: generated output junk\n',
    ),
    d('home/dev/comfy-multi/data/inputs', 0o755, 'user'),
    f('home/dev/comfy-multi/data/inputs/upload.jpg', 0o644, 'user', 'uploaded input junk\n'),
    d('mnt', 0o755, 'root'),
    d('mnt/scratch', 0o777, 'root'),
  ];
}

/** Builds the fixture tree under hostRoot; `user` owns home/dev as the real `dev` does. */
export async function buildFixtureTree(
  hostRoot: string,
  user: Owner,
  models: FixtureModel[] = DEFAULT_MODELS,
): Promise<FixtureTree> {
  await mkdir(hostRoot, { recursive: true, mode: 0o755 });
  await chmod(hostRoot, 0o755);
  for (const dir of ['var', 'var/lib', 'etc'])
    await mkdir(path.join(hostRoot, dir), { recursive: true, mode: 0o755 });
  const owner = (e: Entry) => (e.owner === 'root' ? ROOT : user);
  for (const e of entries()) {
    const target = path.join(hostRoot, e.path);
    if (e.link !== undefined) {
      await symlink(e.link, target);
      await lchown(target, owner(e).uid, owner(e).gid);
      continue;
    }
    if (e.content === undefined) await mkdir(target, { recursive: true });
    else await writeFile(target, e.content);
    await chmod(target, e.mode);
    await chown(target, owner(e).uid, owner(e).gid);
  }
  // Real host keys (root-owned private 0600, public 0644), as sshd would have them.
  for (const type of ['ed25519', 'ecdsa']) {
    const key = path.join(hostRoot, 'etc/ssh', `ssh_host_${type}_key`);
    execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', 'root@verda-fixture', '-f', key]);
    await chmod(key, 0o600);
    await chmod(`${key}.pub`, 0o644);
  }
  const modelsDir = path.join(hostRoot, FIXTURE_PATHS.models);
  for (const model of models) {
    if (path.isAbsolute(model.path) || model.path.split('/').includes('..')) {
      throw new Error(`fixture model path must be relative without '..': ${model.path}`);
    }
    const file = path.join(modelsDir, model.path);
    let dir = path.dirname(file);
    await mkdir(dir, { recursive: true });
    for (; dir.startsWith(modelsDir); dir = path.dirname(dir)) await chown(dir, user.uid, user.gid);
    await writeModel(file, model.path, model.size);
    await chmod(file, 0o644);
    await chown(file, user.uid, user.gid);
  }
  return { hostRoot, modelsDir, scratchDir: path.join(hostRoot, FIXTURE_PATHS.scratch) };
}
