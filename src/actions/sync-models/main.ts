import { access } from 'node:fs/promises';
import { connectSsh, type SshConnection } from '../../lib/ssh.js';
import { loadModelsConfig, type ModelManifestConfig } from '../../models/config.js';
import { LocalModelHost, SshModelHost, type ModelHost } from '../../models/host.js';
import { syncTables } from '../../models/summary.js';
import { syncModels } from '../../models/sync.js';
import {
  actionInputs,
  actionsLogger,
  maskSecretInputs,
  runAction,
  setOutputs,
  writeSummary,
} from '../shared/runtime.js';
import { actionR2Client } from '../shared/r2-inputs.js';
import { parseSyncInputs, SECRET_INPUTS, type SyncInputs } from './inputs.js';

async function loadManifest(inputs: SyncInputs): Promise<ModelManifestConfig | undefined> {
  const exists = await access(inputs.manifest).then(
    () => true,
    () => false,
  );
  // The default manifest is optional (a checkout may not have it); a named one must exist.
  if (!exists && inputs.manifestIsDefault) {
    actionsLogger.info(
      `no ${inputs.manifest} here: no HuggingFace fallback or required-model check`,
    );
    return undefined;
  }
  return loadModelsConfig(inputs.manifest);
}

export async function run(): Promise<void> {
  await runAction(async () => {
    maskSecretInputs(SECRET_INPUTS);
    const inputs = parseSyncInputs(actionInputs);
    const models = await loadManifest(inputs);
    const client = actionR2Client(inputs);
    let conn: SshConnection | undefined;
    try {
      let host: ModelHost;
      if (inputs.location.kind === 'ssh' && inputs.ssh) {
        const loc = inputs.location;
        conn = await connectSsh({
          host: loc.host,
          port: loc.port,
          username: loc.user,
          privateKey: inputs.ssh.privateKey,
          fingerprints: inputs.ssh.fingerprints,
          logger: actionsLogger,
        });
        host = new SshModelHost(conn, loc.dir);
      } else {
        host = new LocalModelHost(inputs.location.dir);
      }
      const report = await syncModels(
        {
          direction: inputs.direction,
          host,
          client,
          bucket: inputs.bucket,
          prefix: inputs.prefix,
          include: inputs.include,
          concurrency: inputs.concurrency,
          delete: inputs.delete,
          dryRun: inputs.dryRun,
          hfFallback: inputs.hfFallback,
          ...(inputs.compare ? { compare: inputs.compare } : {}),
          ...(inputs.partSize ? { partSize: inputs.partSize } : {}),
          ...(models ? { models } : {}),
          ...(inputs.hfToken ? { hfToken: inputs.hfToken } : {}),
          ...(process.env.SYNC_MODELS_PROGRESS_MS
            ? { progressIntervalMs: Number(process.env.SYNC_MODELS_PROGRESS_MS) }
            : {}),
        },
        actionsLogger,
      );
      setOutputs({
        uploaded: report.uploaded,
        downloaded: report.downloaded,
        skipped: report.skipped,
        bytes: report.bytes,
        'manifest-key': report.manifestKey,
      });
      await writeSummary(syncTables(report));
      actionsLogger.info(
        `sync-models ${report.direction}: ${report.uploaded} uploaded, ${report.downloaded} downloaded, ${report.skipped} skipped, ` +
          `${report.requests.classA} Class A + ${report.requests.classB} Class B requests`,
      );
    } finally {
      client.destroy();
      await conn?.close();
    }
  });
}
