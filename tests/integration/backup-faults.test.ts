// backup-verda faults and bad inputs, through the bundle with the real sshd host and the R2
// emulator. Every failure must leave no manifest, no object and no multipart upload of the
// failed run behind, and latest.json must still name the previous good backup.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
  jest,
} from '@jest/globals';
import type { Manifest } from '../../src/backup/manifest.js';
import { modelBytesStream } from '../../src/sandbox/fixture-tree.js';
import type { ActionRun } from '../helpers/run-action.js';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import {
  BUCKET,
  PREFIX,
  latestId,
  sha256,
  startBackupWorld,
  type BackupWorld,
} from './backup-setup.js';

// Real sshd and R2 emulator runs take seconds; set here as project-level testTimeout is not applied.
jest.setTimeout(120_000);

const BIG = 'checkpoints/fault-test.safetensors';
const BIG_SIZE = 96 * 2 ** 20; // 20 parts of 5 MiB, far more than the pipeline buffers
let world: BackupWorld;
let goodId: string;
let bigConfig: string;

function bigModelSha(): string {
  const cipher = modelBytesStream(BIG);
  return sha256(cipher.update(Buffer.alloc(BIG_SIZE)));
}

beforeAll(async () => {
  world = await startBackupWorld([{ path: BIG, size: BIG_SIZE }]);
  // A small item, then the big model: a failure in the second must also remove the first.
  bigConfig = world.writeConfig('big.yml', (yaml) =>
    yaml.replace(
      /^items:\n[\s\S]*$/m,
      [
        'items:',
        '  - id: comfy-env',
        '    paths: [/home/dev/comfy-multi/.env]',
        '  - id: models',
        '    paths: [/home/dev/comfy-multi/data/models/checkpoints]',
        '',
      ].join('\n'),
    ),
  );
  const good = await world.run();
  expect(good.code).toBe(0);
}, 120_000);
// Each test compares with the backup latest.json named before it, so one test that went
// differently cannot fail the ones after it.
beforeEach(async () => {
  goodId = (await latestId(world)) ?? '';
  expect(goodId).not.toBe('');
});
afterAll(async () => {
  await world?.stop();
});
afterEach(() => world.r2.clearFaults());

/** The failed run's id from its error, and proof that it left nothing behind. */
async function expectCleanFailure(errors: string[]): Promise<string> {
  expect(errors).toHaveLength(1);
  const failedId = /backup (\d{8}T\d{6}Z) (failed|cannot start)/.exec(errors[0] ?? '')?.[1];
  expect(failedId).toBeDefined();
  expect(await world.keys(`${PREFIX}/${failedId}/`)).toEqual([]);
  expect(await world.pendingUploads()).toBe(0);
  expect(await latestId(world)).toBe(goodId);
  expect(await world.keys(`${PREFIX}/${goodId}/`)).toContain(`${PREFIX}/${goodId}/manifest.json`);
  return failedId ?? '';
}

/** Decrypts the stored models archive and checks the model's bytes. */
async function expectModelRestored(manifestKey: string): Promise<void> {
  const manifest = JSON.parse((await world.get(manifestKey)).toString('utf8')) as Manifest;
  const item = manifest.items.find((i) => i.id === 'models')!;
  const data = await world.get(item.key);
  expect(sha256(data)).toBe(item.sha256);
  const file = path.join(world.dir, 'models.age');
  writeFileSync(file, data);
  const tar = execFileSync(
    'bash',
    ['-o', 'pipefail', '-c', `age -d -i "$1" "$2" | zstd -dc`, '_', world.identityFile, file],
    {
      maxBuffer: 256 * 2 ** 20,
    },
  );
  const member = execFileSync('tar', ['-xOf', '-', `home/dev/comfy-multi/data/models/${BIG}`], {
    input: tar,
    maxBuffer: 256 * 2 ** 20,
  });
  expect(sha256(member)).toBe(bigModelSha());
}

