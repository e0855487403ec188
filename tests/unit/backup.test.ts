import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import {
  loadBackupConfig,
  parseBackupConfig,
  parseBackupConfigText,
  type BackupConfig,
} from '../../src/backup/config.js';
import { parseFacts } from '../../src/backup/facts.js';
import { backupIdFor, parseBackupId } from '../../src/backup/manifest.js';
import {
  archiveCommand,
  changedWhileReading,
  excludePatterns,
  parseProbe,
  parseTarTotals,
  probeCommand,
} from '../../src/backup/remote-commands.js';
import { restoreScript } from '../../src/backup/restore-script.js';
import { RESTORE_STEPS } from '../../src/backup/restore-steps.js';
import { DEFAULT_HOST_SHAPE } from '../../src/host/shape.js';
import { planChecks } from '../../src/host/verify-config.js';
import { applyRetention, isoWeek, parseRetention } from '../../src/backup/retention.js';
import { TOOL_VERSION } from '../../src/backup/version.js';
import { ConfigError, InputError } from '../../src/lib/errors.js';

const repo = path.resolve(import.meta.dirname, '../..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'backup-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const minimal = (items: unknown[], extra: Record<string, unknown> = {}) => ({
  version: 1,
  items,
  ...extra,
});

describe('config/backup.yml', () => {
  it('the repository config is valid and lists the seed items', async () => {
    const config = await loadBackupConfig(path.join(repo, 'config/backup.yml'));
    expect(config['host-root']).toBe('/');
    expect(config.items.map((i) => i.id)).toEqual([
      'tailscale-identity',
      'ssh-host-keys',
      'ubuntu-pro',
      'fail2ban',
      'ufw',
      'home-dev',
      'ohmyzsh-custom',
      'comfy-project',
      'comfy-env',
    ]);
    expect(config.items.filter((i) => i.sudo).map((i) => i.id)).toEqual([
      'tailscale-identity',
      'ssh-host-keys',
      'ubuntu-pro',
      'fail2ban',
      'ufw',
    ]);
  });

  it('applies defaults', () => {
    const config = parseBackupConfig('c.yml', minimal([{ id: 'a', paths: ['/etc/a'] }]));
    expect(config.items[0]).toMatchObject({
      required: true,
      sudo: false,
      exclude: [],
      'restore-to': '/',
    });
  });

  it.each([
    [
      'an unknown top-level key',
      minimal([{ id: 'a', paths: ['/a'] }], { colour: 'x' }),
      /Unrecognized key: "colour"/,
    ],
    [
      'an unknown item key',
      minimal([{ id: 'a', paths: ['/a'], compress: true }]),
      /items\[0\]: Unrecognized key: "compress"/,
    ],
    [
      'a relative path',
      minimal([{ id: 'a', paths: ['etc/a'] }]),
      /items\[0\]\.paths\[0\]: path "etc\/a" must be absolute/,
    ],
    ['a .. path', minimal([{ id: 'a', paths: ['/etc/../shadow'] }]), /must not contain '\.\.'/],
    [
      'a glob in a middle segment',
      minimal([{ id: 'a', paths: ['/etc/*/x'] }]),
      /only in its last segment/,
    ],
    [
      'a brace pattern',
      minimal([{ id: 'a', paths: ['/etc/{a,b}'] }]),
      /must not contain \[ \] \{ \}/,
    ],
    ['a newline', minimal([{ id: 'a', paths: ['/etc/a\nb'] }]), /control characters/],
    [
      'an absolute exclude',
      minimal([{ id: 'a', paths: ['/a'], exclude: ['/a/b'] }]),
      /exclude "\/a\/b" must be relative/,
    ],
    ['a .. exclude', minimal([{ id: 'a', paths: ['/a'], exclude: ['../b'] }]), /exclude "\.\.\/b"/],
    [
      'duplicate ids',
      minimal([
        { id: 'a', paths: ['/a'] },
        { id: 'a', paths: ['/b'] },
      ]),
      /items\[1\]\.id: duplicate item id "a"/,
    ],
    ['a bad id', minimal([{ id: 'Has Space', paths: ['/a'] }]), /items\[0\]\.id: id must be/],
    ['no items', minimal([]), /items needs at least one item/],
    [
      'a relative host-root',
      minimal([{ id: 'a', paths: ['/a'] }], { 'host-root': 'tmp' }),
      /host-root/,
    ],
    ['a wrong version', { version: 2, items: [{ id: 'a', paths: ['/a'] }] }, /version/],
  ])('rejects %s, naming the file and field', (_what, data, message) => {
    expect(() => parseBackupConfig('config/backup.yml', data)).toThrow(ConfigError);
    expect(() => parseBackupConfig('config/backup.yml', data)).toThrow(message);
    expect(() => parseBackupConfig('config/backup.yml', data)).toThrow(
      /Config config\/backup.yml is invalid/,
    );
  });

  it('reports YAML syntax errors and unreadable files as config errors', async () => {
    expect(() => parseBackupConfigText('x.yml', 'items: [\n')).toThrow(
      /Config x.yml is invalid:\n {2}- not valid YAML/,
    );
    await expect(loadBackupConfig(path.join(tmp, 'nope.yml'))).rejects.toThrow(
      /cannot be read: ENOENT/,
    );
  });
});

describe('remote commands', () => {
  const config = (root = '/'): BackupConfig =>
    parseBackupConfig('c', {
      version: 1,
      'host-root': root,
      'read-wrapper': '/usr/local/sbin/comfyume-read',
      items: [
        { id: 'keys', paths: ['/etc/ssh/ssh_host_*'], sudo: true },
        { id: 'home', paths: ["/home/dev's"], exclude: ['.cache', 'a b/*.log'] },
      ],
    });

  /** The script `bash -o pipefail -c <script>` receives, unquoted by a real shell. */
  const innerScript = (cmd: string) => {
    expect(cmd.startsWith('bash -o pipefail -c ')).toBe(true);
    return execFileSync('bash', ['-c', `set -- ${cmd}; printf '%s' "$5"`], { encoding: 'utf8' });
  };

  it('anchors excludes under each item path', () => {
    expect(excludePatterns({ paths: ['/home/dev', '/srv/x'], exclude: ['.cache/'] })).toEqual([
      'home/dev/.cache',
      'srv/x/.cache',
    ]);
  });

  it('reads root-owned items through sudo -n and the wrapper, globs left to the shell', () => {
    const c = config('/tmp/fixture root');
    expect(innerScript(archiveCommand(c, c.items[0]!, 'zstd'))).toBe(
      `sudo -n /usr/local/sbin/comfyume-read -C '/tmp/fixture root' -- '/tmp/fixture root/etc/ssh/ssh_host_'* | zstd -q -c -T0`,
    );
  });

  it('quotes user paths and excludes, runs tar from the host root, gzip when asked', () => {
    const c = config();
    const cmd = archiveCommand(c, c.items[1]!, 'gzip');
    expect(innerScript(cmd)).toBe(
      `cd -- / && LC_ALL=C tar --create --file=- --totals --anchored '--exclude=home/dev'\\''s/.cache' ` +
        `'--exclude=home/dev'\\''s/a b/*.log' -- 'home/dev'\\''s' | gzip -c`,
    );
  });

  it('probes compressor, sudo and paths in one script whose output parses back', () => {
    const root = mkdtempSync(path.join(tmp, 'probe-'));
    execFileSync('mkdir', ['-p', `${root}/etc/ssh`]);
    writeFileSync(`${root}/etc/ssh/ssh_host_ed25519_key`, 'k');
    const c = config(root);
    const out = execFileSync('bash', ['-c', probeCommand(c)], { encoding: 'utf8' });
    const probe = parseProbe(out);
    expect(probe.compressor).toBe(existsSync('/usr/bin/zstd') ? 'zstd' : 'gzip');
    expect(probe.present.get('keys')).toEqual([`${root}/etc/ssh/ssh_host_ed25519_key`]);
    expect(probe.missing.get('home')).toEqual([`${root}/home/dev's`]);
    expect(['ok', 'missing']).toContain(probe.sudo);
  });

  it('tells tar exit 1 for changed files from other exit-1 causes', () => {
    expect(
      changedWhileReading(
        'tar: home/dev/.zsh_history: file changed as we read it\nTotal bytes written: 20480 (20KiB)\n',
      ),
    ).toBe(true);
    expect(changedWhileReading('sudo: a password is required\n')).toBe(false);
    expect(
      changedWhileReading('tar: x: file changed as we read it\nzstd: error 70 : Write error\n'),
    ).toBe(false);
    expect(changedWhileReading('')).toBe(false);
    expect(parseTarTotals('Total bytes written: 10240 (10KiB, 9.8MiB/s)')).toBe(10240);
    expect(parseTarTotals('nothing')).toBeUndefined();
  });
});

describe('facts', () => {
  it('parses the facts script output and reports what is missing', () => {
    const { facts, missing } = parseFacts(
      [
        'tailscale-ip\t100.89.38.43',
        'hostname\tverda-gpu',
        'os\tUbuntu 24.04.1 LTS',
        'kernel\t6.8.0-51-generic',
        'user\tdev:x:1000:1000:Dev,,,:/home/dev:/usr/bin/zsh',
        'groups\tdev sudo docker',
        'docker\tdocker-ce',
        'disk\tmodels\t/mnt/models\t/dev/vdb 42949672960 30064771072 12884901888 71% /mnt/models',
        'disk\tscratch\t/mnt/scratch\t',
      ].join('\n'),
      { models: '/mnt/models', scratch: '/mnt/scratch' },
    );
    expect(facts).toMatchObject({
      tailscaleIp: '100.89.38.43',
      hostname: 'verda-gpu',
      os: 'Ubuntu 24.04.1 LTS',
      user: {
        name: 'dev',
        uid: 1000,
        gid: 1000,
        groups: ['dev', 'sudo', 'docker'],
        home: '/home/dev',
        shell: '/usr/bin/zsh',
      },
      docker: 'docker-ce',
    });
    expect(facts.disks.models).toMatchObject({
      sizeBytes: 42949672960,
      usedBytes: 30064771072,
      mountedOn: '/mnt/models',
    });
    expect(missing).toEqual(['df of scratch (/mnt/scratch) failed']);
    expect(parseFacts('tailscale-ip\tnot an ip\nhostname\th').missing).toContain(
      'tailscaleIp from the host is not valid: "not an ip"',
    );
  });

  it('keeps nothing from a hostile host that is not of its kind', () => {
    const { facts, missing } = parseFacts(
      [
        'hostname\tgpu$(id)',
        'os\tUbuntu\u001b[2J',
        'kernel\t6.8 `id`',
        'user\tdev:x:1000:1000::/home/dev:/bin/zsh$(id)',
        'groups\tdev docker;reboot',
        'docker\tdocker.io; rm -rf /',
        'disk\tother\t/etc\t/dev/vda 1 1 1 1% /',
        'disk\tmodels\t/etc/../root\t/dev/vdb 10 5 5 50% /mnt\u0007',
      ].join('\n'),
      { models: '/mnt/models' },
    );
    expect(facts).toEqual({
      tailscaleIp: '',
      hostname: '',
      os: '',
      kernel: '',
      disks: {
        models: {
          path: '/mnt/models',
          filesystem: '',
          sizeBytes: 0,
          usedBytes: 0,
          availableBytes: 0,
          mountedOn: '',
        },
      },
      user: null,
      docker: '',
    });
    expect(missing).toHaveLength(6);
    expect(missing).toContain('getent passwd of the host user gave no valid entry');
  });
});

describe('backup ids', () => {
  it('round-trips UTC timestamps and refuses anything else', () => {
    const d = new Date(Date.UTC(2026, 10, 28, 2, 15, 0));
    expect(backupIdFor(d)).toBe('20261128T021500Z');
    expect(parseBackupId('20261128T021500Z')?.toISOString()).toBe(d.toISOString());
    for (const bad of ['20261328T021500Z', '2026-11-28', 'latest.json', '20261128T021500']) {
      expect(parseBackupId(bad)).toBeUndefined();
    }
  });
  it('TOOL_VERSION follows package.json', () => {
    expect(TOOL_VERSION).toBe(
      (JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string })
        .version,
    );
  });
});

