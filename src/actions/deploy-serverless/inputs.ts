import { InputError } from '../../lib/errors.js';
import { Inputs, type InputSource } from '../../lib/inputs.js';
import { parseVerdaApiInputs, type VerdaApiInputs } from '../shared/verda-inputs.js';
import { deployCommands, type DeployCommand } from '../../serverless/deploy.js';
import type { DeployOverrides } from '../../serverless/desired.js';
import { checkEnvKey, parseRestart, type VpsTarget } from '../../serverless/handoff.js';
import { parseSshTarget } from '../shared/ssh-inputs.js';
import type { VariableTarget } from './variable.js';

/** The secret inputs, masked before anything else happens. */
export const SECRET_INPUTS = [
  'verda-client-id',
  'verda-client-secret',
  'inference-api-key',
  'github-token',
  'vps-ssh-private-key',
] as const;

/** Where the endpoint is handed on: start publishes it, stop and delete mark it down. */
export interface Handoff {
  variable?: Omit<VariableTarget, 'repository' | 'apiUrl'>;
  vps?: VpsTarget;
}

/** The commands that hand the endpoint on (start: the URL; stop, delete: down). */
export const HANDOFF_COMMANDS: readonly DeployCommand[] = ['start', 'stop', 'delete'];

export interface DeployInputs extends VerdaApiInputs {
  command: DeployCommand;
  config: string;
  overrides: DeployOverrides;
  maxHourlyCost: number | undefined;
  wait: boolean;
  waitTimeoutMs: number;
  pollMs: number;
  inferenceKey: string | undefined;
  confirm: string | undefined;
  purgeQueue: boolean;
  /** start: render the workflow once the endpoint answers. */
  warmup: boolean;
  /** status: also wait for the endpoint and render the warm-up. */
  probe: boolean;
  /** The warm-up's and the load test's workflow file, relative to the workspace. */
  workflow: string;
  /** load-test: jobs submitted at once. */
  jobs: number;
  /** How long one job (warm-up or load test) may take. */
  jobTimeoutMs: number;
  handoff: Handoff;
}

// GitHub's rule for variable names (letters, digits, _; not starting with a digit or GITHUB_).
const VARIABLE_RE = /^(?!GITHUB_)[A-Za-z_][A-Za-z0-9_]{0,99}$/i;
const ENVIRONMENT_RE = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,254}$/;

/** The hand-off inputs: each target on when its first input is given, checked whole. */
function parseHandoff(inputs: Inputs): Handoff {
  const handoff: Handoff = {};
  const name = inputs.optional('publish-variable');
  if (name !== undefined) {
    if (!VARIABLE_RE.test(name))
      throw new InputError(
        'publish-variable',
        name,
        'a GitHub variable name: letters, digits and _, not starting with a digit or GITHUB_ (e.g. WORKSHOP_ENDPOINT)',
      );
    const scope = inputs.oneOf('variable-scope', ['repo', 'environment'] as const, 'repo');
    const token = inputs.secret(
      'github-token',
      'a token that may write Actions variables, to publish publish-variable',
    );
    handoff.variable = { token, name, scope };
    if (scope === 'environment') {
      const environment = inputs.required(
        'variable-environment',
        'the environment whose variable is published (variable-scope: environment)',
      );
      if (!ENVIRONMENT_RE.test(environment))
        throw new InputError('variable-environment', environment, 'a GitHub environment name');
      handoff.variable.environment = environment;
    }
  }
  if (inputs.optional('vps-host') !== undefined) {
    const ssh = parseSshTarget(inputs, 'vps-');
    const envFile = inputs.required(
      'vps-env-file',
      "the absolute path of the queue-manager's .env",
    );
    if (!/^\/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$/.test(envFile) || envFile.split('/').includes('..'))
      throw new InputError(
        'vps-env-file',
        envFile,
        'an absolute file path (letters, digits, . _ - /)',
      );
    const key = checkEnvKey(
      'vps-env-variable',
      inputs.optional('vps-env-variable') ?? 'WORKSHOP_ENDPOINT',
    );
    const restart = parseRestart(
      'vps-restart',
      inputs.required('vps-restart', 'how the queue-manager is restarted (it reads .env at start)'),
    );
    handoff.vps = { ...ssh, envFile, key, restart };
  }
  return handoff;
}

