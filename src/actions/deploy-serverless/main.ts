import path from 'node:path';
import { InputError, OpsError } from '../../lib/errors.js';
import { loadWorkflow } from '../../serverless/comfy.js';
import { budgetTable, CostLimitError, costTable } from '../../serverless/cost.js';
import { costCap, loadWorkshopConfig } from '../../serverless/config.js';
import { runDeploy, type DeployResult } from '../../serverless/deploy.js';
import { resolveDesired } from '../../serverless/desired.js';
import { runningReplicas, summaryParts } from '../../serverless/report.js';
import { WaitTimeoutError } from '../../serverless/wait.js';
import {
  maskSecretInputs,
  runAction,
  setOutputs,
  writeSummary,
  type ActionPort,
} from '../shared/port.js';
import { checkEndpointUrl, ENDPOINT_DOWN, handOffToVps } from '../../serverless/handoff.js';
import type { Table } from '../../lib/summary.js';
import { errorMessage } from '../../lib/errors.js';
import { verdaClient } from '../shared/verda-inputs.js';
import { HANDOFF_COMMANDS, parseDeployInputs, SECRET_INPUTS, type Handoff } from './inputs.js';
import { describeVariable, publishVariable } from './variable.js';

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
    // The workflow is read (and checked) before any request, only by the commands that run it.
    const runsJobs =
      inputs.command === 'load-test' ||
      (inputs.command === 'start' && inputs.wait && inputs.warmup) ||
      (inputs.command === 'status' && inputs.probe);
    const workflow = runsJobs
      ? await loadWorkflow(
          path.resolve(process.env.GITHUB_WORKSPACE ?? process.cwd(), inputs.workflow),
        )
      : undefined;
    if (inputs.command === 'delete' && inputs.confirm !== desired.name) {
      throw new InputError(
        'confirm',
        inputs.confirm ?? '',
        `the deployment name "${desired.name}" to confirm the delete`,
      );
    }
    const client = verdaClient(port, inputs);
    const handsOn =
      HANDOFF_COMMANDS.includes(inputs.command) &&
      (inputs.handoff.variable !== undefined || inputs.handoff.vps !== undefined);
    // stop and delete mark the endpoint down first, so the queue-manager stops sending jobs to
    // a fleet that is going away; the stop itself runs whatever that gave (billing must end).
    const down =
      handsOn && inputs.command !== 'start'
        ? await port.logger.group('Mark the endpoint down for the queue-manager', () =>
            handOn(port, inputs.handoff, () => ENDPOINT_DOWN),
          )
        : undefined;
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
        maxWorkshopCost: config.max_workshop_cost_usd,
        workshopCostLimitName: `max_workshop_cost_usd in ${inputs.config}`,
        probe: inputs.probe,
        ...(workflow && inputs.command !== 'load-test'
          ? { warmup: { workflow, timeoutMs: inputs.jobTimeoutMs } }
          : {}),
        ...(workflow && inputs.command === 'load-test'
          ? { loadTest: { workflow, jobs: inputs.jobs, jobTimeoutMs: inputs.jobTimeoutMs } }
          : {}),
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
        await writeSummary(port, [
          costTable(err.cost),
          budgetTable(err.cost),
          `**Refused:** ${err.message}`,
        ]);
      }
      if (down) await writeSummary(port, [down.table]);
      throw err;
    }
    // start hands on the URL only once the warm-up rendered through it.
    const up =
      handsOn && inputs.command === 'start' && !result.failure && result.warmup?.ok
        ? await port.logger.group('Hand the endpoint to the queue-manager', () =>
            handOn(port, inputs.handoff, () => checkEndpointUrl(result.endpointUrl)),
          )
        : undefined;
    const handoff = up ?? down;
    setOutputs(port, {
      'endpoint-url': result.endpointUrl,
      status: result.status,
      replicas: runningReplicas(result),
      'cold-start-seconds': result.coldStartSeconds ?? '',
      'first-job-seconds': result.firstJobSeconds ?? '',
      'hourly-cost-max': result.cost ? result.cost.hourlyMax.toFixed(2) : '',
      changed: result.changed,
      handoff: handoff ? (handoff.failures.length ? 'failed' : handoff.state) : '',
      ...loadTestOutputs(result),
    });
    await writeSummary(port, [...summaryParts(result), ...(handoff ? [handoff.table] : [])]);
    // The work was done and reported; a failed warm-up or load-test job still fails the run.
    if (result.failure) throw new OpsError(result.failure);
    // A queue-manager that does not know the endpoint is a workshop that is down: fail.
    if (handoff?.failures.length)
      throw new OpsError(
        `the endpoint was not handed to the queue-manager: ${handoff.failures.join('; ')}`,
      );
  });
}

interface HandoffReport {
  state: 'set' | 'down';
  table: Table;
  failures: string[];
}

/**
 * Hands `value()` (the checked URL, or empty = down) to every target configured: the GitHub
 * variable, then the VPS's .env. Each target is tried even when another failed; failures are
 * collected, so the summary names them all.
 */
async function handOn(port: ActionPort, h: Handoff, value: () => string): Promise<HandoffReport> {
  const rows: string[][] = [];
  const failures: string[] = [];
  let text: string | undefined;
  try {
    text = value();
  } catch (err) {
    failures.push(errorMessage(err));
  }
  const state = text === ENDPOINT_DOWN ? 'down' : 'set';
  const shown = text === undefined ? '-' : text === ENDPOINT_DOWN ? '(empty: down)' : text;
  if (h.variable) {
    const repository = process.env.GITHUB_REPOSITORY ?? '';
    const where = `GitHub ${describeVariable(h.variable, repository)}`;
    if (text === undefined) rows.push([where, shown, 'not published']);
    else {
      try {
        const done = await publishVariable(h.variable, text);
        port.logger.info(`${where}: ${done}`);
        rows.push([where, shown, done === 'absent' ? 'absent already (down)' : done]);
      } catch (err) {
        failures.push(errorMessage(err));
        rows.push([where, shown, 'FAILED']);
      }
    }
  }
  if (h.vps) {
    const v = h.vps;
    const where = `VPS ${v.username}@${v.host}:${v.port} ${v.envFile}`;
    if (text === undefined) rows.push([where, shown, 'not written']);
    else {
      try {
        const done = await handOffToVps(v, text, port.logger);
        rows.push([
          where,
          `${v.key}=${text}`,
          `${done.changed ? `${done.replaced ? `replaced ${done.replaced} line(s)` : 'appended'}; sha256 ${done.sha256Before.slice(0, 12)}… → ${done.sha256After.slice(0, 12)}…` : 'already so: not written'}; ${done.restarted ?? ''}`,
        ]);
      } catch (err) {
        failures.push(errorMessage(err));
        rows.push([where, `${v.key}=${text}`, 'FAILED']);
      }
    }
  }
  return {
    state,
    failures,
    table: {
      title: 'Endpoint handed to the queue-manager',
      headers: ['where', 'value', 'result'],
      rows,
    },
  };
}

const secondsOutput = (ms: number | undefined) => (ms === undefined ? '' : (ms / 1000).toFixed(1));

function loadTestOutputs(result: DeployResult): Record<string, string | number> {
  const t = result.loadTest;
  if (!t) return {};
  return {
    'jobs-succeeded': t.jobs.length - t.failed.length,
    'jobs-failed': t.failed.length,
    'latency-p50-seconds': secondsOutput(t.p50Ms),
    'latency-p95-seconds': secondsOutput(t.p95Ms),
    'latency-max-seconds': secondsOutput(t.maxMs),
    'peak-replicas': t.peakReplicas,
  };
}
