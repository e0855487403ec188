import { OpsError } from '../../lib/errors.js';
import { actionInputs, runAction } from '../shared/runtime.js';
import { parseBackupInputs } from './inputs.js';

export async function run(): Promise<void> {
  await runAction(async () => {
    parseBackupInputs(actionInputs);
    throw new OpsError('backup-verda is not implemented yet');
  });
}