/** The models item of a run's manifest, and the UploadPart requests R2 saw for its archive. */
async function modelsArchive(run: ActionRun) {
  const manifest = JSON.parse(
    (await world.get(run.outputs['manifest-key'] ?? '')).toString('utf8'),
  ) as Manifest;
  const item = manifest.items.find((i) => i.id === 'models')!;
  const parts = world.r2
    .requests()
    .filter((r) => r.operation === 'UploadPart' && r.key === item.key);
  return { item, parts };
}

/** Session processes called `name`, and whose command line contains `arg` when given. */
function processesNamed(name: string, arg?: string): number[] {
  return world.host.sessionPids().filter((pid) => {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== name) return false;
      return arg === undefined || readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(arg);
    } catch {
      return false;
    }
  });
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  for (const started = Date.now(); !check();) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Runs the action and, while it runs, `meanwhile`. The run is awaited even when `meanwhile`
 * throws, so it cannot go on into the next test and move latest.json there.
 */
async function duringRun(
  inputs: Record<string, string>,
  meanwhile: () => Promise<void>,
): Promise<ActionRun> {
  const running = world.run(inputs);
  try {
    await meanwhile();
  } finally {
    await running.catch(() => undefined);
  }
  return running;
}

describe('faults on the host side', () => {
  it('refuses a wrong host key pin, showing both fingerprints, and uploads nothing', async () => {
    world.r2.resetCounts();
    const wrong = `SHA256:${'B'.repeat(43)}`;
    const run = await world.run({ 'host-key-fingerprints': wrong });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toContain(
      `presented ${world.host.hostKeyFingerprint}, expected ${wrong}`,
    );
    expect(world.r2.counts().byOperation.PutObject ?? 0).toBe(0);
    expect(await latestId(world)).toBe(goodId);
  });

  it('fails cleanly when the connection drops mid-item', async () => {
    // Hold the first part so the remote tar is still streaming when the link is cut.
    world.r2.addFault({ operation: 'UploadPart', action: 'stall', stallMs: 4000 });
    const run = await duringRun({ config: bigConfig }, async () => {
      await waitFor(
        () => processesNamed('tar', 'data/models/checkpoints').length > 0,
        'the models tar',
      );
      await new Promise((r) => setTimeout(r, 300));
      for (const pid of processesNamed('sshd')) process.kill(pid, 'SIGKILL');
    });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/models|connection/);
    expect(run.errors[0]).toMatch(/before it exited|dropped|closed|ECONNRESET/);
    await expectCleanFailure(run.errors);
  });

  it('fails cleanly when the remote tar is killed by a signal', async () => {
    world.r2.addFault({ operation: 'UploadPart', action: 'stall', stallMs: 3000 });
    // Items run two at a time: the small comfy-env tar may be the first (or only) one seen, and
    // killing it after it finished would let the run succeed. Kill the models tar itself.
    const modelsTar = () => processesNamed('tar', 'data/models/checkpoints');
    const run = await duringRun({ config: bigConfig }, async () => {
      await waitFor(() => modelsTar().length > 0, 'the models tar');
      for (const pid of modelsTar()) process.kill(pid, 'SIGKILL');
    });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/item models|code 137|signal/);
    await expectCleanFailure(run.errors);
  });

  it('fails cleanly on tar exit 2 (an unreadable file), with tar’s message', async () => {
    const locked = path.join(world.host.hostRoot, 'srv/locked');
    mkdirSync(locked, { recursive: true });
    writeFileSync(path.join(locked, 'root-only.key'), 'secret');
    chmodSync(path.join(locked, 'root-only.key'), 0o600);
    const config = world.writeConfig('locked.yml', (yaml) =>
      yaml.replace(/^items:\n/m, 'items:\n  - id: locked\n    paths: [/srv/locked]\n'),
    );
    const run = await world.run({ config });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/exited with code 2.*Permission denied/);
    await expectCleanFailure(run.errors);
  });

  it('fails before uploading when a required item is missing; warns for a missing optional one', async () => {
    world.r2.resetCounts();
    const missingRequired = world.writeConfig('missing.yml', (yaml) =>
      yaml.replace(/^items:\n/m, 'items:\n  - id: gone\n    paths: [/srv/not-there]\n'),
    );
    const run = await world.run({ config: missingRequired });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/required item gone is missing .*\/srv\/not-there/);
    expect(world.r2.counts().byOperation.PutObject ?? 0).toBe(0);
    await expectCleanFailure(run.errors);

    const missingOptional = world.writeConfig('optional.yml', (yaml) =>
      yaml.replace(
        /^items:\n/m,
        'items:\n  - id: gone\n    required: false\n    paths: [/srv/not-there]\n',
      ),
    );
    const ok = await world.run({ config: missingOptional });
    expect(ok.code).toBe(0);
    expect(ok.warnings.some((w) => /optional item gone is missing/.test(w))).toBe(true);
    expect(ok.summary).toMatch(/\| gone \| missing on the host/);
  });

  it('fails before uploading when the sudo rule for the read wrapper is missing', async () => {
    const config = world.writeConfig('nosudo.yml', (yaml) =>
      yaml.replace(/^read-wrapper: .*$/m, 'read-wrapper: /usr/local/sbin/not-allowed'),
    );
    const run = await world.run({ config });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/may not run 'sudo -n \/usr\/local\/sbin\/not-allowed'/);
    await expectCleanFailure(run.errors);
  });
});

