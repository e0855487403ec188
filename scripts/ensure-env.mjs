#!/usr/bin/env node
// Makes a fresh clone ready for `npm test`, `npm run sandbox` and `npm run bench`:
// installs npm packages when node_modules is missing or older than package-lock.json, and the
// Debian packages the real test parts need (openssh-server, sudo, zstd, age, shellcheck, iproute2;
// for the fresh systemd-booted host of src/sandbox/fresh-host.ts: mmdebstrap, systemd-container,
// apt-utils, and redis-server/redis-tools for the "VPS" Redis it reaches) when they are missing and
// we are root. Uses only Node built-ins: node_modules may not exist yet.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stamp = path.join(root, 'node_modules', '.comfyume-ops-lock.sha256');

function log(message) {
  process.stderr.write(`[ensure-env] ${message}\n`);
}

// Setup output goes to a log, shown (its tail) only when a step fails: one line per step.
const logDir = path.join(root, '.setup-logs');

/** Runs one setup step quietly: says what and roughly how long, keeps the chatter in a log. */
function step(what, expected, cmd, args, opts = {}) {
  mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, `${cmd.replace(/\W/g, '')}-${args[0] ?? ''}.log`);
  log(`${what} (${expected}; its output: ${path.relative(root, logFile)})`);
  const started = Date.now();
  const done = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 2 ** 20, ...opts });
  writeFileSync(logFile, `${done.stdout ?? ''}${done.stderr ?? ''}`);
  if (done.status !== 0) {
    const tail = `${done.stdout ?? ''}${done.stderr ?? ''}`.trimEnd().split('\n').slice(-25);
    log(`${what} failed (${done.error?.message ?? `exit ${done.status}`}); the end of its output:`);
    process.stderr.write(`${tail.join('\n')}\n`);
    process.exit(1);
  }
  log(`  done in ${Math.round((Date.now() - started) / 1000)} s`);
}

function ensureNodeModules() {
  const lock = readFileSync(path.join(root, 'package-lock.json'));
  const want = createHash('sha256').update(lock).digest('hex');
  const have = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : '';
  if (have === want) return;
  const why = existsSync(path.join(root, 'node_modules'))
    ? 'package-lock.json changed'
    : 'node_modules missing';
  step(
    `${why}: npm ci`,
    'about 1-2 min on a fresh clone',
    'npm',
    ['ci', '--no-audit', '--no-fund'],
    {
      cwd: root,
    },
  );
  writeFileSync(stamp, `${want}\n`);
}

// Debian package → the file that shows it is installed.
const debianPackages = [
  ['openssh-server', '/usr/sbin/sshd'],
  ['sudo', '/usr/bin/sudo'],
  ['zstd', '/usr/bin/zstd'],
  ['age', '/usr/bin/age'],
  ['shellcheck', '/usr/bin/shellcheck'],
  ['iproute2', '/usr/sbin/ip'],
  ['mmdebstrap', '/usr/bin/mmdebstrap'],
  ['systemd-container', '/usr/bin/systemd-nspawn'],
  ['apt-utils', '/usr/bin/apt-ftparchive'],
  ['redis-server', '/usr/bin/redis-server'],
  ['redis-tools', '/usr/bin/redis-cli'],
  // The worker copies its outputs to R2 with rclone (tests/integration/worker-outputs.test.ts).
  ['rclone', '/usr/bin/rclone'],
];

function ensureDebianPackages() {
  const missing = debianPackages.filter(([, file]) => !existsSync(file)).map(([pkg]) => pkg);
  if (missing.length === 0) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !existsSync('/usr/bin/apt-get')) {
    const needed = missing.includes('openssh-server') ? 'required' : 'optional';
    const text = `missing Debian packages: ${missing.join(', ')}. Install them as root: apt-get install -y ${missing.join(' ')}`;
    if (needed === 'required') {
      log(
        `${text}\nThe tests and the sandbox run a real OpenSSH server (/usr/sbin/sshd); it cannot be installed without root.`,
      );
      process.exit(1);
    }
    log(`${text} (tests that need them are skipped)`);
    return;
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  step('apt-get update', 'about 10 s', 'apt-get', ['update', '-qq'], { env });
  // --no-upgrade: a named package that is installed stays as it is; a dependency may still move
  // to the version a new package needs (openssh-server pins its openssh-client).
  step(
    `apt-get install ${missing.join(' ')}`,
    'about 30-60 s',
    'apt-get',
    ['install', '-y', '-qq', '--no-install-recommends', '--no-upgrade', ...missing],
    { env },
  );
}

ensureNodeModules();
ensureDebianPackages();
