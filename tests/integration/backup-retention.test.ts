// Retention as its own job (issue 9: backups a leaked nightly token cannot wipe), through the
// backup-verda bundle with the real sshd host and the R2 emulator: the backup run with retention
// skipped deletes nothing; mode retention runs with its own credential and no SSH; R2 bucket lock
// rules are reported and never leave a manifest that names deleted objects; a failed backup with
// a token that may not delete fails cleanly and reports what it left.
import { CreateMultipartUploadCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { backupIdFor } from '../../src/backup/manifest.js';
import { runAction, type ActionRun } from '../helpers/run-action.js';
import { BUCKET, startBackupWorld, type BackupWorld } from './backup-setup.js';

jest.setTimeout(120_000);

const DAY = 86_400_000;
const ARCHIVE = 'home-dev.tar.zst.age';
const DELETES = new Set(['DeleteObject', 'DeleteObjects', 'AbortMultipartUpload']);

let world: BackupWorld;
beforeAll(async () => {
  world = await startBackupWorld();
});
afterAll(async () => {
  await world?.stop();
});
afterEach(() => {
  world.r2.clearFaults();
  world.r2.clearLockRules();
});

const noDelete = () => ({
  'r2-access-key-id': world.r2.noDeleteKey.accessKeyId,
  'r2-secret-access-key': world.r2.noDeleteKey.secretAccessKey,
});

/** Synthetic complete backups (manifest + one archive) `days` ago, each at its own time. */
async function seed(prefix: string, days: number[]): Promise<Map<number, string>> {
  const ids = new Map<number, string>();
  const now = Date.now();
  for (const d of days) {
    const id = backupIdFor(new Date(now - d * DAY));
    ids.set(d, id);
    for (const name of [ARCHIVE, 'manifest.json']) {
      const key = `${prefix}/${id}/${name}`;
      await world.s3.send(
        new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: JSON.stringify({ backupId: id }) }),
      );
      await world.r2.setObjectModified(BUCKET, key, new Date(now - d * DAY));
    }
  }
  return ids;
}

/** Keys under a backup id, by file name. */
async function namesOf(prefix: string, id: string): Promise<string[]> {
  return (await world.keys(`${prefix}/${id}/`)).map((k) => k.slice(`${prefix}/${id}/`.length));
}

async function latestOf(prefix: string): Promise<string | undefined> {
  try {
    return (
      JSON.parse((await world.get(`${prefix}/latest.json`)).toString('utf8')) as {
        backupId: string;
      }
    ).backupId;
  } catch {
    return undefined;
  }
}

/** mode: retention exactly as its own job gets it: the bucket inputs only, no SSH at all. */
function retentionJob(prefix: string, inputs: Record<string, string> = {}): Promise<ActionRun> {
  return runAction('backup-verda', {
    inputs: {
      mode: 'retention',
      bucket: BUCKET,
      prefix,
      'r2-endpoint': world.r2.endpoint,
      'r2-access-key-id': world.r2.accessKeyId,
      'r2-secret-access-key': world.r2.secretAccessKey,
      'r2-timeout': '20s',
      ...inputs,
    },
    secrets: [...world.secrets, world.r2.noDeleteKey.secretAccessKey],
    timeoutMs: 100_000,
  });
}

const deleteRequests = () => world.r2.requests().filter((r) => DELETES.has(r.operation));

/** Every remaining manifest still has every object it stands for (here: its archive). */
async function expectNoManifestWithMissingObjects(prefix: string): Promise<void> {
  const keys = await world.keys(`${prefix}/`);
  for (const manifest of keys.filter((k) => k.endsWith('/manifest.json')))
    expect(keys).toContain(manifest.replace(/manifest\.json$/, ARCHIVE));
}

