// What the restore drill trusts before it runs anything: the stored manifest (schema-checked, paths
// as strict as the config's) and the age identities it is given (never echoed).
import { describe, expect, it } from '@jest/globals';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { MANIFEST_FORMAT, parseManifest } from '../../src/backup/manifest.js';
import { pipelineOrder } from '../../src/backup/restore-drill.js';
import { InputError } from '../../src/lib/errors.js';
import { parseIdentities } from '../../src/lib/age-stream.js';

const PREFIX = 'backups/verda';
const KEY = `${PREFIX}/20261128T021500Z/manifest.json`;

function draft() {
  return {
    format: MANIFEST_FORMAT as string,
    backupId: '20261128T021500Z',
    tool: { name: 'comfyume-ops backup-verda', version: '0.1.0' },
    startedAt: '2026-11-28T02:15:00.000Z',
    finishedAt: '2026-11-28T02:16:03.120Z',
    host: {
      address: 'gpu',
      port: 22,
      user: 'dev',
      fingerprint: `SHA256:${'A'.repeat(43)}`,
      hostRoot: '/',
    },
    facts: { tailscaleIp: '100.64.0.1', hostname: 'gpu', os: 'Ubuntu', kernel: '6.8.0', disks: {} },
    encryption: { format: 'age', recipients: [`age1${'q'.repeat(58)}`] },
    items: [
      {
        id: 'ssh-host-keys',
        description: 'SSH host keys',
        paths: ['/etc/ssh/ssh_host_*'],
        missingPaths: [] as string[],
        required: true,
        sudo: true,
        restoreTo: '/',
        afterRestore: ['systemctl restart ssh'],
        key: 'backups/verda/20261128T021500Z/ssh-host-keys.tar.zst.age',
        compression: 'zstd',
        tarBytes: 10240,
        archiveBytes: 805,
        storedBytes: 1005,
        sha256: 'a'.repeat(64),
        seconds: 0.4,
      },
    ],
    skipped: [] as { id: string; reason: string }[],
    restoreScript: {
      key: 'backups/verda/20261128T021500Z/RESTORE.sh',
      sha256: 'b'.repeat(64),
      bytes: 6871,
    } as { key: string; sha256: string; bytes: number } | undefined,
    // Hostile drafts set any field to any value (unknown keys, wrong types): loosely typed on purpose.
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
  } as Record<string, any>;
}
type Draft = ReturnType<typeof draft>;

function manifest(edit: (m: Draft) => void = () => undefined): string {
  const m = draft();
  edit(m);
  return JSON.stringify(m);
}

