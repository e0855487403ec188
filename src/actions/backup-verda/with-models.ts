// with-models: after a good backup, push the host's .safetensors to the model vault over the
// same SSH connection, with the sync-models library (src/models): only what differs is uploaded.
import type { S3Client } from '@aws-sdk/client-s3';
import { onHost, type BackupConfig } from '../../backup/config.js';
import { ConfigError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { SshConnection } from '../../lib/ssh.js';
import { normalizePrefix } from '../../models/bucket.js';
import { SshModelHost } from '../../models/host.js';
import { syncModels, type SyncReport } from '../../models/sync.js';

export interface ModelSync {
  afterBackup: (conn: SshConnection) => Promise<void>;
  report: () => SyncReport | undefined;
}

/** Checks the config up front (before any connection) and returns the post-backup hook. */
export function modelSync(
  config: BackupConfig,
  configFile: string,
  vault: { client: S3Client; bucket: string; prefix: string },
  logger: Logger,
): ModelSync {
  const dir = config['models-dir'];
  if (!dir) {
    throw new ConfigError(configFile, [
      'models-dir: required when with-models is true (where the .safetensors live on the host)',
    ]);
  }
  let report: SyncReport | undefined;
  return {
    report: () => report,
    afterBackup: async (conn) => {
      report = await logger.group(
        `Sync the model vault (s3://${vault.bucket}/${vault.prefix})`,
        () =>
          syncModels(
            {
              direction: 'push',
              host: new SshModelHost(conn, onHost(config, dir)),
              client: vault.client,
              bucket: vault.bucket,
              prefix: normalizePrefix(vault.prefix),
              include: ['**/*.safetensors'],
              concurrency: 2,
              delete: false,
              dryRun: false,
              hfFallback: false,
            },
            logger,
          ),
      );
      logger.info(
        `model vault: ${report.uploaded} uploaded, ${report.skipped} unchanged, ${report.bytes} bytes`,
      );
    },
  };
}
