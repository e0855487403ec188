import { Inputs, type InputSource } from '../../lib/inputs.js';

export interface SyncInputs {
  direction: 'push' | 'pull';
}

export function parseSyncInputs(source: InputSource): SyncInputs {
  const inputs = new Inputs(source);
  return { direction: inputs.oneOf('direction', ['push', 'pull'] as const) };
}
