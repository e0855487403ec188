// The cached parts of a "fresh GPU instance" for tests (testing.md §5): a Debian bookworm root
// built with mmdebstrap (kept as a `tar --zstd` and unpacked once, the read-only lower layer of
// every fresh host's overlay) and a local APT repository (Debian's .debs for what a restore
// installs, plus the tailscale and docker.io stand-ins built from src/sandbox/standins/), because
// the booted host has no network. Both live in the cache directory ($COMFYUME_CACHE or
// ~/.cache/comfyume-ops), keyed by the sha256 of their recipe, and are built by one process at a
// time (an O_EXCL lock file; the others wait, then use what it built).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  chmod,
  cp,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from '../lib/retry.js';

export const DEBIAN_MIRROR = 'http://deb.debian.org/debian';
export const DEBIAN_SUITE = 'bookworm';

/** Bump when the way the root is built changes (not only its package list). */
const ROOT_RECIPE_VERSION = 'fresh-root-1';
/** Bump when the way the repository is built changes. */
const REPO_RECIPE_VERSION = 'fresh-repo-1';

/**
 * What a fresh Verda GPU instance has before a restore runs: systemd as init, sshd, sudo and the
 * tools a restore script calls. `mount` and `e2fsprogs` are not in minbase (the restore mounts and
 * formats the two data disks).
 */
export const ROOT_PACKAGES = [
  'systemd',
  'systemd-sysv',
  'dbus',
  'openssh-server',
  'openssh-client',
  'iproute2',
  'sudo',
  'ca-certificates',
  'procps',
  'gzip',
  'tar',
  'coreutils',
  'mount',
  'e2fsprogs',
] as const;

/** What a restore installs from APT (with their recursive Depends and Pre-Depends). */
export const REPO_PACKAGES = [
  'fail2ban',
  'python3-systemd',
  'ufw',
  'redis-tools',
  'zsh',
  'git',
  'curl',
  'wget',
  'age',
  'zstd',
  'rsync',
] as const;

/** The stand-in packages built from src/sandbox/standins/<name>/ (see its README.md). */
export const STANDIN_PACKAGES = ['tailscale', 'docker.io'] as const;

export type Log = (message: string) => void;

export interface CacheOptions {
  /** Default: $COMFYUME_CACHE, else ~/.cache/comfyume-ops. */
  cacheDir?: string;
  /** Progress lines (a cold build takes about a minute); default stderr. */
  log?: Log;
}

export interface FreshRoot {
  key: string;
  /** The cached `tar --zstd` of the root. */
  tarball: string;
  /** The tarball unpacked once; the read-only lower layer of every overlay. Never write to it. */
  rootDir: string;
  /** Whether this call built the tarball (a cold cache). */
  built: boolean;
  /** Time this call spent (building, unpacking or just checking). */
  ms: number;
}

export interface LocalRepo {
  key: string;
  /** Flat repository: *.deb, Packages, Release (`deb [trusted=yes] file:<dir> ./`). */
  dir: string;
  /** Package names in it (Debian's and the stand-ins). */
  packages: string[];
  built: boolean;
  ms: number;
}

const here = path.dirname(fileURLToPath(import.meta.url));
export const STANDINS_DIR = path.join(here, 'standins');

export function cacheDir(opts: CacheOptions = {}): string {
  return (
    opts.cacheDir ?? process.env.COMFYUME_CACHE ?? path.join(os.homedir(), '.cache', 'comfyume-ops')
  );
}

const defaultLog: Log = (message) => process.stderr.write(`[fresh-root] ${message}\n`);

/** Runs a command; resolves with its stdout, rejects with the tail of its stderr. */
export function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdoutFile?: string } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => {
      err.push(d);
      if (err.length > 400) err.splice(0, 200);
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0) {
        resolve(stdout);
        return;
      }
      const stderr = Buffer.concat(err).toString('utf8').trim().slice(-3000);
      reject(
        new Error(
          `${cmd} ${args.join(' ').slice(0, 300)} failed (${signal ?? `exit ${code}`}): ${stderr}`,
        ),
      );
    });
  });
}

