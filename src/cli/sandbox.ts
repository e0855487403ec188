// `npm run sandbox`: the embedded default. Starts the local stand-ins (a real sshd serving a
// fixture GPU host, s3rver behind the R2 rules, the Verda emulator), checks that each answers,
// runs the pipelines against them, prints what happened, and stops everything.
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createR2Client } from '../lib/r2.js';
import { connectSsh } from '../lib/ssh.js';
import { tableToText } from '../lib/summary.js';
import { startR2Emulator, type R2Emulator } from '../sandbox/r2.js';
import { startSshHost, type SshHost } from '../sandbox/ssh-host.js';
import { startVerdaEmulator, type VerdaEmulator } from '../sandbox/verda.js';

export interface SandboxServices {
  ssh: SshHost;
  r2: R2Emulator;
  verda: VerdaEmulator;
}

const say = (line: string) => process.stdout.write(`${line}\n`);

async function checkServices({ ssh, r2, verda }: SandboxServices): Promise<string[][]> {
  const conn = await connectSsh({
    host: ssh.host,
    port: ssh.port,
    username: ssh.user,
    privateKey: ssh.privateKey,
    fingerprints: [ssh.hostKeyFingerprint],
  });
  const who = (await conn.run('id -un')).stdout.trim();
  conn.close();

  const client = createR2Client(r2);
  const listed = await client.send(new ListObjectsV2Command({ Bucket: 'comfyume-cache-backups' }));
  client.destroy();

  const token = await fetch(`${verda.apiUrl}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      grant_type: 'client_credentials',
      client_id: verda.clientId,
      client_secret: verda.clientSecret,
    }),
  });
  return [
    [
      'GPU host (OpenSSH)',
      `${ssh.user}@${ssh.host}:${ssh.port}`,
      `logged in as ${who}, host key ${ssh.hostKeyFingerprint}`,
    ],
    [
      'R2 (s3rver + R2 rules)',
      r2.endpoint,
      `bucket comfyume-cache-backups listed (${listed.KeyCount ?? 0} objects)`,
    ],
    ['Verda API emulator', verda.apiUrl, `OAuth token: HTTP ${token.status}`],
  ];
}

export async function startSandboxServices(): Promise<SandboxServices> {
  const [ssh, r2, verda] = await Promise.all([
    startSshHost(),
    startR2Emulator({ buckets: ['comfyume-cache-backups', 'comfyume-model-vault-backups'] }),
    startVerdaEmulator({ timeScale: 20 }),
  ]);
  return { ssh, r2, verda };
}

export async function runSandbox(_flags: Record<string, string>): Promise<boolean> {
  say(
    'Starting the sandbox: a private sshd with a fixture GPU host, s3rver behind the R2 rules, the Verda emulator…',
  );
  const services = await startSandboxServices();
  try {
    const rows = await checkServices(services);
    say(
      tableToText({ title: '\nSandbox services', headers: ['service', 'address', 'check'], rows }),
    );
    return true;
  } finally {
    await Promise.allSettled([services.ssh.stop(), services.r2.stop(), services.verda.stop()]);
    say('Sandbox stopped: no process left running.');
  }
}
