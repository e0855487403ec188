import path from 'node:path';
import { InputError } from '../../lib/errors.js';
import { VerdaClient } from '../../serverless/client.js';
import { CostLimitError, costTable } from '../../serverless/cost.js';
import { costCap, loadWorkshopConfig } from '../../serverless/config.js';
import { runDeploy, type DeployResult } from '../../serverless/deploy.js';
import { resolveDesired } from '../../serverless/desired.js';
import { runningReplicas, summaryParts } from '../../serverless/report.js';
import { WaitTimeoutError } from '../../serverless/wait.js';
import {
  maskSecret,
  maskSecretInputs,
  runAction,
  setOutputs,
  writeSummary,
  type ActionPort,
} from '../shared/port.js';
import { parseDeployInputs, SECRET_INPUTS } from './inputs.js';

export async function run(port: ActionPort): Promise<void> {
  await runAction(port, async () => {
    // Mask first: nothing below may print a credential.
    maskSecretInputs(port, SECRET_INPUTS);
    const inputs = parseDeployInputs(port.input);
    const configFile = path.resolve(process.env.GITHUB_WORKSPACE ?? process.cwd(), inputs.config);
    const config = await loadWorkshopConfig(configFile);
    // The input can only lower the config's hard cap; an empty one leaves the cap in force.
    const cap = costCap(config, inputs.config, inputs.maxHourlyCost);
    // scale checks min/max against the live deployment, not against the config's bounds.
    const { minReplicas, maxReplicas, ...rest } = inputs.overrides;
    const desired = resolveDesired(config, inputs.command === 'scale' ? rest : inputs.overrides);
    if (inputs.command === 'delete' && inputs.confirm !== desired.name) {
      throw new InputError(
        'confirm',
        inputs.confirm ?? '',
        `the deployment name "${desired.name}" to confirm the delete`,
      );
    }
    const client = new VerdaClient({
      apiUrl: inputs.apiUrl,
      clientId: inputs.clientId,
      clientSecret: inputs.clientSecret,
      logger: port.logger,
      deadlineMs: inputs.apiDeadlineMs,
      // The access and refresh tokens the API hands out are masked like the inputs they come from.
      onSecret: (value) => maskSecret(port, value),
    });
    let result: DeployResult;
    try {
      result = await runDeploy({
        command: inputs.command,
        desired,
        client,
        logger: port.logger,
        wait: inputs.wait,
        waitTimeoutMs: inputs.waitTimeoutMs,
        pollMs: inputs.pollMs,
        purgeQueue: inputs.purgeQueue,
        scale: {
          ...(minReplicas === undefined ? {} : { min: minReplicas }),
          ...(maxReplicas === undefined ? {} : { max: maxReplicas }),
        },
        maxHourlyCost: cap.usd,
        costLimitName: cap.name,
        ...(inputs.inferenceKey === undefined ? {} : { inferenceKey: inputs.inferenceKey }),
      });
    } catch (err) {
      // What was learnt before the failure still goes to the summary and outputs.
      if (err instanceof WaitTimeoutError) {
        setOutputs(port, { status: err.status, changed: client.writes.length > 0 });
        await writeSummary(
          port,
          summaryParts(undefined, { message: err.message, timeline: err.timeline }),
        );
      } else if (err instanceof CostLimitError) {
        setOutputs(port, { 'hourly-cost-max': err.cost.hourlyMax.toFixed(2), changed: false });
        await writeSummary(port, [costTable(err.cost), `**Refused:** ${err.message}`]);
      }
      throw err;
    }
    setOutputs(port, {
      'endpoint-url': result.endpointUrl,
      status: result.status,
      replicas: runningReplicas(result),
      'cold-start-seconds': result.coldStartSeconds ?? '',
      'hourly-cost-max': result.cost ? result.cost.hourlyMax.toFixed(2) : '',
      changed: result.changed,
    });
    await writeSummary(port, summaryParts(result));
  });
}