describe('retention skipped in the backup run (apply-retention: false)', () => {
  it('backs up with a token that may not delete and sends no delete at all', async () => {
    const prefix = 'backups/skip';
    const ids = await seed(prefix, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    world.r2.resetCounts();
    const run = await world.run(
      {
        prefix,
        'apply-retention': 'false',
        retention: 'daily=2,weekly=0,monthly=0',
        ...noDelete(),
      },
      {},
      [world.r2.noDeleteKey.secretAccessKey],
    );
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    expect(deleteRequests()).toEqual([]);
    // Every request of the run was signed with the no-delete key.
    expect(new Set(world.r2.requests().map((r) => r.accessKeyId))).toEqual(
      new Set([world.r2.noDeleteKey.accessKeyId]),
    );
    // Far beyond the policy, all still there; the new backup is the latest.
    for (const id of ids.values())
      expect(await namesOf(prefix, id)).toEqual([ARCHIVE, 'manifest.json']);
    expect(await latestOf(prefix)).toBe(run.outputs['backup-id']);
    expect(run.outputs['deleted-backups']).toBe('0');
    expect(run.summary).toContain('not applied by this run');
  });
});

describe('mode: retention, its own job with its own credential', () => {
  it('deletes what the policy says, keeps what latest.json names, opens no SSH connection and writes nothing', async () => {
    const prefix = 'backups/own-job';
    const ids = await seed(prefix, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const latest = ids.get(8)!;
    await world.s3.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: `${prefix}/latest.json`,
        Body: JSON.stringify({
          backupId: latest,
          manifestKey: `${prefix}/${latest}/manifest.json`,
          finishedAt: new Date(Date.now() - 8 * DAY).toISOString(),
        }),
      }),
    );
    // Leftovers of crashed runs: one stale (3 days), one fresh (2 h, maybe still running).
    const stale = backupIdFor(new Date(Date.now() - 3 * DAY - 3_600_000));
    const fresh = backupIdFor(new Date(Date.now() - 2 * 3_600_000));
    for (const id of [stale, fresh])
      await world.s3.send(
        new PutObjectCommand({ Bucket: BUCKET, Key: `${prefix}/${id}/${ARCHIVE}`, Body: 'part' }),
      );
    const upload = await world.s3.send(
      new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: `${prefix}/${stale}/big.age` }),
    );
    await world.r2.setUploadInitiated(BUCKET, upload.UploadId!, new Date(Date.now() - 2 * DAY));

    const connections = world.host.connectionCount();
    world.r2.resetCounts();
    const run = await retentionJob(prefix, { retention: 'daily=3,weekly=0,monthly=0' });
    expect(run.errors).toEqual([]);
    expect(run.warnings).toEqual([]);
    expect(run.code).toBe(0);
    expect(world.host.connectionCount()).toBe(connections);
    const writes = world.r2
      .requests()
      .filter((r) =>
        /^(PutObject|UploadPart|CreateMultipartUpload|CopyObject|Complete)/.test(r.operation),
      );
    expect(writes).toEqual([]);

    const remaining = new Set((await world.keys(`${prefix}/`)).map((k) => k.split('/')[2]));
    const keptDays = [1, 2, 3, 8];
    for (const [day, id] of ids)
      expect([day, remaining.has(id)]).toEqual([day, keptDays.includes(day)]);
    expect(remaining.has(stale)).toBe(false);
    expect(remaining.has(fresh)).toBe(true);
    expect(await world.pendingUploads()).toBe(0);
    expect(await latestOf(prefix)).toBe(latest);
    expect(run.outputs['deleted-backups']).toBe('7'); // days 4-7, 9, 10 and the stale leftover
    expect(run.outputs['refused-backups']).toBe('0');
    expect(run.summary).toContain('Retention: 7 backup(s) deleted');
    expect(run.summary).toMatch(new RegExp(`\\| ${latest} \\| keep \\| latest\\.json`));
    // Every delete was this job's own key, each backup's manifest first.
    expect(new Set(deleteRequests().map((r) => r.accessKeyId))).toEqual(
      new Set([world.r2.accessKeyId]),
    );
    const ofDay4 = deleteRequests().filter((r) => r.key?.includes(ids.get(4)!));
    expect(ofDay4.map((r) => r.key?.split('/').pop())).toEqual(['manifest.json', ARCHIVE]);
  });

  it('refuses an SSH key or a signing key given to the retention job, before any request', async () => {
    world.r2.resetCounts();
    const run = await retentionJob('backups/own-job', { 'ssh-private-key': world.host.privateKey });
    expect(run.code).toBe(1);
    expect(run.errors[0]).toMatch(/Input 'ssh-private-key' is invalid: .*empty in mode retention/);
    expect(world.r2.requests()).toEqual([]);
  });
});

