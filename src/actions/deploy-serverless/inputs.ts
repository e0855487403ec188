import { Inputs, type InputSource } from '../../lib/inputs.js';

export interface DeployInputs {
  command: 'plan' | 'apply' | 'start' | 'scale' | 'stop' | 'status' | 'delete';
}

export function parseDeployInputs(source: InputSource): DeployInputs {
  const inputs = new Inputs(source);
  return {
    command: inputs.oneOf('command', [
      'plan',
      'apply',
      'start',
      'scale',
      'stop',
      'status',
      'delete',
    ] as const),
  };
}
