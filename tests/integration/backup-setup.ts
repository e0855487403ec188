// Shared world for the backup-verda integration tests: the real sshd fixture host, the R2
// emulator in-process, an age identity, a config pointing at the fixture tree, and a runner for
// the action's bundle with every secret registered for the leak check.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createR2Client } from '../../src/lib/r2.js';
import { FIXTURE_ENV_SECRET, type FixtureModel } from '../../src/sandbox/fixture-tree.js';
import { startR2Emulator, type R2Emulator } from '../../src/sandbox/r2.js';
import { makeSigningKey, type SigningKey } from '../../src/sandbox/signing-key.js';
import { startSshHost, type SshHost } from '../../src/sandbox/ssh-host.js';
import { repoRoot, runAction, type ActionRun } from '../helpers/run-action.js';

export const BUCKET = 'comfyume-backups';
export const PREFIX = 'backups/verda';

export interface BackupWorld {
  host: SshHost;
  r2: R2Emulator;
  s3: S3Client;
  dir: string;
  identityFile: string;
  identity: string;
  recipient: string;
  /** The backup signing key (ssh-keygen) and its allowed signers file. */
  signing: SigningKey;
  configFile: string;
  secrets: string[];
  /** Writes a config (the repo's config/backup.yml pointed at the fixture) with edits applied. */
  writeConfig(name: string, edit?: (yaml: string) => string): string;
  inputs(overrides?: Record<string, string>): Record<string, string>;
  run(
    overrides?: Record<string, string>,
    env?: Record<string, string>,
    extraSecrets?: string[],
  ): Promise<ActionRun>;
  keys(prefix?: string): Promise<string[]>;
  get(key: string): Promise<Buffer>;
  pendingUploads(): Promise<number>;
  stop(): Promise<void>;
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function startBackupWorld(models?: FixtureModel[]): Promise<BackupWorld> {
  const host = await startSshHost(models ? { models } : {});
  const r2 = await startR2Emulator({ buckets: [BUCKET] });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'backup-test-'));
  const identityFile = path.join(dir, 'age-identity.txt');
  execFileSync('age-keygen', ['-o', identityFile], { stdio: 'ignore' });
  const identity = readFileSync(identityFile, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
  const recipient = execFileSync('age-keygen', ['-y', identityFile], { encoding: 'utf8' }).trim();
  const signing = await makeSigningKey(dir);
  const s3 = createR2Client({
    endpoint: r2.endpoint,
    accessKeyId: r2.accessKeyId,
    secretAccessKey: r2.secretAccessKey,
  });
  const base = readFileSync(path.join(repoRoot, 'config/backup.yml'), 'utf8')
    .replace(/^host-root: .*$/m, `host-root: ${host.hostRoot}`)
    .replace(/^read-wrapper: .*$/m, `read-wrapper: ${host.readWrapper}`);

  const writeConfig = (name: string, edit: (yaml: string) => string = (y) => y) => {
    const file = path.join(dir, name);
    writeFileSync(file, edit(base));
    return file;
  };
  const configFile = writeConfig('backup.yml');
  const secrets = [
    host.privateKey,
    r2.secretAccessKey,
    r2.accessKeyId,
    FIXTURE_ENV_SECRET,
    identity,
    signing.privateKey,
  ];
  const inputs = (overrides: Record<string, string> = {}) => ({
    host: host.host,
    port: String(host.port),
    user: host.user,
    'ssh-private-key': host.privateKey,
    'host-key-fingerprints': host.hostKeyFingerprint,
    config: configFile,
    bucket: BUCKET,
    prefix: PREFIX,
    'r2-endpoint': r2.endpoint,
    'r2-access-key-id': r2.accessKeyId,
    'r2-secret-access-key': r2.secretAccessKey,
    'age-recipients': recipient,
    'signing-key': signing.privateKey,
    'r2-timeout': '20s',
    ...overrides,
  });

  return {
    host,
    r2,
    s3,
    dir,
    identityFile,
    identity,
    recipient,
    signing,
    configFile,
    secrets,
    writeConfig,
    inputs,
    run: (overrides = {}, env = {}, extraSecrets = []) =>
      runAction('backup-verda', {
        inputs: inputs(overrides),
        secrets: [...secrets, ...extraSecrets],
        env,
        timeoutMs: 100_000,
      }),
    async keys(prefix = `${PREFIX}/`) {
      const out: string[] = [];
      let token: string | undefined;
      do {
        const page = await s3.send(
          new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }),
        );
        for (const o of page.Contents ?? []) out.push(o.Key ?? '');
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return out.sort();
    },
    async get(key) {
      const res = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    },
    async pendingUploads() {
      const res = await s3.send(
        new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: `${PREFIX}/` }),
      );
      return res.Uploads?.length ?? 0;
    },
    async stop() {
      s3.destroy();
      await r2.stop();
      await host.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The latest.json pointer's backup id, or undefined. */
export async function latestId(world: BackupWorld): Promise<string | undefined> {
  try {
    return (
      JSON.parse((await world.get(`${PREFIX}/latest.json`)).toString('utf8')) as {
        backupId: string;
      }
    ).backupId;
  } catch {
    return undefined;
  }
}
