#!/usr/bin/env node
// Makes a fresh clone ready for `npm test`, `npm run sandbox` and `npm run bench`:
// installs npm packages when node_modules is missing or older than package-lock.json, and the
// Debian packages the real test parts need (openssh-server, sudo, zstd, age, shellcheck, iproute2;
// for the fresh systemd-booted host of src/sandbox/fresh-host.ts: mmdebstrap, systemd-container,
// apt-utils, and redis-server/redis-tools for the "VPS" Redis it reaches) when they are missing and
// we are root. Uses only Node built-ins: node_modules may not exist yet.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stamp = path.join(root, 'node_modules', '.comfyume-ops-lock.sha256');

function log(message) {
  process.stderr.write(`[ensure-env] ${message}\n`);
}

function ensureNodeModules() {
  const lock = readFileSync(path.join(root, 'package-lock.json'));
  const want = createHash('sha256').update(lock).digest('hex');
  const have = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : '';
  if (have === want) return;
  log(
    existsSync(path.join(root, 'node_modules'))
      ? 'package-lock.json changed: npm ci'
      : 'node_modules missing: npm ci',
  );
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
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
  log(`installing ${missing.join(', ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
    stdio: 'inherit',
    env,
  });
}

ensureNodeModules();
ensureDebianPackages();