function sha256(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs `fn` holding `lockFile` (created with O_EXCL, holding our pid). A lock whose pid is gone
 * (a crashed builder) is taken over; a live one is waited for up to `timeoutMs`.
 */
export async function withLock<T>(
  lockFile: string,
  fn: () => Promise<T>,
  { timeoutMs = 20 * 60_000, log = defaultLog }: { timeoutMs?: number; log?: Log } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  for (;;) {
    try {
      const handle = await open(lockFile, 'wx', 0o644);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner: number;
    let ageMs: number;
    try {
      owner = Number((await readFile(lockFile, 'utf8')).trim());
      ageMs = Date.now() - (await stat(lockFile)).mtimeMs;
    } catch {
      continue; // released meanwhile
    }
    const stale = Number.isInteger(owner) && owner > 0 ? !pidAlive(owner) : ageMs > 10_000;
    if (stale) {
      log(`taking over the stale lock ${lockFile} (pid ${owner || '?'} is gone)`);
      await rm(lockFile, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(`waited ${timeoutMs} ms for ${lockFile} (held by pid ${owner})`);
    }
    if (!announced) {
      log(`waiting for pid ${owner}, which holds ${lockFile}`);
      announced = true;
    }
    await sleep(500);
  }
  try {
    return await fn();
  } finally {
    await rm(lockFile, { force: true });
  }
}

export function rootRecipe(): { key: string; text: string } {
  const text = JSON.stringify({
    version: ROOT_RECIPE_VERSION,
    mirror: DEBIAN_MIRROR,
    suite: DEBIAN_SUITE,
    variant: 'minbase',
    packages: [...ROOT_PACKAGES],
  });
  return { key: sha256(text).slice(0, 16), text };
}

/** Every file of the stand-ins (path and content) is part of the repository's recipe. */
async function standinFiles(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) out.push(full);
    }
  };
  for (const name of STANDIN_PACKAGES) await walk(path.join(STANDINS_DIR, name));
  return out;
}

export async function repoRecipe(): Promise<{ key: string; text: string }> {
  const files: Record<string, string> = {};
  for (const file of await standinFiles()) {
    files[path.relative(STANDINS_DIR, file)] = sha256(await readFile(file));
  }
  const text = JSON.stringify({
    version: REPO_RECIPE_VERSION,
    mirror: DEBIAN_MIRROR,
    suite: DEBIAN_SUITE,
    packages: [...REPO_PACKAGES],
    standins: files,
  });
  return { key: sha256(text).slice(0, 16), text };
}

