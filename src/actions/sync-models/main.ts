import { OpsError } from '../../lib/errors.js';
import { actionInputs, runAction } from '../shared/runtime.js';
import { parseSyncInputs } from './inputs.js';

export async function run(): Promise<void> {
  await runAction(async () => {
    parseSyncInputs(actionInputs);
    throw new OpsError('sync-models is not implemented yet');
  });
}
