// The shared services started by global-setup.ts, as the tests see them.
export const SERVICES_ENV = 'COMFYUME_TEST_SERVICES';

export interface SharedServices {
  ssh: {
    host: string;
    port: number;
    user: string;
    privateKey: string;
    hostKeyFingerprint: string;
    hostRoot: string;
  };
  r2: { endpoint: string; accessKeyId: string; secretAccessKey: string; bucket: string };
  verda: { apiUrl: string; clientId: string; clientSecret: string; inferenceKey: string };
}

export function sharedServices(): SharedServices {
  const raw = process.env[SERVICES_ENV];
  if (!raw)
    throw new Error(
      `${SERVICES_ENV} is not set: run integration tests through jest (global-setup.ts)`,
    );
  return JSON.parse(raw) as SharedServices;
}
