import { OpsError } from '../../lib/errors.js';
import { actionInputs, runAction } from '../shared/runtime.js';
import { parseDeployInputs } from './inputs.js';

export async function run(): Promise<void> {
  await runAction(async () => {
    parseDeployInputs(actionInputs);
    throw new OpsError('deploy-serverless is not implemented yet');
  });
}
