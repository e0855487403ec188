// The instance API client (src/provision/verda-instances.ts) against the emulator and against
// answers the emulator does not give but the contract lists: every variant read into one shape,
// and what would be unsafe to use (an id or address that is not one) refused naming the request.
import { afterEach, describe, expect, it } from '@jest/globals';
import { memoryLogger } from '../../src/lib/logger.js';
import { createdId, VerdaInstances } from '../../src/provision/verda-instances.js';
import { VerdaClient } from '../../src/serverless/client.js';
import { startVerdaEmulator, type VerdaEmulator } from '../../src/sandbox/verda.js';

let emu: VerdaEmulator | undefined;
afterEach(async () => {
  await emu?.stop();
  emu = undefined;
});

const clientFor = (e: VerdaEmulator) =>
  new VerdaInstances(
    new VerdaClient({
      apiUrl: e.apiUrl,
      clientId: e.clientId,
      clientSecret: e.clientSecret,
      logger: memoryLogger(),
      baseDelayMs: 1,
    }),
  );

/** A client whose every GET of `path` answers `body` (status 200), the rest a 404. */
function cannedClient(answers: Record<string, unknown>): { api: VerdaInstances; asked: string[] } {
  const asked: string[] = [];
  const fetchStub = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    const key = `${init?.method ?? 'GET'} ${url.pathname.replace(/^\/v1/, '')}`;
    asked.push(key);
    if (key === 'POST /oauth2/token')
      return new Response(JSON.stringify({ access_token: 'a', expires_in: 3600 }), { status: 200 });
    if (key in answers)
      return new Response(JSON.stringify(answers[key]), {
        status: 200,
        headers: { 'Content-Type': 'application/json' },
      });
    return new Response(JSON.stringify({ code: 'not_found', message: 'no' }), { status: 404 });
  }) as typeof fetch;
  const client = new VerdaClient({
    apiUrl: 'http://verda.test/v1',
    clientId: 'id',
    clientSecret: 'secret',
    logger: memoryLogger(),
    fetch: fetchStub,
  });
  return { api: new VerdaInstances(client), asked };
}