/** Every input checked before anything is read or requested; each bad one is an InputError. */
export function parseDeployInputs(source: InputSource): DeployInputs {
  const inputs = new Inputs(source);
  const command = inputs.oneOf('command', deployCommands);
  const overrides: DeployOverrides = {};
  const preset = inputs.optional('preset');
  if (preset !== undefined) overrides.preset = preset;
  const gpu = inputs.optional('gpu');
  if (gpu !== undefined) overrides.gpu = gpu;
  if (inputs.raw('spot') !== '') overrides.spot = inputs.boolean('spot');
  const min = inputs.optionalInt('min-replicas', { min: 0, max: 1000 });
  if (min !== undefined) overrides.minReplicas = min;
  // The API needs max >= 1 (max 0 would never serve; stop scales min to 0 and pauses instead).
  const max = inputs.optionalInt('max-replicas', { min: 1, max: 1000 });
  if (max !== undefined) overrides.maxReplicas = max;
  if (min !== undefined && max !== undefined && max < Math.max(1, min)) {
    throw new InputError('max-replicas', String(max), `at least min-replicas (${min})`);
  }
  const tag = inputs.optional('image-tag');
  if (tag !== undefined) overrides.imageTag = tag;
  if (command === 'scale' && min === undefined && max === undefined) {
    throw new InputError(
      'max-replicas',
      '',
      'min-replicas and/or max-replicas for the scale command',
    );
  }
  const maxHourlyCost =
    inputs.raw('max-hourly-cost') === '' ? undefined : inputs.number('max-hourly-cost', { min: 0 });
  const wait = inputs.boolean('wait', true);
  const inferenceKey = inputs.optional('inference-api-key');
  if (command === 'start' && wait && inferenceKey === undefined) {
    throw new InputError(
      'inference-api-key',
      '',
      "the inference API key (dc_...) so start can call the endpoint's health path",
    );
  }
  const probe = inputs.boolean('probe', false);
  const warmup = inputs.boolean('warmup', true);
  const handoff = parseHandoff(inputs);
  // Published only once a job rendered: a start that does not wait or warm up has no such proof.
  if (command === 'start' && (handoff.variable || handoff.vps) && !(wait && warmup)) {
    throw new InputError(
      wait ? 'warmup' : 'wait',
      'false',
      'true when the endpoint is published (publish-variable or vps-host): it is handed on only after the warm-up rendered',
    );
  }
  if ((command === 'load-test' || (command === 'status' && probe)) && inferenceKey === undefined) {
    throw new InputError(
      'inference-api-key',
      '',
      `the inference API key (dc_...) so ${command === 'load-test' ? 'load-test' : 'status with probe'} can submit jobs to the endpoint`,
    );
  }
  // The seed's "simulated 15 concurrent requests".
  const jobs = inputs.int('jobs', { min: 1, max: 1000, default: 15 });
  const jobTimeoutMs = inputs.duration('job-timeout', '10m');
  if (jobTimeoutMs <= 0)
    throw new InputError('job-timeout', inputs.raw('job-timeout'), 'a duration above 0');
  const api = parseVerdaApiInputs(inputs);
  const waitTimeoutMs = inputs.duration('wait-timeout', '15m');
  if (waitTimeoutMs <= 0)
    throw new InputError('wait-timeout', inputs.raw('wait-timeout'), 'a duration above 0');
  const pollMs = inputs.duration('poll-interval', '5s');
  if (pollMs <= 0)
    throw new InputError('poll-interval', inputs.raw('poll-interval'), 'a duration above 0');
  return {
    command,
    config: inputs.optional('config') ?? 'config/workshop.yml',
    overrides,
    maxHourlyCost,
    wait,
    waitTimeoutMs,
    pollMs,
    ...api,
    inferenceKey,
    confirm: inputs.optional('confirm'),
    purgeQueue: inputs.boolean('purge-queue', false),
    warmup,
    probe,
    workflow: inputs.optional('workflow') ?? 'config/warmup.json',
    jobs,
    jobTimeoutMs,
    handoff,
  };
}
