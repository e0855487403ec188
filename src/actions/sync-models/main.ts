import { access } from 'node:fs/promises';
import type { Logger } from '../../lib/logger.js';
import { connectSsh, type SshConnection } from '../../lib/ssh.js';
import { loadModelsConfig, type ModelManifestConfig } from '../../models/config.js';
import { LocalModelHost, SshModelHost, type ModelHost } from '../../models/host.js';
import { syncTables } from '../../models/summary.js';
import { syncModels } from '../../models/sync.js';
import {
  maskSecret,
  maskSecretInputs,
  runAction,
  setOutputs,
  writeSummary,
  type ActionPort,
} from '../shared/port.js';
import { actionR2Client } from '../shared/r2-inputs.js';
import { parseSyncInputs, SECRET_INPUTS, type SyncInputs } from './inputs.js';

async function loadManifest(
  inputs: SyncInputs,
  logger: Logger,
): Promise<ModelManifestConfig | undefined> {
  const exists = await access(inputs.manifest).then(
    () => true,
    () => false,
  );
  // The default manifest is optional (a checkout may not have it); a named one must exist.
  if (!exists && inputs.manifestIsDefault) {
    logger.info(`no ${inputs.manifest} here: no HuggingFace fallback or required-model check`);
    return undefined;
  }
  return loadModelsConfig(inputs.manifest);
}

export async function run(port: ActionPort): Promise<void> {
  await runAction(port, async () => {
    maskSecretInputs(port, SECRET_INPUTS);
    const inputs = parseSyncInputs(port.input);
    const models = await loadManifest(inputs, port.logger);
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
          logger: port.logger,
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
          pullVia: inputs.pullVia,
          // A presigned URL is derived from the R2 secret: masked like the secret itself.
          mask: (secret) => maskSecret(port, secret),
          requestTimeoutMs: inputs.r2TimeoutMs,
          ...(inputs.compare ? { compare: inputs.compare } : {}),
          ...(inputs.partSize ? { partSize: inputs.partSize } : {}),
          ...(models ? { models } : {}),
          ...(inputs.hfToken ? { hfToken: inputs.hfToken } : {}),
          ...(process.env.SYNC_MODELS_PROGRESS_MS
            ? { progressIntervalMs: Number(process.env.SYNC_MODELS_PROGRESS_MS) }
            : {}),
        },
        port.logger,
      );
      setOutputs(port, {
        uploaded: report.uploaded,
        downloaded: report.downloaded,
        skipped: report.skipped,
        bytes: report.bytes,
        'manifest-key': report.manifestKey,
      });
      await writeSummary(port, syncTables(report));
      port.logger.info(
        `sync-models ${report.direction}: ${report.uploaded} uploaded, ${report.downloaded} downloaded, ${report.skipped} skipped, ` +
          `${report.requests.classA} Class A + ${report.requests.classB} Class B requests`,
      );
    } finally {
      client.destroy();
      await conn?.close();
    }
  });
}
