import { Inputs, type InputSource } from '../../lib/inputs.js';

export interface BackupInputs {
  host: string;
  port: number;
}

export function parseBackupInputs(source: InputSource): BackupInputs {
  const inputs = new Inputs(source);
  return {
    host: inputs.required('host', 'the GPU host name or address'),
    port: inputs.int('port', { min: 1, max: 65535, default: 22 }),
  };
}
