// What a rebuild of the fixture GPU host onto a fresh booted host needs around it, shared by the
// rebuild tests and the sandbox's "the GPU host died": whether it can run here, the backup
// config's host: section aimed at the fresh host, the VPS Redis stand-in it pings, and an
// oh-my-zsh stand-in (the fresh host has no network).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freshHostSupport, type FreshHost } from './fresh-host.js';
import { TEST_USER } from './ssh-host.js';

const REDIS_SERVER = '/usr/bin/redis-server';
export const REDIS_PORT = 16379;
/** Where installOhMyZsh puts the stand-in repository on the fresh host (--ohmyzsh-repo). */
export const OHMYZSH_REPO = 'file:///root/ohmyzsh';

function existsBin(file: string): boolean {
  try {
    execFileSync(file, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Whether a rebuild can run here, and if not, why. */
export function rebuildSupport(): { ok: boolean; reason?: string } {
  const support = freshHostSupport();
  if (!support.ok) return support;
  if (!existsBin(REDIS_SERVER)) return { ok: false, reason: 'redis-server is not installed' };
  return { ok: true };
}

/** The backup config's text with its host: section aimed at what the fresh host can reach and run. */
export function rebuildConfigYaml(yaml: string, fresh: FreshHost): string {
  return yaml
    .replace(/^ {2}user: dev$/m, `  user: ${TEST_USER}`)
    .replace(/^ {2}redis: .*$/m, `  redis: ${fresh.outerAddress}:${REDIS_PORT}`)
    .replace(/^ {2}comfyui-url: .*$/m, '  comfyui-url: http://127.0.0.1:8188')
    .concat('  containers: [comfy-multi-comfyui-1]\n  min-free-mib: 64\n')
    .concat('  test-workflow: /home/dev/comfy-multi/workflows/smoke-test.json\n');
}

/** The VPS Redis the services step pings, on the fresh host's outer address; kill() it after. */
export function startRedisStandin(fresh: FreshHost): ChildProcess {
  return spawn(
    REDIS_SERVER,
    ['--port', String(REDIS_PORT), '--bind', fresh.outerAddress, '--protected-mode', 'no'].concat([
      '--save',
      '',
      '--appendonly',
      'no',
    ]),
    { stdio: 'ignore' },
  );
}

/** oh-my-zsh as a local git repository at /root/ohmyzsh on the fresh host (OHMYZSH_REPO). */
export async function installOhMyZsh(fresh: FreshHost): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ohmyzsh-'));
  try {
    const omz = path.join(dir, 'ohmyzsh');
    execFileSync('mkdir', ['-p', path.join(omz, 'themes'), path.join(omz, 'custom')]);
    writeFileSync(path.join(omz, 'oh-my-zsh.sh'), '# oh-my-zsh stand-in\n');
    writeFileSync(path.join(omz, 'themes', 'robbyrussell.zsh-theme'), 'PROMPT="%~ "\n');
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', omz, ...args], {
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 't',
          GIT_AUTHOR_EMAIL: 't@t',
          GIT_COMMITTER_NAME: 't',
          GIT_COMMITTER_EMAIL: 't@t',
        },
      });
    git('init', '-q');
    git('add', '.');
    git('commit', '-qm', 'omz');
    const tarball = execFileSync('tar', ['-C', dir, '-cz', 'ohmyzsh']);
    const untar = await fresh.exec('base64 -d | tar -C /root -xz', {
      input: tarball.toString('base64'),
    });
    if (untar.code !== 0) throw new Error(`oh-my-zsh stand-in not installed: ${untar.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