describe('retention', () => {
  it('parses the input and rejects bad strings naming the input', () => {
    expect(parseRetention('retention', 'daily=7,weekly=4,monthly=6')).toEqual({
      daily: 7,
      weekly: 4,
      monthly: 6,
    });
    expect(parseRetention('retention', ' monthly = 12 ')).toEqual({
      daily: 0,
      weekly: 0,
      monthly: 12,
    });
    for (const bad of [
      '',
      'daily=7,,weekly=1',
      'daily=7,daily=3',
      'hourly=3',
      'daily=-1',
      'daily=x',
      'daily=1001',
      'daily',
    ]) {
      expect(() => parseRetention('retention', bad)).toThrow(InputError);
      expect(() => parseRetention('retention', bad)).toThrow(/Input 'retention' is invalid/);
    }
  });

  it('computes ISO weeks across year ends', () => {
    expect(isoWeek(new Date('2026-11-28T12:00:00Z'))).toBe('2026-W48');
    expect(isoWeek(new Date('2027-01-01T12:00:00Z'))).toBe('2026-W53');
    expect(isoWeek(new Date('2024-12-30T12:00:00Z'))).toBe('2025-W01');
  });

  const at = (iso: string) => ({ id: backupIdFor(new Date(iso)), time: new Date(iso) });
  const keptIds = (decisions: ReturnType<typeof applyRetention>) =>
    decisions.filter((d) => d.keep).map((d) => d.id.slice(0, 8));

  it.each([
    {
      name: 'nightly backups for 60 days, 7/4/6',
      backups: Array.from({ length: 60 }, (_, i) =>
        at(new Date(Date.UTC(2026, 10, 28 - i, 2)).toISOString()),
      ),
      policy: { daily: 7, weekly: 4, monthly: 6 },
      // 7 newest days; newest of weeks W48..W45 (Sun 22 Nov, 15 Nov, 8 Nov: W47, W46, W45);
      // newest of months Nov (28th), Oct (31st), Sep (30th).
      kept: [
        '20261128',
        '20261127',
        '20261126',
        '20261125',
        '20261124',
        '20261123',
        '20261122',
        '20261115',
        '20261108',
        '20261031',
        '20260930',
      ],
    },
    {
      name: 'two backups a day keeps only the newest of each day',
      backups: [
        at('2026-11-28T02:00:00Z'),
        at('2026-11-28T14:00:00Z'),
        at('2026-11-27T02:00:00Z'),
        at('2026-11-27T14:00:00Z'),
      ],
      policy: { daily: 7, weekly: 0, monthly: 0 },
      kept: ['20261128', '20261127'],
    },
    {
      name: 'a month of failed nights does not wipe the history (days with backups count)',
      backups: [at('2026-10-01T02:00:00Z'), at('2026-09-30T02:00:00Z'), at('2026-09-29T02:00:00Z')],
      policy: { daily: 2, weekly: 0, monthly: 0 },
      kept: ['20261001', '20260930'],
    },
    {
      name: 'all zero keeps only the backup just written',
      backups: [at('2026-11-28T02:00:00Z'), at('2026-11-27T02:00:00Z')],
      policy: { daily: 0, weekly: 0, monthly: 0 },
      justWritten: backupIdFor(new Date('2026-11-28T02:00:00Z')),
      kept: ['20261128'],
    },
  ])('$name', ({ backups, policy, kept, justWritten }) => {
    const decisions = applyRetention(backups, policy, justWritten);
    expect(keptIds(decisions)).toEqual(kept);
    expect(decisions.filter((d) => !d.keep).every((d) => d.reasons[0] === 'expired')).toBe(true);
  });

  it('never deletes the backup just written, even when older ones fill every slot', () => {
    const old = [at('2026-11-28T03:00:00Z')];
    const justWritten = at('2026-11-28T02:00:00Z');
    const decisions = applyRetention(
      [...old, justWritten],
      { daily: 1, weekly: 0, monthly: 0 },
      justWritten.id,
    );
    expect(decisions.find((d) => d.id === justWritten.id)).toMatchObject({
      keep: true,
      reasons: ['just written'],
    });
  });
});

