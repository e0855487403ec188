import { loadBackupConfig } from '../../backup/config.js';
import { loadVerifyConfig } from '../../host/verify-config.js';
import { verifyFailure, verifyHost, verifyTable } from '../../host/verify-host.js';
import { errorMessage } from '../../lib/errors.js';
import { githubAlerts, runUrl } from '../shared/alert.js';
import {
  maskSecretInputs,
  runAction,
  setOutputs,
  writeSummary,
  type ActionPort,
} from '../shared/port.js';
import { parseVerifyInputs, SECRET_INPUTS } from './inputs.js';

/** The GitHub issue a failing drift check opens, and closes once the host is back. */
export const DRIFT_ISSUE_TITLE = 'GPU host drifted from its checklist';

export async function run(port: ActionPort): Promise<void> {
  await runAction(port, async () => {
    const secrets = maskSecretInputs(port, SECRET_INPUTS);
    const redact = (text: string) => secrets.reduce((t, s) => t.split(s).join('***'), text);
    const inputs = parseVerifyInputs(port.input);
    const plan = await loadVerifyConfig(inputs.configFile);
    const { host: shape } = await loadBackupConfig(inputs.backupConfigFile);
    const alerts =
      inputs.alert && inputs.githubToken
        ? githubAlerts({
            token: inputs.githubToken,
            redact,
            title: DRIFT_ISSUE_TITLE,
            what: 'verify-host',
            subject: 'verify-host of',
          })
        : undefined;
    try {
      const result = await verifyHost({
        ssh: inputs.ssh,
        target: { shape, tailscaleIp: inputs.tailscaleIp ?? shape['tailscale-ip'] },
        plan,
        logger: port.logger,
      });
      const table = verifyTable(result);
      for (const row of result.rows)
        port.logger.info(`${row.ok ? 'ok  ' : 'FAIL'} ${row.id}: ${row.found}`);
      setOutputs(port, {
        passed: result.failed.length === 0 ? 'true' : 'false',
        failed: result.failed.join(','),
        warnings: result.warnings.join(','),
      });
      await writeSummary(port, [table]);
      for (const id of result.warnings) port.logger.warn(`optional check ${id} failed`);
      const failure = verifyFailure(result);
      if (failure) throw failure;
      await alerts?.recovered(result.host, runUrl());
    } catch (err) {
      await alerts?.failed(errorMessage(err), runUrl());
      throw err;
    }
  });
}