/** The cached root (built on a cold cache, ~40–60 s) unpacked as the overlays' lower layer. */
export async function ensureFreshRoot(opts: CacheOptions = {}): Promise<FreshRoot> {
  const started = Date.now();
  const log = opts.log ?? defaultLog;
  const dir = cacheDir(opts);
  await mkdir(dir, { recursive: true });
  const { key, text } = rootRecipe();
  const tarball = path.join(dir, `fresh-root-${key}.tar.zst`);
  const rootDir = path.join(dir, `fresh-root-${key}`);
  const unpackedMark = path.join(dir, `fresh-root-${key}.unpacked`);
  const done = (built: boolean): FreshRoot => ({
    key,
    tarball,
    rootDir,
    built,
    ms: Date.now() - started,
  });
  if (existsSync(unpackedMark) && existsSync(tarball)) return done(false);
  let built = false;
  await withLock(
    path.join(dir, `fresh-root-${key}.lock`),
    async () => {
      if (!existsSync(tarball)) {
        log(`building the Debian ${DEBIAN_SUITE} root (mmdebstrap, recipe ${key}) ...`);
        const tmp = path.join(dir, `fresh-root-${key}.building-${process.pid}.tar.zst`);
        await rm(tmp, { force: true });
        await run('mmdebstrap', [
          '--quiet',
          '--variant=minbase',
          `--include=${ROOT_PACKAGES.join(',')}`,
          // Each fresh host gets its own host keys and machine-id (fresh-host.ts).
          '--customize-hook=rm -f "$1"/etc/ssh/ssh_host_*_key "$1"/etc/ssh/ssh_host_*_key.pub',
          '--customize-hook=: > "$1"/etc/machine-id',
          DEBIAN_SUITE,
          tmp,
          DEBIAN_MIRROR,
        ]);
        await rename(tmp, tarball);
        await writeFile(path.join(dir, `fresh-root-${key}.recipe.json`), `${text}\n`);
        built = true;
        log(`root built in ${((Date.now() - started) / 1000).toFixed(1)} s: ${tarball}`);
      }
      if (!existsSync(unpackedMark)) {
        const tmpDir = path.join(dir, `fresh-root-${key}.unpacking-${process.pid}`);
        await rm(tmpDir, { recursive: true, force: true });
        await mkdir(tmpDir, { mode: 0o755 });
        await run('tar', [
          '--zstd',
          '-xpf',
          tarball,
          '--numeric-owner',
          '--xattrs',
          '--xattrs-include=*',
          '-C',
          tmpDir,
        ]);
        await rm(rootDir, { recursive: true, force: true });
        await rename(tmpDir, rootDir);
        await writeFile(unpackedMark, `${new Date().toISOString()}\n`);
      }
    },
    { log },
  );
  return done(built);
}

/** A private APT configuration for the host's apt-get: bookworm main only, nothing installed. */
async function privateApt(work: string): Promise<NodeJS.ProcessEnv> {
  for (const d of [
    'state/lists/partial',
    'cache/archives/partial',
    'etc/sources.list.d',
    'etc/preferences.d',
    'etc/apt.conf.d',
  ]) {
    await mkdir(path.join(work, d), { recursive: true });
  }
  await writeFile(path.join(work, 'state/status'), '');
  const keyring = '/usr/share/keyrings/debian-archive-keyring.gpg';
  const signedBy = existsSync(keyring) ? `[signed-by=${keyring}] ` : '';
  await writeFile(
    path.join(work, 'etc/sources.list'),
    `deb ${signedBy}${DEBIAN_MIRROR} ${DEBIAN_SUITE} main\n`,
  );
  const conf = [
    `Dir::State "${work}/state";`,
    `Dir::State::status "${work}/state/status";`,
    `Dir::Cache "${work}/cache";`,
    `Dir::Etc::SourceList "${work}/etc/sources.list";`,
    `Dir::Etc::SourceParts "${work}/etc/sources.list.d";`,
    `Dir::Etc::Preferences "${work}/etc/preferences";`,
    `Dir::Etc::PreferencesParts "${work}/etc/preferences.d";`,
    `Dir::Etc::Parts "${work}/etc/apt.conf.d";`,
    'APT::Architecture "amd64";',
    'Acquire::Languages "none";',
    'APT::Sandbox::User "root";',
    '',
  ].join('\n');
  await writeFile(path.join(work, 'apt.conf'), conf);
  return { ...process.env, APT_CONFIG: path.join(work, 'apt.conf'), LC_ALL: 'C' };
}

/** dpkg-deb of one stand-in; modes are set here, not taken from the checkout. */
async function buildStandin(name: string, work: string, outDir: string): Promise<string> {
  const src = path.join(STANDINS_DIR, name);
  const tree = path.join(work, `standin-${name}`);
  await cp(src, tree, { recursive: true });
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      const rel = path.relative(tree, full);
      if (entry.isDirectory()) {
        await chmod(full, 0o755);
        await walk(full);
        continue;
      }
      const executable =
        /^(usr\/bin|usr\/sbin|usr\/lib\/[^/]+)\//.test(rel) ||
        /^DEBIAN\/(preinst|postinst|prerm|postrm)$/.test(rel);
      await chmod(full, executable ? 0o755 : 0o644);
    }
  };
  await walk(tree);
  await chmod(tree, 0o755);
  const control = await readFile(path.join(tree, 'DEBIAN', 'control'), 'utf8');
  const version = /^Version: (.+)$/m.exec(control)?.[1] ?? '0';
  const deb = path.join(outDir, `${name}_${version.replace(/:/g, '%3a')}_all.deb`);
  await run('dpkg-deb', ['--build', '--root-owner-group', '-Zxz', tree, deb]);
  return deb;
}

