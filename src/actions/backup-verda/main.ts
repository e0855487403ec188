import { loadBackupConfig } from '../../backup/config.js';
import { loadVerifyConfigIfPresent } from '../../host/verify-config.js';
import type { BackupAlerts } from '../../backup/alert.js';
import { backupReport, retentionReport } from '../../backup/report.js';
import { runBackup, type BackupResult } from '../../backup/run-backup.js';
import { runRetention } from '../../backup/run-retention.js';
import { errorMessage } from '../../lib/errors.js';
import {
  maskSecretInputs,
  runAction,
  setOutputs,
  writeSummary,
  type ActionPort,
} from '../shared/port.js';
import { actionR2Client } from '../shared/r2-inputs.js';
import { githubAlerts, runUrl } from '../shared/alert.js';
import { parseBackupInputs, parseMode, parseRetentionInputs, SECRET_INPUTS } from './inputs.js';
import { modelSync } from './with-models.js';
import { syncTables } from '../../models/summary.js';

export async function run(port: ActionPort): Promise<void> {
  await runAction(port, async () => {
    const secrets = maskSecretInputs(port, SECRET_INPUTS);
    const redact = (text: string) => secrets.reduce((t, s) => t.split(s).join('***'), text);
    if (parseMode(port.input) === 'retention') return retentionOnly(port);

    const inputs = await parseBackupInputs(port.input);
    const config = await loadBackupConfig(inputs.configFile);
    const checks = (await loadVerifyConfigIfPresent(inputs.verifyConfigFile)).checks;
    const alerts: BackupAlerts | undefined = inputs.githubToken
      ? githubAlerts({ token: inputs.githubToken, redact })
      : undefined;
    const logger = port.logger;
    const client = actionR2Client(inputs);

    const models =
      inputs.withModels && !inputs.dryRun
        ? modelSync(
            config,
            inputs.configFile,
            { client, bucket: inputs.modelsBucket, prefix: inputs.modelsPrefix },
            logger,
          )
        : undefined;

    let result: BackupResult;
    try {
      result = await runBackup({
        ssh: inputs.ssh,
        config,
        checks,
        client,
        bucket: inputs.bucket,
        prefix: inputs.prefix,
        endpoint: inputs.endpoint,
        recipients: inputs.recipients,
        signer: inputs.signer,
        retention: inputs.retention,
        skipRetention: inputs.skipRetention,
        dryRun: inputs.dryRun,
        verifyReadBack: inputs.verify === 'read-back',
        ...(inputs.partSize !== undefined ? { partSize: inputs.partSize } : {}),
        logger,
        ...(models ? { afterBackup: models.afterBackup } : {}),
      });
    } catch (err) {
      if (alerts && !inputs.dryRun) {
        await alerts.failed(redact(errorMessage(err)), runUrl()).catch((alertErr: unknown) => {
          logger.warn(`could not open the alert issue: ${redact(errorMessage(alertErr))}`);
        });
      }
      throw err;
    }

    setOutputs(port, {
      'backup-id': result.backupId,
      'manifest-key': result.dryRun ? '' : result.manifestKey,
      bytes: result.bytes,
      items: result.dryRun
        ? result.plan.filter((p) => p.action === 'backup').length
        : result.items.length,
      'tailscale-ip': result.facts.tailscaleIp,
      'deleted-backups': result.deleted.length,
      'refused-backups': result.refused.length,
    });
    const modelReport = models?.report();
    await writeSummary(port, [
      ...backupReport(result, { bucket: inputs.bucket, prefix: inputs.prefix }),
      ...(modelReport ? syncTables(modelReport) : []),
    ]);
    if (alerts && !result.dryRun) {
      await alerts.recovered(result.backupId, runUrl()).catch((err: unknown) => {
        logger.warn(`could not close the alert issue: ${redact(errorMessage(err))}`);
      });
    }
  });
}

/** mode: retention — its own job with its own credential: no SSH, nothing written, no alert. */
async function retentionOnly(port: ActionPort): Promise<void> {
  const inputs = parseRetentionInputs(port.input);
  const result = await runRetention({
    client: actionR2Client(inputs),
    bucket: inputs.bucket,
    prefix: inputs.prefix,
    retention: inputs.retention,
    dryRun: inputs.dryRun,
    logger: port.logger,
  });
  setOutputs(port, {
    'deleted-backups': result.deleted.length,
    'refused-backups': result.refused.length,
  });
  await writeSummary(
    port,
    retentionReport(result, { bucket: inputs.bucket, prefix: inputs.prefix }),
  );
}