describe('parseManifest', () => {
  it('accepts a backup-verda manifest, every field typed', () => {
    const m = parseManifest(manifest(), KEY, PREFIX);
    expect(m.items[0]?.afterRestore).toEqual(['systemctl restart ssh']);
    expect(m.host.user).toBe('dev');
  });

  it('refuses text that is not JSON, naming the key', () => {
    expect(() => parseManifest('{', KEY, PREFIX)).toThrow(`${KEY} is not JSON`);
  });

  it.each<[string, (m: Draft) => void, RegExp]>([
    ['another format', (m) => void (m.format = 'x/1'), /format/],
    [
      'a restoreTo with ..',
      (m) => void (m.items[0]!.restoreTo = '/../../root'),
      /items\[0\]\.restoreTo: restoreTo "\/\.\.\/\.\.\/root" must not contain '\.\.'/,
    ],
    [
      'a relative path',
      (m) => void (m.items[0]!.paths = ['etc/ssh']),
      /items\[0\]\.paths\[0\]: path "etc\/ssh" must be absolute/,
    ],
    ['a bad sha256', (m) => void (m.items[0]!.sha256 = 'nope'), /items\[0\]\.sha256/],
    [
      'an unknown compression',
      (m) => void (m.items[0]!.compression = 'xz'),
      /items\[0\]\.compression/,
    ],
    ['a missing RESTORE.sh record', (m) => void (m.restoreScript = undefined), /restoreScript/],
    ['an unknown top-level field', (m) => void (m.extra = 1), /Unrecognized key: "extra"/],
    ['an unknown item field', (m) => void (m.items[0].run = 'id'), /items\[0\]: Unrecognized key/],
    [
      'a fingerprint of another form',
      (m) => void (m.host.fingerprint = 'SHA256:x'),
      /host\.fingerprint/,
    ],
    ['a version with a newline', (m) => void (m.tool.version = '0.1.0\nid'), /tool\.version/],
    [
      'a Tailscale IP that is no IP',
      (m) => void (m.facts.tailscaleIp = '100.64.0.1;id'),
      /facts\.tailscaleIp/,
    ],
    ['a kernel with a space', (m) => void (m.facts.kernel = '6 $(id)'), /facts\.kernel/],
    ['an OS with a newline', (m) => void (m.facts.os = 'Ubuntu\nid'), /facts\.os/],
    ['an upper-case recipient', (m) => void (m.encryption.recipients = ['AGE1X']), /recipients/],
    ['an item id with a dot', (m) => void (m.items[0].id = '../x'), /items\[0\]\.id/],
    [
      'an archive key outside the backup',
      (m) => void (m.items[0].key = 'backups/other/20261128T021500Z/ssh-host-keys.tar.zst.age'),
      /items\[0\]\.key: must be backups\/verda\/20261128T021500Z\/ssh-host-keys\.tar\.zst\.age/,
    ],
    [
      'an archive key whose extension is not its compression',
      (m) => void (m.items[0].compression = 'gzip'),
      /items\[0\]\.key: must be .*\.tar\.gz\.age/,
    ],
    [
      'a RESTORE.sh key of another backup',
      (m) => void (m.restoreScript.key = 'backups/verda/20200101T000000Z/RESTORE.sh'),
      /restoreScript\.key/,
    ],
    [
      'a start time that is not its id',
      (m) => void (m.startedAt = '2026-11-28T02:15:01.000Z'),
      /startedAt/,
    ],
    [
      'a duplicate item',
      (m) => void m.items.push(structuredClone(m.items[0])),
      /duplicate item id/,
    ],
    ['a negative size', (m) => void (m.items[0].storedBytes = -1), /storedBytes/],
  ])('refuses %s, naming the key and the field', (_what, edit, message) => {
    const text = manifest(edit);
    expect(() => parseManifest(text, KEY, PREFIX)).toThrow(message);
    expect(() => parseManifest(text, KEY, PREFIX)).toThrow(KEY);
  });
});

describe('parseManifest, the key', () => {
  it('refuses a manifest stored under another backup id', () => {
    expect(() =>
      parseManifest(manifest(), `${PREFIX}/20261129T021500Z/manifest.json`, PREFIX),
    ).toThrow(/names backup 20261128T021500Z: not its own manifest/);
  });
});

describe('parseIdentities', () => {
  it('takes a pasted age-keygen file (comments skipped) and derives each public key', async () => {
    const a = await generateX25519Identity();
    const b = await generateX25519Identity();
    const text = `# created: 2026-11-28T00:00:00Z\n# public key: ${await identityToRecipient(a)}\n${a}\n\n${b}\r\n`;
    expect(await parseIdentities('age-identity', text)).toEqual([
      { identity: a, recipient: await identityToRecipient(a) },
      { identity: b, recipient: await identityToRecipient(b) },
    ]);
  });

  it.each([
    ['nothing', '# only a comment\n', /age-identity.*AGE-SECRET-KEY-1/],
    ['a public key', `age1${'q'.repeat(58)}`, /public key \(a recipient\)/],
    ['a damaged key (not echoed)', 'AGE-SECRET-KEY-1QQQQSECRETPART', /<line 1 redacted>/],
  ])('refuses %s', async (_what, text, message) => {
    const err = await parseIdentities('age-identity', text).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(String((err as Error).message)).toMatch(message);
    expect(String((err as Error).message)).not.toContain('SECRETPART');
  });
});

describe('pipelineOrder', () => {
  const item = (id: string, storedBytes: number) => ({ id, storedBytes });
  const ids = (xs: { id: string }[]) => xs.map((x) => x.id);

  it('puts the smallest item first, then the rest from the largest down', () => {
    const items = [
      item('models-a', 125),
      item('models-b', 120),
      item('logs', 12),
      item('code', 13),
    ];
    expect(ids(pipelineOrder(items))).toEqual(['logs', 'models-a', 'models-b', 'code']);
    // The items themselves, each once; the input is not reordered.
    expect(new Set(pipelineOrder(items))).toEqual(new Set(items));
    expect(ids(items)).toEqual(['models-a', 'models-b', 'logs', 'code']);
  });

  it('keeps one or two items as small first, and nothing as nothing', () => {
    expect(ids(pipelineOrder([item('a', 5)]))).toEqual(['a']);
    expect(ids(pipelineOrder([item('big', 9), item('small', 1)]))).toEqual(['small', 'big']);
    expect(pipelineOrder([])).toEqual([]);
  });
});
