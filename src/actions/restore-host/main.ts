import { loadAllowedSigners } from '../../backup/signature.js';
import { restoreHost, restoreHostReport } from '../../host/restore-host.js';
import {
  maskSecretInputs,
  runAction,
  setOutputs,
  writeSummary,
  type ActionPort,
} from '../shared/port.js';
import { actionR2Client } from '../shared/r2-inputs.js';
import { parseRestoreHostInputs, SECRET_INPUTS } from './inputs.js';

export async function run(port: ActionPort): Promise<void> {
  await runAction(port, async () => {
    maskSecretInputs(port, SECRET_INPUTS);
    const inputs = await parseRestoreHostInputs(port.input);
    const { text: signersText, signers } = await loadAllowedSigners(inputs.signersFile);
    const client = actionR2Client(inputs);
    // A cancelled run (the runner sends SIGINT, then SIGTERM) still removes the identity.
    const cancel = new AbortController();
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => cancel.abort());
    const result = await restoreHost({
      client,
      bucket: inputs.bucket,
      prefix: inputs.prefix,
      ...(inputs.backupId ? { backupId: inputs.backupId } : {}),
      identities: inputs.identities,
      signers,
      signersText,
      ssh: inputs.ssh,
      workDir: inputs.workDir,
      keepBackup: inputs.keepBackup,
      ...(inputs.modelsMount ? { modelsMount: inputs.modelsMount } : {}),
      ...(inputs.scratchMount ? { scratchMount: inputs.scratchMount } : {}),
      onlySteps: inputs.onlySteps,
      skipSteps: inputs.skipSteps,
      ...(inputs.ohmyzshRepo ? { ohmyzshRepo: inputs.ohmyzshRepo } : {}),
      dryRun: inputs.dryRun,
      signal: cancel.signal,
      logger: port.logger,
    });
    setOutputs(port, {
      'backup-id': result.backupId,
      changes: result.changes,
      'restore-seconds': result.restoreSeconds.toFixed(1),
      steps: JSON.stringify(result.steps),
      'restored-host-key-fingerprints': result.hostKeyFingerprints.join(','),
    });
    await writeSummary(port, restoreHostReport(result, { host: inputs.ssh.host }));
  });
}
