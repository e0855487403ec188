// The three stand-ins started by global setup answer like the real parts they replace.
import { describe, expect, it } from '@jest/globals';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { createR2Client } from '../../src/lib/r2.js';
import { connectSsh } from '../../src/lib/ssh.js';
import { sharedServices } from '../helpers/services.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('shared services from global setup', () => {
  const services = sharedServices();

  it('the GPU host accepts its pinned key and runs commands as the test user', async () => {
    const { ssh } = services;
    const conn = await connectSsh({
      host: ssh.host,
      port: ssh.port,
      username: ssh.user,
      privateKey: ssh.privateKey,
      fingerprints: [ssh.hostKeyFingerprint],
    });
    try {
      const { stdout } = await conn.run('id -un');
      expect(stdout.trim()).toBe(ssh.user);
    } finally {
      conn.close();
    }
  });

  it('R2 stores and returns the same bytes', async () => {
    const { r2 } = services;
    const client = createR2Client(r2);
    const body = randomBytes(64 * 1024);
    await client.send(new PutObjectCommand({ Bucket: r2.bucket, Key: 'probe/bytes', Body: body }));
    const got = await client.send(new GetObjectCommand({ Bucket: r2.bucket, Key: 'probe/bytes' }));
    expect(sha256(await got.Body!.transformToByteArray())).toBe(sha256(body));
    client.destroy();
  });

  it('Verda issues a bearer token for the client credentials and refuses others', async () => {
    const { verda } = services;
    const token = async (secret: string) =>
      fetch(`${verda.apiUrl}/oauth2/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          grant_type: 'client_credentials',
          client_id: verda.clientId,
          client_secret: secret,
        }),
      });
    const ok = await token(verda.clientSecret);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { token_type: string }).token_type).toBe('Bearer');
    expect((await token('wrong')).status).toBe(401);
  });
});
