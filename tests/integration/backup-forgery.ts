// What someone with write access to the backup bucket can do: rewrite a backup's manifest,
// RESTORE.sh, archives and signature (with this repository's own open-source generator, so the
// forged script matches the forged manifest), then put everything back.
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Manifest } from '../../src/backup/manifest.js';
import { restoreScript } from '../../src/backup/restore-script.js';
import { SIGNATURE_NAMESPACE } from '../../src/backup/signature.js';
import { parseSigningKey } from '../../src/backup/signing-key.js';
import { signSshsig } from '../../src/lib/sshsig.js';
import { BUCKET, type BackupWorld } from './backup-setup.js';

/** Where smuggled code would leave its marker files (checked absent by the tests). */
export const MARKER_DIR = mkdtempSync(path.join(os.tmpdir(), 'forgery-markers-'));

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** A manifest as an attacker edits it: any shape at all. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Forged = Record<string, any>;

export interface Forgery {
  /** Edits the manifest (any shape: it is an attacker's), the script is regenerated to match. */
  edit?: (m: Forged) => void;
  /** Another RESTORE.sh instead of the regenerated one. */
  script?: Buffer;
  /** Objects to replace (key → bytes), e.g. an archive. */
  objects?: Record<string, Buffer>;
  /** A private key to sign with, 'none' to delete the signature, 'keep' to leave the old one. */
  signWith: string | 'none' | 'keep';
}

export function forgery(world: BackupWorld, prefix: string) {
  const originals = new Map<string, Buffer | undefined>();
  const remember = async (key: string) => {
    if (!originals.has(key)) originals.set(key, await world.get(key).catch(() => undefined));
  };
  const put = async (key: string, body: Buffer | string) => {
    await remember(key);
    await world.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  };
  const remove = async (key: string) => {
    await remember(key);
    await world.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
  };

  return {
    /** Rewrites backup `manifest.backupId` in the bucket; returns the forged manifest text. */
    async forge(manifest: Manifest, f: Forgery): Promise<string> {
      const m = structuredClone(manifest) as unknown as Forged;
      f.edit?.(m);
      const manifestKey = `${prefix}/${manifest.backupId}/manifest.json`;
      for (const [key, body] of Object.entries(f.objects ?? {})) await put(key, body);
      const script =
        f.script ??
        Buffer.from(
          restoreScript({
            backupId: m.backupId,
            toolVersion: m.tool?.version,
            bucket: BUCKET,
            manifestKey,
            endpoint: world.r2.endpoint,
            hostFingerprint: m.host?.fingerprint,
            facts: m.facts,
            shape: m.rebuild?.host ?? manifest.rebuild.host,
            checks: m.rebuild?.checks ?? manifest.rebuild.checks,
            items: m.items ?? [],
          }),
        );
      m.restoreScript = { ...m.restoreScript, sha256: sha256(script), bytes: script.length };
      const text = `${JSON.stringify(m, null, 2)}\n`;
      await put(manifest.restoreScript.key, script);
      await put(manifestKey, text);
      if (f.signWith === 'none') await remove(`${manifestKey}.sig`);
      else if (f.signWith !== 'keep') {
        const signer = parseSigningKey('test', f.signWith);
        await put(`${manifestKey}.sig`, signSshsig(Buffer.from(text), SIGNATURE_NAMESPACE, signer));
      }
      return text;
    },
    /** Puts every object back as it was. */
    async restore(): Promise<void> {
      for (const [key, body] of originals) {
        if (body === undefined)
          await world.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
        else await world.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
      }
      originals.clear();
    },
  };
}