/**
 * The local APT repository: Debian's .debs for REPO_PACKAGES and their recursive Depends and
 * Pre-Depends (all of them, also those the root already has: same archive, same versions), and
 * the stand-ins; indexed with apt-ftparchive.
 */
export async function ensureLocalRepo(opts: CacheOptions = {}): Promise<LocalRepo> {
  const started = Date.now();
  const log = opts.log ?? defaultLog;
  const dir = cacheDir(opts);
  await mkdir(dir, { recursive: true });
  const { key, text } = await repoRecipe();
  const repoDir = path.join(dir, `fresh-repo-${key}`);
  const listPackages = async (): Promise<string[]> =>
    (await readFile(path.join(repoDir, 'Packages'), 'utf8'))
      .split('\n')
      .filter((l) => l.startsWith('Package: '))
      .map((l) => l.slice('Package: '.length));
  if (existsSync(path.join(repoDir, 'Release'))) {
    return { key, dir: repoDir, packages: await listPackages(), built: false, ms: 0 };
  }
  let built = false;
  await withLock(
    path.join(dir, `fresh-repo-${key}.lock`),
    async () => {
      if (existsSync(path.join(repoDir, 'Release'))) return;
      log(`building the local APT repository (recipe ${key}) ...`);
      const work = await mkdtemp(path.join(dir, `fresh-repo-${key}.building-`));
      try {
        const out = path.join(work, 'repo');
        await mkdir(out, { mode: 0o755 });
        const env = await privateApt(path.join(work, 'apt'));
        await run('apt-get', ['update', '-qq'], { env });
        const depends = await run(
          'apt-cache',
          [
            'depends',
            '--recurse',
            '--no-recommends',
            '--no-suggests',
            '--no-conflicts',
            '--no-breaks',
            '--no-replaces',
            '--no-enhances',
            ...REPO_PACKAGES,
          ],
          { env },
        );
        // Real packages start a line; virtual ones are shown as <name> and are provided by one of
        // the real ones listed too.
        const names = [
          ...new Set(
            depends
              .split('\n')
              .filter((l) => /^[a-z0-9]/.test(l))
              .map((l) => l.trim()),
          ),
        ].sort();
        await run('apt-get', ['download', '-qq', ...names], { cwd: out, env });
        for (const name of STANDIN_PACKAGES) await buildStandin(name, work, out);
        const packages = await run('apt-ftparchive', ['packages', '.'], { cwd: out });
        await writeFile(path.join(out, 'Packages'), packages);
        const release = await run(
          'apt-ftparchive',
          [
            '-o',
            'APT::FTPArchive::Release::Origin=comfyume-ops tests',
            '-o',
            `APT::FTPArchive::Release::Suite=${DEBIAN_SUITE}`,
            'release',
            '.',
          ],
          { cwd: out },
        );
        await writeFile(path.join(out, 'Release'), release);
        await writeFile(path.join(out, 'recipe.json'), `${text}\n`);
        await rm(repoDir, { recursive: true, force: true });
        await rename(out, repoDir);
        built = true;
        log(
          `repository built in ${((Date.now() - started) / 1000).toFixed(1)} s: ${names.length} Debian packages + ${STANDIN_PACKAGES.join(', ')}`,
        );
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    },
    { log },
  );
  return { key, dir: repoDir, packages: await listPackages(), built, ms: Date.now() - started };
}