describe('bucket lock rules', () => {
  it('reports locked backups and goes on with the rest; nothing is half-deleted', async () => {
    const prefix = 'backups/locked';
    const ids = await seed(prefix, [1, 2, 3, 4, 5, 6, 7, 8]);
    const now = Date.now();
    // Day 3: its manifest is young (locked), its archive old (free). Deleting the archive first
    // would leave a manifest that names a missing archive.
    await world.r2.setObjectModified(
      BUCKET,
      `${prefix}/${ids.get(3)}/manifest.json`,
      new Date(now),
    );
    await world.r2.setObjectModified(
      BUCKET,
      `${prefix}/${ids.get(3)}/${ARCHIVE}`,
      new Date(now - 10 * DAY),
    );
    // Day 5: its manifest is old (free), its archive young (locked).
    await world.r2.setObjectModified(
      BUCKET,
      `${prefix}/${ids.get(5)}/manifest.json`,
      new Date(now - 10 * DAY),
    );
    await world.r2.setObjectModified(BUCKET, `${prefix}/${ids.get(5)}/${ARCHIVE}`, new Date(now));
    // As the README says: lock the backup ids (…/2…), not latest.json, for less than daily=N days.
    world.r2.addLockRule({ prefix: `${prefix}/2`, maxAgeSeconds: 6.5 * 86_400 });

    world.r2.resetCounts();
    const run = await retentionJob(prefix, { retention: 'daily=2,weekly=0,monthly=0' });
    expect(run.errors).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.outputs['deleted-backups']).toBe('2'); // days 7 and 8
    expect(run.outputs['refused-backups']).toBe('4'); // days 3, 4, 5, 6
    const warning = run.warnings.find((w) => /R2 refused to delete/.test(w)) ?? '';
    expect(warning).toMatch(
      /R2 refused to delete 4 object\(s\) of 4 backup\(s\) \(ObjectLockedByBucketPolicy/,
    );
    for (const d of [3, 4, 6])
      expect(warning).toContain(`${ids.get(d)} (manifest.json: kept whole)`);
    expect(warning).toContain(`${ids.get(5)} (${ARCHIVE}: its manifest is gone`);
    expect(run.summary).toContain('Refused by R2');

    expect(await namesOf(prefix, ids.get(3)!)).toEqual([ARCHIVE, 'manifest.json']);
    expect(await namesOf(prefix, ids.get(4)!)).toEqual([ARCHIVE, 'manifest.json']);
    expect(await namesOf(prefix, ids.get(5)!)).toEqual([ARCHIVE]);
    expect(await namesOf(prefix, ids.get(7)!)).toEqual([]);
    // A refused manifest stops that backup: its free archive was not even tried.
    const ofDay3 = deleteRequests().filter((r) => r.key?.includes(ids.get(3)!));
    expect(ofDay3.map((r) => [r.key?.split('/').pop(), r.status])).toEqual([
      ['manifest.json', 403],
    ]);
    await expectNoManifestWithMissingObjects(prefix);

    // Once the locks have expired, the next run deletes the rest, the half-deleted one included.
    world.r2.clearLockRules();
    const later = await retentionJob(prefix, { retention: 'daily=2,weekly=0,monthly=0' });
    expect(later.code).toBe(0);
    expect(later.warnings).toEqual([]);
    expect(later.outputs['deleted-backups']).toBe('4');
    const left = new Set((await world.keys(`${prefix}/`)).map((k) => k.split('/')[2]));
    expect(left).toEqual(new Set([ids.get(1), ids.get(2)]));
  });
});

describe('a failed backup with a token that may not delete', () => {
  it('fails cleanly, warns about what it left, and latest.json stays', async () => {
    const prefix = 'backups/failed';
    const good = await world.run({ prefix, 'apply-retention': 'false', ...noDelete() }, {}, [
      world.r2.noDeleteKey.secretAccessKey,
    ]);
    expect(good.code).toBe(0);
    const goodId = good.outputs['backup-id'];
    // The manifest write is refused (not retried): everything else of the run is stored by then.
    world.r2.addFault({
      operation: 'PutObject',
      keyPattern: /\/manifest\.json$/,
      action: 'status',
      status: 400,
      code: 'InvalidRequest',
      times: Infinity,
    });
    world.r2.resetCounts();
    const run = await world.run({ prefix, 'apply-retention': 'false', ...noDelete() }, {}, [
      world.r2.noDeleteKey.secretAccessKey,
    ]);
    expect(run.code).toBe(1);
    expect(run.errors).toHaveLength(1);
    const failedId = /backup (\d{8}T\d{6}Z) failed/.exec(run.errors[0] ?? '')?.[1] ?? '';
    expect(failedId).not.toBe('');
    expect(run.errors[0]).toMatch(/object\(s\) it uploaded could not be removed/);
    expect(run.errors[0]).not.toMatch(/What it uploaded was removed/);
    expect(run.errors[0]).toContain(`latest.json still names ${goodId}`);
    const left = await namesOf(prefix, failedId);
    expect(left).not.toContain('manifest.json');
    expect(left).toEqual(expect.arrayContaining(['RESTORE.sh', 'manifest.json.sig', ARCHIVE]));
    const warning = run.warnings.find((w) => /this failed run wrote/.test(w)) ?? '';
    expect(warning).toMatch(
      /could not remove \d+ object\(s\) this failed run wrote: .*AccessDenied/,
    );
    for (const name of left) expect(warning).toContain(`${prefix}/${failedId}/${name}`);
    expect(deleteRequests().every((r) => r.status === 403)).toBe(true);
    expect(deleteRequests().length).toBeGreaterThan(0);
    expect(await latestOf(prefix)).toBe(goodId);
  });
});
