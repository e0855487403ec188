import path from 'node:path';
import { loadBackupConfig } from '../../backup/config.js';
import { loadAllowedSigners } from '../../backup/signature.js';
import { drillReport } from '../../backup/report.js';
import { runRestoreDrill } from '../../backup/restore-drill.js';
import { OpsError } from '../../lib/errors.js';
import {
  maskSecretInputs,
  runAction,
  setOutputs,
  writeSummary,
  type ActionPort,
} from '../shared/port.js';
import { actionR2Client } from '../shared/r2-inputs.js';
import { parseDrillInputs, SECRET_INPUTS } from './inputs.js';

export async function run(port: ActionPort): Promise<void> {
  await runAction(port, async () => {
    maskSecretInputs(port, SECRET_INPUTS);
    const inputs = await parseDrillInputs(port.input);
    const config = await loadBackupConfig(inputs.configFile);
    const { text: signersText, signers } = await loadAllowedSigners(inputs.signersFile);
    const client = actionR2Client(inputs);
    const runnerTemp = process.env.RUNNER_TEMP;
    // A cancelled run (the runner sends SIGINT, then SIGTERM) still removes the restored files.
    const cancel = new AbortController();
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => cancel.abort());
    const result = await runRestoreDrill({
      client,
      bucket: inputs.bucket,
      prefix: inputs.prefix,
      endpoint: inputs.endpoint,
      signal: cancel.signal,
      ...(inputs.backupId ? { backupId: inputs.backupId } : {}),
      identities: inputs.identities,
      signers,
      signersText,
      config,
      only: inputs.items,
      maxAgeMs: inputs.maxAgeMs,
      ...(runnerTemp ? { tempDir: path.resolve(runnerTemp) } : {}),
      ...(inputs.keepDir ? { keepDir: inputs.keepDir } : {}),
      logger: port.logger,
    });
    setOutputs(port, {
      'backup-id': result.backupId,
      items: result.items.length,
      bytes: result.downloadedBytes,
      'backup-age-hours': result.ageHours.toFixed(1),
      'restore-seconds': (result.downloadSeconds + result.restoreSeconds).toFixed(1),
    });
    await writeSummary(
      port,
      drillReport(result, { bucket: inputs.bucket, prefix: inputs.prefix, maxAge: inputs.maxAge }),
    );
    if (result.stale) {
      throw new OpsError(
        `backup ${result.backupId} restores, but it is ${result.ageHours.toFixed(1)} h old (max-age ${inputs.maxAge}): no nightly backup has completed since ${result.finishedAt}`,
      );
    }
  });
}