describe('faults on the R2 side', () => {
  it('retries a part answered 500, one cut mid-body and a Complete whose reply was lost; the stored archive decrypts to the same bytes', async () => {
    world.r2.addFault({ operation: 'UploadPart', action: 'status', status: 500, nth: 2 });
    world.r2.addFault({ operation: 'UploadPart', action: 'reset', nth: 4 });
    world.r2.addFault({ operation: 'CompleteMultipartUpload', action: 'lose-reply' });
    world.r2.resetCounts();
    const run = await world.run({ config: bigConfig });
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    const faulted = world.r2.requests().filter((r) => r.fault);
    expect(faulted.map((r) => r.fault).sort()).toEqual(['lose-reply', 'reset', 'status']);
    expect(run.warnings.filter((w) => /attempt \d failed/.test(w))).toHaveLength(3);
    // The resent Complete found the upload gone (R2 had completed it) and the object its own.
    const completes = world.r2.requests().filter((r) => r.operation === 'CompleteMultipartUpload');
    expect(completes.map((r) => r.status)).toEqual([0, 404]);
    expect(run.warnings.some((w) => /already stored it \(its reply was lost\)/.test(w))).toBe(true);
    await expectModelRestored(run.outputs['manifest-key'] ?? '');
  });

  it('resends a part and a small archive damaged on the way (R2 checks the signed sha256), with verify in-transit', async () => {
    world.r2.addFault({ operation: 'UploadPart', action: 'corrupt', nth: 3 });
    world.r2.addFault({ operation: 'PutObject', action: 'corrupt', keyPattern: /comfy-env/ });
    world.r2.resetCounts();
    const run = await world.run({ config: bigConfig, verify: 'in-transit' });
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    const requests = world.r2.requests();
    const faulted = requests.filter((r) => r.fault === 'corrupt');
    expect(faulted.map((r) => [r.operation, r.status])).toEqual(
      expect.arrayContaining([
        ['UploadPart', 400],
        ['PutObject', 400],
      ]),
    );
    expect(faulted).toHaveLength(2);
    expect(run.warnings.filter((w) => /BadDigest|did not match/.test(w))).toHaveLength(2);
    // in-transit: no archive is downloaded again by the action.
    expect(
      requests.filter((r) => r.operation === 'GetObject' && /\.age$/.test(r.key ?? '')),
    ).toEqual([]);
    await expectModelRestored(run.outputs['manifest-key'] ?? '');
    const manifest = JSON.parse(
      (await world.get(run.outputs['manifest-key'] ?? '')).toString('utf8'),
    ) as Manifest;
    const env = manifest.items.find((i) => i.id === 'comfy-env')!;
    expect(sha256(await world.get(env.key))).toBe(env.sha256);
  });

  it('fails on an R2 refusal while the SSH handshake runs alongside, and closes that connection', async () => {
    const connections = world.host.connectionCount();
    const run = await world.run({ 'r2-secret-access-key': 'not-the-secret' });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(
      /R2 .*failed: .*(SignatureDoesNotMatch|signature).*\(HTTP 403\)/i,
    );
    // The handshake had started (it overlaps the first R2 read); the run still ended.
    expect(world.host.connectionCount()).toBe(connections + 1);
    await waitFor(() => world.host.sessionPids().length === 0, 'the SSH session to end');
    expect(await latestId(world)).toBe(goodId);
  });

  it('cuts parts of the size part-size asks for', async () => {
    world.r2.resetCounts();
    const run = await world.run({ config: bigConfig, 'part-size': '6MiB' });
    expect(run.code).toBe(0);
    const { item, parts } = await modelsArchive(run);
    expect(parts).toHaveLength(Math.ceil(item.storedBytes / (6 * 2 ** 20)));
    await expectModelRestored(run.outputs['manifest-key'] ?? '');
  });

  it('sizes parts from the last backup: an item last stored at 30 GiB gets 13 MiB parts', async () => {
    const latest = JSON.parse((await world.get(`${PREFIX}/latest.json`)).toString('utf8')) as {
      manifestKey: string;
    };
    const original = await world.get(latest.manifestKey);
    const manifest = JSON.parse(original.toString('utf8')) as Manifest;
    manifest.items.find((i) => i.id === 'models')!.storedBytes = 30 * 2 ** 30;
    const put = (body: Buffer | string) =>
      world.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: latest.manifestKey, Body: body }));
    await put(JSON.stringify(manifest));
    try {
      world.r2.resetCounts();
      const run = await world.run({ config: bigConfig });
      expect(run.code).toBe(0);
      const { item, parts } = await modelsArchive(run);
      // ceil(30 GiB × 4 / 10,000) = 13 MiB: under 5,000 parts even if the item doubles.
      expect(parts).toHaveLength(Math.ceil(item.storedBytes / (13 * 2 ** 20)));
      await expectModelRestored(run.outputs['manifest-key'] ?? '');
    } finally {
      await put(original);
    }
  });

  it('cuts a stalled part after r2-timeout and retries it', async () => {
    world.r2.addFault({ operation: 'UploadPart', action: 'stall', stallMs: 30_000, nth: 2 });
    const run = await world.run({ config: bigConfig, 'r2-timeout': '5s' });
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.warnings.some((w) => /attempt \d failed .*timeout/i.test(w))).toBe(true);
    await expectModelRestored(run.outputs['manifest-key'] ?? '');
  });

  it('gives up on a part that keeps failing: aborts the upload, removes what it wrote', async () => {
    world.r2.addFault({
      operation: 'UploadPart',
      action: 'status',
      status: 503,
      nth: 2,
      times: Infinity,
    });
    const run = await world.run({ config: bigConfig });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(
      /failed: .*What it uploaded was removed; latest.json still names/,
    );
    await expectCleanFailure(run.errors);
  });

  it('removes the archives and RESTORE.sh when the manifest cannot be written', async () => {
    world.r2.addFault({
      operation: 'PutObject',
      keyPattern: /manifest\.json$/,
      action: 'status',
      status: 500,
      times: Infinity,
    });
    const run = await world.run();
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/R2 PutObject \S+\/manifest\.json failed: .*\(HTTP 500\)/);
    await expectCleanFailure(run.errors);
  });
});

