// Starts the three real stand-ins once for the integration project and hands their addresses and
// credentials to the tests through COMFYUME_TEST_SERVICES (see services.ts). Tests that need
// faults, counters or a clock of their own start private instances instead. Loaded by
// global-setup.mjs through tsx (jest's module mapper does not apply to global setup imports).
import { startR2Emulator } from '../../src/sandbox/r2.js';
import { startSshHost } from '../../src/sandbox/ssh-host.js';
import { startVerdaEmulator } from '../../src/sandbox/verda.js';
import { SERVICES_ENV, type SharedServices } from './services.js';

export type Stoppable = { stop(): Promise<void> };

export async function startSharedServices(): Promise<Stoppable[]> {
  const running: Stoppable[] = [];
  const [ssh, r2, verda] = await Promise.all([
    startSshHost(),
    startR2Emulator({ buckets: ['comfyume-shared-tests'] }),
    startVerdaEmulator(),
  ]);
  running.push(ssh, r2, verda);
  const services: SharedServices = {
    ssh: {
      host: ssh.host,
      port: ssh.port,
      user: ssh.user,
      privateKey: ssh.privateKey,
      hostKeyFingerprint: ssh.hostKeyFingerprint,
      hostRoot: ssh.hostRoot,
    },
    r2: {
      endpoint: r2.endpoint,
      accessKeyId: r2.accessKeyId,
      secretAccessKey: r2.secretAccessKey,
      bucket: 'comfyume-shared-tests',
    },
    verda: {
      apiUrl: verda.apiUrl,
      clientId: verda.clientId,
      clientSecret: verda.clientSecret,
      inferenceKey: verda.inferenceKey,
    },
  };
  process.env[SERVICES_ENV] = JSON.stringify(services);
  return running;
}