describe('RESTORE.sh', () => {
  const script = restoreScript({
    backupId: '20261128T021500Z',
    toolVersion: '0.1.0',
    bucket: 'comfyume-backups',
    manifestKey: 'backups/verda/20261128T021500Z/manifest.json',
    endpoint: 'https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com',
    hostFingerprint: 'SHA256:abc',
    facts: {
      tailscaleIp: '100.89.38.43',
      hostname: "verda's box",
      os: 'Ubuntu',
      kernel: '6',
      disks: {},
      user: {
        name: 'dev',
        uid: 1000,
        gid: 1000,
        groups: ['dev', 'docker'],
        home: '/home/dev',
        shell: '/usr/bin/zsh',
      },
      docker: 'docker.io',
    },
    shape: {
      ...DEFAULT_HOST_SHAPE,
      links: { "/home/dev/comfy-multi/data/models'$(id)": '/mnt/models' },
      redis: '100.99.216.71:6379',
      containers: ['comfy-multi-comfyui-1'],
    },
    checks: planChecks({ containers: 'optional' }).checks,
    items: [
      {
        id: 'tailscale-identity',
        description: "Tailscale identity (keeps 100.89.38.43) $(rm -rf /) 'quoted'",
        key: 'backups/verda/20261128T021500Z/tailscale-identity.tar.zst.age',
        sha256: 'a'.repeat(64),
        compression: 'zstd',
        restoreTo: '/',
        step: 'tailscale',
        afterRestore: ['systemctl restart tailscaled'],
      },
      {
        id: 'comfy-env',
        description: 'env',
        key: 'backups/verda/20261128T021500Z/comfy-env.tar.gz.age',
        sha256: 'b'.repeat(64),
        compression: 'gzip',
        restoreTo: '/',
        step: 'project',
        afterRestore: [],
      },
    ],
  });
  const file = path.join(tmp, 'RESTORE.sh');
  writeFileSync(file, script);

  it('is shellcheck-clean', () => {
    if (!existsSync('/usr/bin/shellcheck')) {
      console.log('shellcheck is not installed: skipping');
      return;
    }
    const checked = spawnSync('/usr/bin/shellcheck', [file], { encoding: 'utf8' });
    expect(checked.stdout).toBe('');
    expect(checked.status).toBe(0);
  });

  it('lists its items without running anything from the descriptions', () => {
    const out = execFileSync('bash', [file, '--list'], { encoding: 'utf8' });
    expect(out).toContain(
      "tailscale-identity   tailscale  Tailscale identity (keeps 100.89.38.43) $(rm -rf /) 'quoted'",
    );
    expect(out).toContain('comfy-env            project    env');
  });

  it('lists its steps in order', () => {
    const out = execFileSync('bash', [file, '--list-steps'], { encoding: 'utf8' });
    expect(out.split('\n').map((l) => l.split(' ')[0])).toEqual([...RESTORE_STEPS, '']);
  });

  it('refuses unknown steps, items and checks, and a missing identity', () => {
    expect(() => execFileSync('bash', [file, '--item', 'nope'], { stdio: 'pipe' })).toThrow(
      /unknown item: nope/,
    );
    expect(() => execFileSync('bash', [file, '--only', 'nope'], { stdio: 'pipe' })).toThrow(
      /unknown step: nope \(see --list-steps\)/,
    );
    expect(() => execFileSync('bash', [file, '--skip', 'packagez'], { stdio: 'pipe' })).toThrow(
      /unknown step: packagez/,
    );
    expect(() => execFileSync('bash', [file, '--skip-check', 'nope'], { stdio: 'pipe' })).toThrow(
      /unknown check: nope/,
    );
    expect(() => execFileSync('bash', [file, '--from', tmp], { stdio: 'pipe' })).toThrow(
      /--signers FILE is required/,
    );
    expect(() =>
      execFileSync('bash', [file, '--from', tmp, '--signers', file], { stdio: 'pipe' }),
    ).toThrow(/--identity AGE_KEY_FILE is required/);
  });
});