describe('the instance API client', () => {
  it.each(['text', 'quoted', 'object'] as const)(
    'reads a create answered with the id as %s, then the instance by id',
    async (idFormat) => {
      emu = await startVerdaEmulator({
        timeScale: 0,
        instanceVariants: { idFormat, createStatus: 201 },
      });
      const api = clientFor(emu);
      const script = await api.createScript('s', 'echo hi');
      expect(emu.scripts().map((s) => s.id)).toEqual([script.id]);
      const volume = await api.createVolume({
        type: 'NVMe',
        name: 'Scratch Disk',
        size: 10,
        location_code: 'FIN-01',
      });
      expect(volume).toMatchObject({ name: 'Scratch Disk', sizeGb: 10, type: 'NVMe' });
      expect(volume.id).toBe(emu.volumes()[0]?.id);
    },
  );

  it('reads prices given as strings, and the spot price', async () => {
    emu = await startVerdaEmulator({ timeScale: 0 });
    const types = await clientFor(emu).instanceTypes();
    const h100 = types.find((t) => t.name === '1H100.80S.22V');
    expect(h100).toMatchObject({ pricePerHour: 4, spotPricePerHour: 2 });
    expect(types.find((t) => t.name === '1V100.6V')?.pricePerHour).toBe(0.14);
  });

  it('answers availability per type and location, as capacity says', async () => {
    emu = await startVerdaEmulator({ timeScale: 0 });
    const api = clientFor(emu);
    expect(await api.available('1V100.6V', 'FIN-01', false)).toBe(true);
    emu.setCapacity('1V100.6V', 'FIN-01', 0);
    expect(await api.available('1V100.6V', 'FIN-01', false)).toBe(false);
    expect(await api.available('1V100.6V', 'FIN-02', false)).toBe(true);
  });

  it('finds the SSH keys on /ssh-keys when /sshkeys is not there', async () => {
    const { api, asked } = cannedClient({ 'GET /ssh-keys': [{ id: 'k-1', name: 'ops' }] });
    expect(await api.sshKeys()).toEqual([{ id: 'k-1', name: 'ops' }]);
    expect(asked.filter((a) => a.includes('key'))).toEqual(['GET /sshkeys', 'GET /ssh-keys']);
    // Remembered: the next listing goes straight to the path that answered.
    await api.sshKeys();
    expect(asked.filter((a) => a.includes('key')).at(-1)).toBe('GET /ssh-keys');
  });

  it('reads isSpot and is_spot, an unknown status, a by-id answer as a 1-element array', async () => {
    const base = {
      id: 'i-1',
      hostname: 'h',
      instance_type: '1V100.6V',
      location: 'FIN-01',
      ip: null,
      price_per_hour: '0.14',
    };
    const { api } = cannedClient({
      'GET /instances': [
        { ...base, status: 'hibernating_soon', isSpot: true },
        { ...base, id: 'i-2', status: 'running', is_spot: false, ip: '192.0.2.7' },
      ],
      'GET /instances/i-3': [{ ...base, id: 'i-3', status: 'running', ip: '192.0.2.8' }],
    });
    const [a, b] = await api.instances();
    expect(a).toMatchObject({ status: 'hibernating_soon', isSpot: true, pricePerHour: 0.14 });
    expect(a?.ip).toBeUndefined();
    expect(b).toMatchObject({ status: 'running', isSpot: false, ip: '192.0.2.7' });
    expect((await api.instance('i-3'))?.ip).toBe('192.0.2.8');
    // Gone (404): undefined, not an error.
    expect(await api.instance('i-4')).toBeUndefined();
  });

  it('refuses an address or an id that is not one, naming the request', async () => {
    const { api } = cannedClient({
      'GET /instances': [
        {
          id: 'i-1',
          hostname: 'h',
          instance_type: '1V100.6V',
          status: 'running',
          ip: '192.0.2.7; curl evil',
        },
      ],
      'GET /volumes': [{ id: '../../etc', name: 'v', size: 1, type: 'NVMe', status: 'detached' }],
    });
    await expect(api.instances()).rejects.toThrow(
      /Verda API GET \/instances \[0\] answered something unexpected: ip: .*IPv4 address/,
    );
    await expect(api.volumes()).rejects.toThrow(
      /Verda API GET \/volumes \[0\] answered something unexpected: id: .*an id/,
    );
  });

  it('takes a shared filesystem export only when it is plainly host:/path', async () => {
    const volume = { size: 50, type: 'NVMe_Shared', status: 'detached', location: 'FIN-01' };
    const { api } = cannedClient({
      'GET /volumes': [
        {
          ...volume,
          id: 'v-1',
          name: 'a',
          mount_command: 'mount -t nfs -o nconnect=16 nfs.fin-01.datacrunch.io:/a-1 /mnt/a',
        },
        { ...volume, id: 'v-2', name: 'b', pseudo_path: '/b-2' },
        { ...volume, id: 'v-3', name: 'c', mount_command: 'mount $(curl x):/p /mnt/c' },
      ],
    });
    const [a, b, c] = await api.volumes();
    expect(a?.nfsSource).toBe('nfs.fin-01.datacrunch.io:/a-1');
    expect(b?.nfsSource).toBe('nfs.fin-01.datacrunch.io:/b-2');
    expect(c?.nfsSource).toBeUndefined();
  });

  it('createdId: plain text, quoted, an object; anything else refused', () => {
    expect(createdId('  abc-123\n', 'POST /x')).toBe('abc-123');
    expect(createdId('"abc-123"', 'POST /x')).toBe('abc-123');
    expect(createdId({ id: 'abc-123' }, 'POST /x')).toBe('abc-123');
    expect(() => createdId('', 'POST /x')).toThrow(/POST \/x answered something unexpected/);
    expect(() => createdId({ id: 'a b' }, 'POST /x')).toThrow(/an id/);
  });

  it('a delete always sends volume_ids, and a gone instance counts as deleted', async () => {
    emu = await startVerdaEmulator({ timeScale: 0 });
    const api = clientFor(emu);
    await expect(api.action('delete', 'no-such-instance', [])).resolves.toBeUndefined();
    await expect(api.action('shutdown', 'no-such-instance')).rejects.toThrow(/Invalid instance id/);
  });
});
