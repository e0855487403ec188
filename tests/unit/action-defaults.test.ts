// action.yml is the one source of every input's default. The runner (and the CLI, through
// inputEnv) hands the default over when an input is not given; a parser's own fallback only
// serves direct callers. So each fallback must equal the default: for every input with a default,
// parsing without it and parsing with the default given must give the same typed inputs.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { newEd25519KeyPair } from '../../src/lib/ssh.js';
import { parse as parseYaml } from 'yaml';
import * as backupVerda from '../../src/actions/backup-verda/inputs.js';
import * as deploy from '../../src/actions/deploy-serverless/inputs.js';
import * as drill from '../../src/actions/restore-drill/inputs.js';
import * as verify from '../../src/actions/verify-host/inputs.js';
import * as restoreHost from '../../src/actions/restore-host/inputs.js';
import * as sync from '../../src/actions/sync-models/inputs.js';
import type { SecretInput } from '../../src/actions/shared/port.js';
import { inputsFromRecord } from '../../src/lib/inputs.js';

const root = path.resolve(import.meta.dirname, '../..');

function actionInputs(action: string): Record<string, { default?: unknown }> {
  const yml = parseYaml(readFileSync(path.join(root, 'actions', action, 'action.yml'), 'utf8')) as {
    inputs: Record<string, { default?: unknown }>;
  };
  return yml.inputs;
}

/** The inputs of an action.yml that declare a non-empty default, with that default. */
function defaults(action: string): [string, string][] {
  return Object.entries(actionInputs(action)).flatMap(([name, spec]) =>
    spec.default === undefined || spec.default === '' ? [] : [[name, String(spec.default)]],
  );
}

type Parse = (record: Record<string, string>) => unknown;

/** For each default: the parse of `base` alone equals the parse of `base` plus that default. */
async function expectFallbacksMatch(action: string, base: Record<string, string>, parse: Parse) {
  const without = await parse(base);
  const differing: string[] = [];
  for (const [name, value] of defaults(action)) {
    if (name in base) continue;
    const given = await parse({ ...base, [name]: value });
    if (JSON.stringify(given) !== JSON.stringify(without))
      differing.push(`${name}: default ${JSON.stringify(value)} parses otherwise than no value`);
  }
  expect(differing).toEqual([]);
}

const key = newEd25519KeyPair('test').private;
const r2 = {
  'r2-endpoint': 'http://127.0.0.1:9000',
  'r2-access-key-id': 'key-id',
  'r2-secret-access-key': 'secret',
};
const pin = `SHA256:${'A'.repeat(43)}`;

describe('action.yml defaults equal the parsers’ fallbacks', () => {
  it('has inputs with defaults to compare in every action', () => {
    for (const action of [
      'backup-verda',
      'sync-models',
      'deploy-serverless',
      'restore-drill',
      'verify-host',
      'restore-host',
    ])
      expect(defaults(action).length).toBeGreaterThan(0);
  });

  it('backup-verda (mode backup and mode retention)', async () => {
    const recipient = await identityToRecipient(await generateX25519Identity());
    const backup = {
      host: 'gpu',
      user: 'dev',
      'ssh-private-key': key,
      'host-key-fingerprints': pin,
      config: 'config/backup.yml',
      bucket: 'backups',
      prefix: 'backups/verda',
      'age-recipients': recipient,
      'signing-key': key,
      ...r2,
    };
    await expectFallbacksMatch('backup-verda', backup, async (r) => ({
      mode: backupVerda.parseMode(inputsFromRecord(r)),
      inputs: await backupVerda.parseBackupInputs(inputsFromRecord(r), root),
    }));
    const retention = { mode: 'retention', bucket: 'backups', prefix: 'backups/verda', ...r2 };
    await expectFallbacksMatch('backup-verda', retention, (r) =>
      backupVerda.parseRetentionInputs(inputsFromRecord(r)),
    );
  });

  it.each(['push', 'pull'])('sync-models (%s)', async (direction) => {
    const base = {
      direction,
      [direction === 'push' ? 'source' : 'target']: '/models',
      bucket: 'vault',
      ...r2,
    };
    await expectFallbacksMatch('sync-models', base, (r) =>
      sync.parseSyncInputs(inputsFromRecord(r)),
    );
  });

  it.each(['plan', 'status', 'stop'])('deploy-serverless (%s)', async (command) => {
    const base = { command, 'verda-client-id': 'id', 'verda-client-secret': 'secret' };
    await expectFallbacksMatch('deploy-serverless', base, (r) =>
      deploy.parseDeployInputs(inputsFromRecord(r)),
    );
  });

  it('restore-drill', async () => {
    const identity = await generateX25519Identity();
    const base = { bucket: 'backups', prefix: 'backups/verda', 'age-identity': identity, ...r2 };
    await expectFallbacksMatch('restore-drill', base, (r) =>
      drill.parseDrillInputs(inputsFromRecord(r), root),
    );
  });

  it('verify-host', async () => {
    const base = { host: 'gpu', user: 'dev', 'ssh-private-key': key, 'host-key-fingerprints': pin };
    await expectFallbacksMatch('verify-host', base, async (r) =>
      verify.parseVerifyInputs(inputsFromRecord(r), root),
    );
  });

  it('restore-host', async () => {
    const identity = await generateX25519Identity();
    const base = {
      bucket: 'backups',
      'age-identity': identity,
      host: 'gpu',
      user: 'root',
      'ssh-private-key': key,
      'host-key-fingerprints': pin,
      ...r2,
    };
    await expectFallbacksMatch('restore-host', base, (r) =>
      restoreHost.parseRestoreHostInputs(inputsFromRecord(r), root),
    );
  });
});

describe('each action declares its secret inputs once, beside its parser', () => {
  const declared: [string, readonly SecretInput[]][] = [
    ['backup-verda', backupVerda.SECRET_INPUTS],
    ['sync-models', sync.SECRET_INPUTS],
    ['deploy-serverless', deploy.SECRET_INPUTS],
    ['restore-drill', drill.SECRET_INPUTS],
    ['verify-host', verify.SECRET_INPUTS],
    ['restore-host', restoreHost.SECRET_INPUTS],
  ];
  it.each(declared)('%s: every secret it masks is one of its inputs', (action, secrets) => {
    const names = secrets.map((s) => (typeof s === 'string' ? s : s.name));
    expect(names.filter((n) => !(n in actionInputs(action)))).toEqual([]);
    // Every key, token and password input is among them.
    const secretLooking = Object.keys(actionInputs(action)).filter((n) =>
      /(key|secret|token|identity|password)$/.test(n),
    );
    expect(secretLooking.filter((n) => !names.includes(n))).toEqual([]);
  });
});
