// restore-host's parsing of RESTORE.sh's output and of its inputs (the run itself is in
// tests/integration/restore-host.test.ts).
import { describe, expect, it } from '@jest/globals';
import { generateX25519Identity } from 'age-encryption';
import { newEd25519KeyPair } from '../../src/lib/ssh.js';
import { parseRestoreHostInputs } from '../../src/actions/restore-host/inputs.js';
import { failedStep, parseRestoreOutput } from '../../src/host/restore-host.js';
import { inputsFromRecord } from '../../src/lib/inputs.js';

const DONE = [
  '== preflight: root, OS, free disk, identity, signature and every sha256 before any change',
  '  Signature of backups/verda/20261128T021500Z/manifest.json verified',
  '== preflight: 0 change(s), 0.120 s',
  '== packages: fail2ban, ufw, zsh, docker, tailscale and the rest, when missing',
  '  changed: install fail2ban ufw',
  '== packages: 2 change(s), 10.400 s',
  'RESTORE.sh: done, 2 change(s) in 10.530 s (the restore time)',
  'STEP\tpreflight\t0\t120',
  'STEP\tpackages\t2\t10400',
];

describe('parseRestoreOutput', () => {
  it('takes the STEP lines and the total', () => {
    expect(parseRestoreOutput(DONE)).toEqual({
      steps: [
        { step: 'preflight', changes: 0, seconds: 0.12 },
        { step: 'packages', changes: 2, seconds: 10.4 },
      ],
      changes: 2,
      restoreSeconds: 10.53,
    });
    const dry = DONE.map((l) =>
      l.startsWith('RESTORE.sh: done')
        ? 'RESTORE.sh: done, 2 change(s) that would be made in 0.900 s (the restore time)'
        : l,
    );
    expect(parseRestoreOutput(dry).restoreSeconds).toBe(0.9);
  });

  it.each([
    [
      'an unknown step',
      'STEP\tbackdoor\t0\t1',
      /RESTORE\.sh printed "STEP\\tbackdoor\\t0\\t1": expected STEP<tab><one of preflight, /,
    ],
    ['a number that is not one', 'STEP\tverify\t1e3\t1', /printed "STEP\\tverify\\t1e3\\t1"/],
    ['a missing field', 'STEP\tverify\t1', /printed "STEP\\tverify\\t1"/],
    ['an extra field', 'STEP\tverify\t0\t1\tx', /printed "STEP\\tverify\\t0\\t1\\tx"/],
    [
      'a step out of order',
      'STEP\tpreflight\t0\t1',
      /reported step preflight after packages: out of order/,
    ],
  ])('refuses %s', (_what, line, message) => {
    expect(() => parseRestoreOutput([...DONE, line])).toThrow(message);
  });

  it('refuses a total that is not the sum of the steps, and a run without its done line', () => {
    const wrong = DONE.map((l) => l.replace('done, 2 change', 'done, 3 change'));
    expect(() => parseRestoreOutput(wrong)).toThrow(
      'RESTORE.sh reported 3 change(s) in total but 2 in its STEP lines',
    );
    expect(() => parseRestoreOutput(DONE.filter((l) => !l.startsWith('RESTORE.sh: done')))).toThrow(
      /without its "RESTORE\.sh: done, \.\.\." line/,
    );
  });
});

describe('failedStep', () => {
  it('names the step that began and did not end', () => {
    expect(failedStep(DONE)).toBeUndefined();
    expect(failedStep([...DONE.slice(0, 5), 'RESTORE.sh: failed: install fail2ban ufw'])).toBe(
      'packages',
    );
    expect(failedStep(['RESTORE.sh: --signers FILE is required'])).toBeUndefined();
  });
});

describe('parseRestoreHostInputs', () => {
  const key = newEd25519KeyPair('test').private;
  const base = async (): Promise<Record<string, string>> => ({
    bucket: 'backups',
    'r2-endpoint': 'http://127.0.0.1:9000',
    'r2-access-key-id': 'key-id',
    'r2-secret-access-key': 'secret',
    'age-identity': await generateX25519Identity(),
    host: 'gpu',
    user: 'root',
    'ssh-private-key': key,
    'host-key-fingerprints': `SHA256:${'A'.repeat(43)}`,
  });
  const parse = async (overrides: Record<string, string>) =>
    parseRestoreHostInputs(inputsFromRecord({ ...(await base()), ...overrides }), '/repo');

  it('takes latest or a backup id, steps, mounts and the work dir', async () => {
    const inputs = await parse({
      backup: '20261128T021500Z',
      'only-steps': 'security, user',
      'skip-steps': 'services',
      'models-mount': 'nfs.verda:/vault nfs rw,noatime',
      'work-dir': '/var/tmp/restore',
    });
    expect(inputs).toMatchObject({
      backupId: '20261128T021500Z',
      onlySteps: ['security', 'user'],
      skipSteps: ['services'],
      modelsMount: 'nfs.verda:/vault nfs rw,noatime',
      workDir: '/var/tmp/restore',
      signersFile: '/repo/config/backup-signers',
      keepBackup: false,
      dryRun: false,
    });
    expect((await parse({ backup: 'latest' })).backupId).toBeUndefined();
  });

  it.each([
    ['backup', 'yesterday', /Input 'backup' .*'latest' or a backup id/],
    ['only-steps', 'security,rm', /Input 'only-steps' .*steps of RESTORE\.sh/],
    ['skip-steps', 'preflight;x', /Input 'skip-steps'/],
    ['work-dir', '/', /Input 'work-dir' .*at least two levels deep/],
    ['work-dir', '/root', /Input 'work-dir'/],
    ['work-dir', '/root/../etc', /Input 'work-dir'/],
    ['work-dir', 'root/restore', /Input 'work-dir'/],
    ['models-mount', '/dev/vdb', /Input 'models-mount' .*SOURCE FSTYPE/],
    ['scratch-mount', '--bind /etc ext4', /Input 'scratch-mount'/],
    ['scratch-mount', '/dev/vdc ext4 defaults\nx', /Input 'scratch-mount'/],
    ['ohmyzsh-repo', '--upload-pack=touch', /Input 'ohmyzsh-repo' .*a git URL/],
  ])('refuses %s %j', async (input, value, message) => {
    await expect(parse({ [input]: value })).rejects.toThrow(message);
  });
});