// verify: in-transit (the default) proves what R2 holds from its answers alone. These faults
// happen inside R2, after its signature check, where no resend helps and only that proof (or a
// read-back) sees them: each run must fail, name the key, the ETag or size expected and the one
// found, and leave the last good backup in place.
describe('in-transit proof: what R2 answers must prove what it holds', () => {
  const ARCHIVE = String.raw`backups/verda/\d{8}T\d{6}Z/models\.tar\.(?:zst|gz)\.age`;

  it('fails when a part R2 stored is not the bytes sent (its ETag is not their MD5)', async () => {
    world.r2.addFault({
      operation: 'UploadPart',
      keyPattern: /models\.tar/,
      action: 'corrupt-stored',
      nth: 3,
    });
    const run = await world.run({ config: bigConfig });
    expect(run.code).toBe(1);
    const m = new RegExp(
      `R2 UploadPart (${ARCHIVE}) part 3: ETag ([0-9a-f]{32}), expected ([0-9a-f]{32}) \\(the MD5 of the ${5 * 2 ** 20} bytes sent\\)`,
    ).exec(run.errors[0] ?? '');
    expect(m).not.toBeNull();
    expect(m?.[2]).not.toBe(m?.[3]);
    // R2 had passed the body's signature check: the fault was inside, not on the way.
    const faulted = world.r2.requests().filter((r) => r.fault === 'corrupt-stored');
    expect(faulted.map((r) => [r.operation, r.partNumber, r.status])).toEqual([
      ['UploadPart', 3, 200],
    ]);
    await expectCleanFailure(run.errors);
  });

  it('fails when a small archive R2 stored is not the body sent (PutObject ETag)', async () => {
    world.r2.addFault({
      operation: 'PutObject',
      keyPattern: /comfy-env/,
      action: 'corrupt-stored',
    });
    const run = await world.run({ config: bigConfig });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(
      /R2 PutObject backups\/verda\/\d{8}T\d{6}Z\/comfy-env\.tar\.(zst|gz)\.age: ETag ([0-9a-f]{32}), expected (?!\2)[0-9a-f]{32} \(the MD5 of the \d+ bytes sent\)/,
    );
    await expectCleanFailure(run.errors);
  });

  it('fails when R2 assembled a stale part (the Complete ETag is not the one of the parts sent)', async () => {
    world.r2.addFault({
      operation: 'CompleteMultipartUpload',
      keyPattern: /models\.tar/,
      action: 'stale-part',
      part: 2,
    });
    const run = await world.run({ config: bigConfig });
    expect(run.code).toBe(1);
    const m = new RegExp(
      `R2 CompleteMultipartUpload (${ARCHIVE}): ETag ([0-9a-f]{32}-(\\d+)), expected ([0-9a-f]{32}-(\\d+)) \\(the multipart ETag of the (\\d+) part\\(s\\) sent\\)`,
    ).exec(run.errors[0] ?? '');
    expect(m).not.toBeNull();
    expect(m?.[2]).not.toBe(m?.[4]);
    expect([m?.[3], m?.[5]]).toEqual([m?.[6], m?.[6]]);
    expect(Number(m?.[6])).toBeGreaterThan(2);
    await expectCleanFailure(run.errors);
  });

  it('fails when HEAD after the upload gives another size than was sent', async () => {
    world.r2.addFault({ operation: 'HeadObject', keyPattern: /models\.tar/, action: 'wrong-size' });
    const run = await world.run({ config: bigConfig });
    expect(run.code).toBe(1);
    const m = new RegExp(
      `R2 HeadObject (${ARCHIVE}) after upload: (\\d+) bytes, ETag (\\S+), expected (\\d+) bytes, ETag (\\S+)\\.`,
    ).exec(run.errors[0] ?? '');
    expect(m).not.toBeNull();
    expect(Number(m?.[2])).toBe(Number(m?.[4]) - 1);
    expect(m?.[3]).toBe(m?.[5]);
    await expectCleanFailure(run.errors);
  });

  it('costs one HEAD per archive and no GET; read-back adds one GET per archive', async () => {
    const perArchive = async (verify: string) => {
      world.r2.resetCounts();
      const run = await world.run({ verify });
      expect(run.errors).toEqual([]);
      const manifest = JSON.parse(
        (await world.get(run.outputs['manifest-key'] ?? '')).toString('utf8'),
      ) as Manifest;
      expect(manifest.items.length).toBeGreaterThan(1);
      const requests = world.r2.requests();
      return manifest.items.map((item) => {
        const ops = requests.filter((r) => r.key === item.key).map((r) => r.operation);
        return {
          head: ops.filter((o) => o === 'HeadObject').length,
          get: ops.filter((o) => o === 'GetObject').length,
          last: ops.at(-1),
        };
      });
    };
    const inTransit = await perArchive('in-transit');
    expect(inTransit.every((a) => a.head === 1 && a.get === 0 && a.last === 'HeadObject')).toBe(
      true,
    );
    const readBack = await perArchive('read-back');
    expect(readBack.every((a) => a.head === 1 && a.get === 1 && a.last === 'GetObject')).toBe(true);
    // And no archive is read by the default either.
    const byDefault = await perArchive('');
    expect(byDefault).toEqual(inTransit.map(() => ({ head: 1, get: 0, last: 'HeadObject' })));
  });
});

