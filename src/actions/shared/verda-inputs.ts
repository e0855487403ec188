// The Verda API inputs every Verda action takes (api-url, api-deadline, the client credentials),
// parsed once, and the client built from them with every token it receives masked.
import { InputError } from '../../lib/errors.js';
import type { Inputs } from '../../lib/inputs.js';
import { VerdaClient } from '../../serverless/client.js';
import { maskSecret, type ActionPort } from './port.js';

export interface VerdaApiInputs {
  apiUrl: string;
  /** Longest time one Verda API call may take, its retries included. */
  apiDeadlineMs: number;
  clientId: string;
  clientSecret: string;
}

export function parseVerdaApiInputs(inputs: Inputs): VerdaApiInputs {
  const apiUrl = inputs.optional('api-url') ?? 'https://api.verda.com/v1';
  if (!/^https?:\/\/[^\s/]+(\/\S*)?$/.test(apiUrl))
    throw new InputError('api-url', apiUrl, 'an http(s) URL such as https://api.verda.com/v1');
  const apiDeadlineMs = inputs.duration('api-deadline', '60s');
  if (apiDeadlineMs < 1000)
    throw new InputError('api-deadline', inputs.raw('api-deadline'), 'a duration of at least 1s');
  return {
    apiUrl,
    apiDeadlineMs,
    clientId: inputs.secret('verda-client-id'),
    clientSecret: inputs.secret('verda-client-secret'),
  };
}

/** The client, its access and refresh tokens masked like the inputs they come from. */
export function verdaClient(port: ActionPort, api: VerdaApiInputs): VerdaClient {
  return new VerdaClient({
    apiUrl: api.apiUrl,
    clientId: api.clientId,
    clientSecret: api.clientSecret,
    logger: port.logger,
    deadlineMs: api.apiDeadlineMs,
    onSecret: (value) => maskSecret(port, value),
  });
}