describe('bad inputs fail before any connection or request', () => {
  const cases: [string, () => Record<string, string>, RegExp][] = [
    [
      'missing pin',
      () => ({ 'host-key-fingerprints': '' }),
      /Input 'host-key-fingerprints' is invalid/,
    ],
    [
      'malformed pin',
      () => ({ 'host-key-fingerprints': 'MD5:aa:bb' }),
      /host-key-fingerprints.*"MD5:aa:bb"/,
    ],
    [
      'unknown config key',
      () => ({ config: world.writeConfig('k.yml', (y) => `${y}colour: blue\n`) }),
      /Unrecognized key: "colour"/,
    ],
    [
      'relative config path',
      () => ({
        config: world.writeConfig('r.yml', (y) =>
          y.replace('[/var/lib/tailscale]', '[var/lib/tailscale]'),
        ),
      }),
      /items\[0\]\.paths\[0\]: path "var\/lib\/tailscale" must be absolute/,
    ],
    [
      "'..' in a config path",
      () => ({
        config: world.writeConfig('d.yml', (y) => y.replace('[/etc/ufw]', '[/etc/ufw/../shadow]')),
      }),
      /items\[4\]\.paths\[0\]: .*must not contain '\.\.'/,
    ],
    [
      'bad retention',
      () => ({ retention: 'daily=7,hourly=24' }),
      /Input 'retention' is invalid: got "daily=7,hourly=24"/,
    ],
    [
      'bad recipient',
      () => ({ 'age-recipients': 'age1notarealkey' }),
      /Input 'age-recipients' is invalid: got "age1notarealkey"/,
    ],
    [
      'secret identity as recipient (never echoed)',
      () => ({ 'age-recipients': world.identity }),
      /age-recipients.*<redacted>.*public key/,
    ],
    [
      'low-order X25519 recipient (the all-zero point) beside a good one',
      () => ({
        'age-recipients': `${world.recipient}\nage1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z`,
      }),
      /Input 'age-recipients' is invalid: got "age1q{52}5cu47z"; expected .*low-order X25519 point/,
    ],
    [
      'upper-case recipient',
      () => ({ 'age-recipients': world.recipient.toUpperCase() }),
      /Input 'age-recipients' is invalid: got "AGE1[0-9A-Z]{58}"; expected .*all lower case/,
    ],
    [
      'r2-timeout longer than a Node timer can wait (it would fire at once)',
      () => ({ 'r2-timeout': '25d' }),
      /Input 'r2-timeout' is invalid: got "25d"; expected .*at most 24d20h31m23s/,
    ],
    [
      'r2-timeout under a second',
      () => ({ 'r2-timeout': '500ms' }),
      /Input 'r2-timeout' is invalid: got "500ms"; expected a duration of at least 1s/,
    ],
    [
      'invalid bucket',
      () => ({ bucket: 'Backups_2026' }),
      /Input 'bucket' is invalid: got "Backups_2026"/,
    ],
    [
      'with-models without models-dir in the config',
      () => ({
        'with-models': 'true',
        config: world.writeConfig('nm.yml', (y) => y.replace(/^models-dir: .*\n/m, '')),
      }),
      /models-dir: required when with-models is true/,
    ],
    [
      'invalid models-bucket',
      () => ({ 'with-models': 'true', 'models-bucket': 'x' }),
      /Input 'models-bucket'/,
    ],
  ];
  it.each(cases)('%s', async (_name, overrides, message) => {
    const connections = world.host.connectionCount();
    world.r2.resetCounts();
    const run = await world.run(overrides());
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(message);
    expect(world.host.connectionCount()).toBe(connections);
    expect(world.r2.counts().classA + world.r2.counts().classB).toBe(0);
  });
});
