// The Verda emulator's instance API against verda-instances-api.md, over real HTTP: the catalogue
// and prices, availability and capacity, every documented 400 matched by status, code and message,
// the lifecycle on a frozen clock moved by hand, the volume rules of a delete, volumes, both SSH
// key paths, scripts with pagination, the boot hook, faults and the documented variants.
import { afterEach, describe, expect, it } from '@jest/globals';
import { newEd25519KeyPair } from '../../src/lib/ssh.js';
import {
  startVerdaEmulator,
  type BootRequest,
  type BootedHost,
  type VerdaEmulator,
  type VerdaEmulatorOptions,
} from '../../src/sandbox/verda.js';

let emu: VerdaEmulator;

async function start(opts: VerdaEmulatorOptions = {}): Promise<VerdaEmulator> {
  emu = await startVerdaEmulator({ timeScale: 0, ...opts });
  return emu;
}

afterEach(async () => {
  await emu?.stop();
});

interface Reply {
  status: number;
  body: unknown;
  text: string;
  headers: Headers;
}

/** One token per emulator (the clock is frozen, so it never expires). */
const tokens = new WeakMap<VerdaEmulator, Promise<string>>();

async function call(method: string, path: string, body?: unknown): Promise<Reply> {
  const token = tokens.get(emu) ?? emu.token();
  tokens.set(emu, token);
  const res = await fetch(`${emu.apiUrl}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${await token}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    /* a text body */
  }
  return { status: res.status, body: parsed, text, headers: res.headers };
}

type Json = Record<string, unknown>;
const obj = (r: Reply) => r.body as Json;
const arr = (r: Reply) => r.body as Json[];

/** Expects a documented error: status, code and a message naming the problem. */
function expectError(r: Reply, status: number, code: string, message: RegExp | string): void {
  expect({ status: r.status, code: obj(r)?.code }).toEqual({ status, code });
  expect(String(obj(r).message)).toMatch(message);
}

const publicKey = (comment = 'test') => newEd25519KeyPair(comment).public;

function order(overrides: Json = {}): Json {
  return {
    instance_type: '1V100.6V',
    image: 'ubuntu-24.04-cuda-12.8-open-docker',
    hostname: 'gpu-test-1',
    description: 'gpu-test-1',
    location_code: 'FIN-01',
    ssh_key_ids: [],
    ...overrides,
  };
}

/** POST /instances; the id comes back as plain text. */
async function create(overrides: Json = {}): Promise<string> {
  const r = await call('POST', '/instances', order(overrides));
  expect(r.status).toBe(202);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
  expect(r.text).toMatch(/^[0-9a-f-]{36}$/);
  return r.text;
}

async function instance(id: string): Promise<Json> {
  const r = await call('GET', `/instances/${id}`);
  expect(r.status).toBe(200);
  return obj(r);
}

async function act(action: string, id: string | string[], extra: Json = {}): Promise<Reply> {
  return call('PUT', '/instances', { action, id: Array.isArray(id) ? id : [id], ...extra });
}

/** Creates an instance and lets it reach `running` (default delays: 2 s + 20 s). */
async function running(overrides: Json = {}): Promise<string> {
  const id = await create(overrides);
  emu.advance(22_000);
  expect((await instance(id)).status).toBe('running');
  return id;
}

async function offline(overrides: Json = {}): Promise<string> {
  const id = await running(overrides);
  expect((await act('shutdown', id)).status).toBe(202);
  emu.advance(1_000);
  expect((await instance(id)).status).toBe('offline');
  return id;
}

async function newVolume(body: Json): Promise<string> {
  const r = await call('POST', '/volumes', body);
  expect(r.status).toBe(202);
  emu.advance(1_000);
  return r.text;
}

describe('catalogue', () => {
  it('serves instance types with per-instance prices, some as strings, and spot prices', async () => {
    await start();
    const types = arr(await call('GET', '/instance-types'));
    const v100 = types.find((t) => t.instance_type === '1V100.6V');
    const h100 = types.find((t) => t.instance_type === '1H100.80S.22V');
    expect(v100).toMatchObject({ price_per_hour: 0.14, spot_price: 0.05, currency: 'usd' });
    expect(h100).toMatchObject({ price_per_hour: '4.00', spot_price: '2.00' });
    expect(obj(await call('GET', '/instance-types/1H100.80S.22V'))).toMatchObject({
      instance_type: '1H100.80S.22V',
      price_per_hour: '4.00',
      gpu: { number_of_gpus: 1 },
    });
    const eur = arr(await call('GET', '/instance-types?currency=eur'));
    expect(eur.find((t) => t.instance_type === '1V100.6V')).toMatchObject({
      price_per_hour: 0.12,
      currency: 'eur',
    });
    expectError(await call('GET', '/instance-types/9Z999.1V'), 404, 'not_found', /9Z999.1V/);
    expectError(
      await call('GET', '/instance-types?currency=gbp'),
      400,
      'invalid_request',
      /usd or eur/,
    );
  });

  it('serves locations, images (by instance type), volume types and the balance', async () => {
    await start({ instances: { balance: 42.5 } });
    expect(arr(await call('GET', '/locations')).map((l) => l.code)).toEqual([
      'FIN-01',
      'FIN-02',
      'FIN-03',
      'ICE-01',
    ]);
    const gpuImages = arr(await call('GET', '/images?instance_type=1V100.6V'));
    expect(gpuImages.map((i) => i.image_type)).toEqual([
      'ubuntu-24.04-cuda-12.8-open-docker',
      'ubuntu-22.04-cuda-12.0-docker',
    ]);
    const cpuImages = arr(await call('GET', '/images?instance_type=CPU.4V.16G'));
    expect(cpuImages.map((i) => i.image_type)).toEqual(['ubuntu-22.04']);
    expect(arr(await call('GET', '/images'))).toHaveLength(3);
    const volumeTypes = arr(await call('GET', '/volume-types'));
    expect(volumeTypes.map((v) => v.type)).toEqual(['NVMe', 'HDD', 'NVMe_Shared']);
    expect(volumeTypes[2]).toMatchObject({
      is_shared_fs: true,
      price: { price_per_month_per_gb: 0.15, currency: 'usd' },
    });
    expect(obj(await call('GET', '/balance'))).toEqual({ amount: 42.5, currency: 'usd' });
  });
});

describe('availability and capacity', () => {
  it('reflects capacity per (type, location, spot) on both spot flags; a create without it names type and location', async () => {
    await start({
      instances: { capacity: [{ instanceType: '1H100.80S.22V', location: 'FIN-01', count: 0 }] },
    });
    const all = arr(await call('GET', '/instance-availability'));
    expect(all.map((a) => a.location_code)).toEqual(['FIN-01', 'FIN-02', 'FIN-03', 'ICE-01']);
    expect(all[0]?.availabilities).not.toContain('1H100.80S.22V');
    expect(all[1]?.availabilities).toContain('1H100.80S.22V');
    const fin01 = arr(await call('GET', '/instance-availability?location_code=FIN-01'));
    expect(fin01).toHaveLength(1);
    expect(
      (await call('GET', '/instance-availability/1H100.80S.22V?location_code=FIN-01')).body,
    ).toBe(false);
    expect(
      (await call('GET', '/instance-availability/1H100.80S.22V?location_code=FIN-02')).body,
    ).toBe(true);

    emu.setCapacity('1V100.6V', 'FIN-03', 0, true);
    const spot = '/instance-availability/1V100.6V?location_code=FIN-03';
    expect((await call('GET', `${spot}&is_spot=true`)).body).toBe(false);
    expect((await call('GET', `${spot}&isSpot=true`)).body).toBe(false);
    // Without the flag, the on-demand answer.
    expect((await call('GET', spot)).body).toBe(true);
    expectError(
      await call('GET', `${spot}&is_spot=yes`),
      400,
      'invalid_request',
      /is_spot must be true or false/,
    );
    expectError(
      await call('GET', '/instance-availability?location_code=MARS-01'),
      400,
      'invalid_request',
      /location_code "MARS-01" is not a location/,
    );

    emu.clearRequests();
    const refused = await call('POST', '/instances', order({ instance_type: '1H100.80S.22V' }));
    expectError(refused, 400, 'invalid_request', /no capacity for 1H100\.80S\.22V in FIN-01/);
    expect(emu.instances()).toHaveLength(0);
    expectError(
      await call('POST', '/instances', order({ location_code: 'FIN-03', is_spot: true })),
      400,
      'invalid_request',
      /no capacity for 1V100\.6V in FIN-03 \(spot\)/,
    );
  });

  it('a create takes one unit and a delete gives it back', async () => {
    await start();
    emu.setCapacity('1V100.6V', 'FIN-01', 1);
    const id = await create();
    const avail = '/instance-availability/1V100.6V?location_code=FIN-01';
    expect((await call('GET', avail)).body).toBe(false);
    expectError(
      await call('POST', '/instances', order({ hostname: 'gpu-2' })),
      400,
      'invalid_request',
      /no capacity/,
    );
    expect((await act('delete', id)).status).toBe(202);
    expect((await call('GET', avail)).body).toBe(true);
  });
});

describe('POST /instances validation', () => {
  const cases: [string, Json, RegExp][] = [
    ['no location_code', { location_code: undefined }, /location_code is required/],
    ['no instance_type', { instance_type: undefined }, /instance_type is required/],
    ['no image', { image: undefined }, /image is required/],
    ['no hostname', { hostname: undefined }, /hostname is required/],
    ['no description', { description: undefined }, /description is required/],
    [
      'a hostname with _',
      { hostname: 'gpu_1' },
      /hostname "gpu_1" must be letters, digits and '-'/,
    ],
    ['a leading -', { hostname: '-gpu' }, /hostname "-gpu"/],
    ['a trailing -', { hostname: 'gpu-' }, /hostname "gpu-"/],
    ['no letter', { hostname: '1234' }, /hostname "1234".*contain a letter/],
    ['61 characters', { hostname: `a${'b'.repeat(60)}` }, /at most 60 characters/],
    [
      'an unknown type',
      { instance_type: '9Z999.1V' },
      /instance_type "9Z999.1V" is not an instance type/,
    ],
    [
      'an unknown location',
      { location_code: 'NOR-01' },
      /location_code "NOR-01" is not a location/,
    ],
    ['an unknown image', { image: 'windows-11' }, /image "windows-11" is neither an image type/],
    [
      'a CPU image on a GPU type',
      { image: 'ubuntu-22.04' },
      /image "ubuntu-22.04" does not run on 1V100.6V/,
    ],
    [
      'os_volume size 0',
      { os_volume: { name: 'os', size: 0 } },
      /os_volume.size must be an integer >= 1/,
    ],
    ['os_volume without a name', { os_volume: { size: 50 } }, /os_volume.name is required/],
    [
      'a bad contract',
      { contract: 'FOREVER' },
      /contract must be one of LONG_TERM, PAY_AS_YOU_GO, SPOT/,
    ],
    [
      'a bad on_spot_discontinue',
      { os_volume: { name: 'os', size: 50, on_spot_discontinue: 'explode' } },
      /on_spot_discontinue must be one of keep_detached/,
    ],
    ['a bad pricing', { pricing: 'CHEAP' }, /pricing must be one of DYNAMIC_PRICE, FIXED_PRICE/],
    [
      '11 tags',
      { tags: Array.from({ length: 11 }, (_, i) => ({ key: `k${i}`, value: 'v' })) },
      /at most 10 tags, got 11/,
    ],
    ['an unknown SSH key', { ssh_key_ids: ['nope'] }, /ssh_key_ids: no SSH key with id nope/],
    [
      'an unknown script',
      { startup_script_id: 'nope' },
      /startup_script_id: no startup script with id nope/,
    ],
    [
      'an unknown existing volume',
      { existing_volumes: ['nope'] },
      /existing_volumes: no volume with id nope/,
    ],
  ];
  it.each(cases)('refuses %s with 400 invalid_request', async (_what, overrides, message) => {
    await start();
    const body = order(overrides);
    for (const [k, v] of Object.entries(overrides)) if (v === undefined) delete body[k];
    const r = await call('POST', '/instances', body);
    expectError(r, 400, 'invalid_request', message);
    expect(emu.instances()).toHaveLength(0);
    expect(emu.volumes()).toHaveLength(0);
  });

  it('refuses existing volumes that are attached or in another location', async () => {
    await start();
    const elsewhere = await newVolume({
      type: 'NVMe',
      name: 'x',
      size: 10,
      location_code: 'FIN-03',
    });
    expectError(
      await call('POST', '/instances', order({ existing_volumes: [elsewhere] })),
      400,
      'invalid_request',
      new RegExp(`volume ${elsewhere} is in FIN-03, the instance in FIN-01`),
    );
    const scratch = await newVolume({
      type: 'NVMe',
      name: 'scratch',
      size: 10,
      location_code: 'FIN-01',
    });
    await create({ existing_volumes: [scratch] });
    expectError(
      await call('POST', '/instances', order({ hostname: 'gpu-2', existing_volumes: [scratch] })),
      400,
      'invalid_request',
      new RegExp(`volume ${scratch} is attached to instance`),
    );
  });
});

describe('the lifecycle on the emulated clock', () => {
  it('ordered -> provisioning -> running (ip set) -> offline -> running, with the wrong-state errors', async () => {
    await start();
    const id = await create({ is_spot: false });
    let body = await instance(id);
    expect(body).toMatchObject({
      id,
      status: 'ordered',
      ip: null,
      instance_type: '1V100.6V',
      hostname: 'gpu-test-1',
      location: 'FIN-01',
      price_per_hour: 0.14,
      is_spot: false,
      contract: 'PAY_AS_YOU_GO',
      ssh_key_ids: [],
      startup_script_id: null,
      volume_ids: [],
    });
    expect(typeof body.os_volume_id).toBe('string');
    emu.advance(2_000);
    expect((await instance(id)).status).toBe('provisioning');
    expectError(
      await act('shutdown', id),
      400,
      'invalid_request',
      /is provisioning; shutdown needs it running/,
    );
    emu.advance(19_999);
    expect((await instance(id)).status).toBe('provisioning');
    emu.advance(1);
    body = await instance(id);
    expect(body.status).toBe('running');
    expect(body.ip).toMatch(/^192\.0\.2\.\d+$/);
    expectError(
      await act('start', id),
      400,
      'invalid_request',
      /is running; start needs it offline/,
    );

    const r = await act('shutdown', id);
    expect(r.status).toBe(202);
    expect(r.body).toEqual([{ action: 'shutdown', instanceId: id, status: 'success' }]);
    expect((await instance(id)).status).toBe('running');
    emu.advance(1_000);
    expect((await instance(id)).status).toBe('offline');
    expect(arr(await call('GET', '/instances?status=offline')).map((i) => i.id)).toEqual([id]);
    expect(arr(await call('GET', '/instances?status=running'))).toEqual([]);
    expectError(
      await act('shutdown', id),
      400,
      'invalid_request',
      /is offline; shutdown needs it running/,
    );
    expect((await act('start', id)).status).toBe(202);
    emu.advance(5_000);
    expect((await instance(id)).status).toBe('running');
    expect((await act('force_shutdown', id)).status).toBe(202);
    expect((await instance(id)).status).toBe('offline');
  });

  it('delete: gone from the list, discontinued by id, a second delete is forbidden_action', async () => {
    await start();
    const id = await running();
    const other = await create({ hostname: 'gpu-other' });
    expect((await act('delete', id)).status).toBe(202);
    expect(arr(await call('GET', '/instances')).map((i) => i.id)).toEqual([other]);
    expect((await instance(id)).status).toBe('discontinued');
    expectError(
      await act('delete', id),
      400,
      'forbidden_action',
      "Can't discontinue a discontinued instance",
    );
    expect(emu.instances().find((i) => i.id === id)?.listed).toBe(false);
  });

  it('PUT /instances: unknown id, unknown action, empty id; a partial failure answers 207', async () => {
    await start();
    const id = await running();
    expectError(await act('shutdown', 'no-such-id'), 400, 'invalid_request', 'Invalid instance id');
    expectError(await act('explode', id), 400, 'invalid_request', /action "explode" is not one of/);
    expectError(
      await call('PUT', '/instances', { action: 'shutdown', id: [] }),
      400,
      'invalid_request',
      /id must name at least one instance/,
    );
    expectError(
      await call('GET', '/instances/no-such-id'),
      404,
      'not_found',
      'Invalid instance id',
    );
    expectError(
      await call('GET', '/instances?status=sleeping'),
      400,
      'invalid_request',
      /status "sleeping"/,
    );
    const partial = await act('shutdown', [id, 'no-such-id']);
    expect(partial.status).toBe(207);
    expect(partial.body).toEqual([
      { action: 'shutdown', instanceId: id, status: 'success' },
      {
        action: 'shutdown',
        instanceId: 'no-such-id',
        status: 'error',
        error: 'Invalid instance id',
        statusCode: 400,
      },
    ]);
  });

  it('hibernate removes the instance and keeps its volumes; a later delete is forbidden_action', async () => {
    await start();
    const id = await running();
    const osVolume = (await instance(id)).os_volume_id as string;
    expect((await act('hibernate', id)).status).toBe(202);
    expect(arr(await call('GET', '/instances'))).toEqual([]);
    expect((await instance(id)).status).toBe('discontinued');
    expect(obj(await call('GET', `/volumes/${osVolume}`)).status).toBe('detached');
    expectError(await act('delete', id), 400, 'forbidden_action', /discontinued/);
  });

  it('boots from a detached OS volume given as the image (PY), which an attached one cannot be', async () => {
    await start();
    const first = await running();
    const osVolume = (await instance(first)).os_volume_id as string;
    await act('delete', first, { volume_ids: [] });
    const second = await create({ hostname: 'gpu-again', image: osVolume });
    expect(await instance(second)).toMatchObject({ image: osVolume, os_volume_id: osVolume });
    expectError(
      await call('POST', '/instances', order({ hostname: 'gpu-third', image: osVolume })),
      400,
      'invalid_request',
      new RegExp(`volume ${osVolume} is attached to instance ${second}`),
    );
  });

  it('prices by contract: spot instances carry the spot price (as a string for string-priced types)', async () => {
    await start();
    const id = await create({ instance_type: '1H100.80S.22V', is_spot: true, contract: 'SPOT' });
    expect(await instance(id)).toMatchObject({
      price_per_hour: '2.00',
      is_spot: true,
      contract: 'SPOT',
    });
  });
});

describe('volume rules of a delete (§4)', () => {
  async function withVolumes() {
    const data = await newVolume({
      type: 'NVMe',
      name: 'scratch',
      size: 10,
      location_code: 'FIN-01',
    });
    const id = await running({
      hostname: `gpu-${data.slice(0, 6).replace(/^\d/, 'a')}`,
      existing_volumes: [data],
    });
    const osVolume = (await instance(id)).os_volume_id as string;
    expect((await instance(id)).volume_ids).toEqual([data]);
    return { id, data, osVolume };
  }
  const statusOf = (vid: string) => emu.volumes().find((v) => v.id === vid)?.status;

  it('volume_ids omitted: the OS volume is deleted, the others detached', async () => {
    await start();
    const { id, data, osVolume } = await withVolumes();
    await act('delete', id);
    expect(statusOf(osVolume)).toBe('deleted');
    expect(statusOf(data)).toBe('detached');
    expect(arr(await call('GET', '/volumes/trash')).map((v) => v.id)).toEqual([osVolume]);
  });

  it('volume_ids []: nothing is deleted, everything detached', async () => {
    await start();
    const { id, data, osVolume } = await withVolumes();
    await act('delete', id, { volume_ids: [] });
    expect([statusOf(osVolume), statusOf(data)]).toEqual(['detached', 'detached']);
  });

  it('volume_ids [ids]: those are deleted (permanently if asked), the rest detached', async () => {
    await start();
    const { id, data, osVolume } = await withVolumes();
    expectError(
      await act('delete', id, { volume_ids: ['other'] }),
      400,
      'invalid_request',
      /volume other is not attached to instance/,
    );
    await act('delete', id, { volume_ids: [data], delete_permanently: true });
    expect([statusOf(osVolume), statusOf(data)]).toEqual(['detached', 'deleted']);
    expect(obj(await call('GET', `/volumes/${data}`))).toMatchObject({
      status: 'deleted',
      is_permanently_deleted: true,
    });
    expect(arr(await call('GET', '/volumes/trash'))).toEqual([]);
  });
});

describe('volumes', () => {
  it('POST answers the id as text; ordered, then detached; attach only while the instance is offline', async () => {
    await start();
    const r = await call('POST', '/volumes', {
      type: 'NVMe_Shared',
      name: 'Model Vault',
      size: 50,
      location_code: 'FIN-01',
    });
    expect(r.status).toBe(202);
    const vault = r.text;
    expect(obj(await call('GET', `/volumes/${vault}`)).status).toBe('ordered');
    expectError(
      await call('PUT', '/volumes', { id: vault, action: 'rename', name: 'x' }),
      400,
      'invalid_request',
      /still being created/,
    );
    emu.advance(1_000);
    const body = obj(await call('GET', `/volumes/${vault}`));
    expect(body).toMatchObject({
      status: 'detached',
      type: 'NVMe_Shared',
      size: 50,
      location: 'FIN-01',
      instance_id: null,
      is_os_volume: false,
      monthly_price: 7.5,
      base_hourly_cost: 0.0103,
    });
    expect(String(body.mount_command)).toMatch(
      /^mount -t nfs -o nconnect=16 nfs\.fin-01\.datacrunch\.io:\//,
    );

    const a = await running({ hostname: 'gpu-a' });
    expectError(
      await call('PUT', '/volumes', { id: vault, action: 'attach', instance_id: a }),
      400,
      'invalid_request',
      /is running; attach needs it offline/,
    );
    await act('shutdown', a);
    emu.advance(1_000);
    expect(
      (await call('PUT', '/volumes', { id: [vault], action: 'attach', instance_id: a })).status,
    ).toBe(202);
    const b = await offline({ hostname: 'gpu-b' });
    // A shared filesystem attaches to several instances.
    expect(
      (await call('PUT', '/volumes', { id: vault, action: 'attach', instance_id: b })).status,
    ).toBe(202);
    expect(obj(await call('GET', `/volumes/${vault}`))).toMatchObject({ status: 'attached' });
    expect(emu.volumes().find((v) => v.id === vault)?.instanceIds).toEqual([a, b]);
    expect((await instance(a)).volume_ids).toEqual([vault]);

    const scratch = await newVolume({
      type: 'NVMe',
      name: 'Scratch Disk',
      size: 10,
      location_code: 'FIN-01',
    });
    await call('PUT', '/volumes', { id: scratch, action: 'attach', instance_id: a });
    expectError(
      await call('PUT', '/volumes', { id: scratch, action: 'attach', instance_id: b }),
      400,
      'invalid_request',
      new RegExp(`volume ${scratch} is attached to instance ${a}`),
    );
    const ice = await newVolume({ type: 'HDD', name: 'cold', size: 10, location_code: 'ICE-01' });
    expectError(
      await call('PUT', '/volumes', { id: ice, action: 'attach', instance_id: a }),
      400,
      'invalid_request',
      /is in FIN-01, the volume in ICE-01/,
    );
    // Detach and delete of attached volumes need the instance offline too.
    await act('start', a);
    emu.advance(5_000);
    expectError(
      await call('PUT', '/volumes', { id: scratch, action: 'detach' }),
      400,
      'invalid_request',
      /which is running; detach needs it offline/,
    );
    expectError(
      await call('DELETE', `/volumes/${scratch}`),
      400,
      'invalid_request',
      /delete needs it offline/,
    );
  });

  it('resize grows only; rename; delete by body or ?force=true; unknown action and statuses', async () => {
    await start();
    const v = await newVolume({ type: 'NVMe', name: 'scratch', size: 10, location_code: 'FIN-01' });
    expectError(
      await call('PUT', '/volumes', { id: v, action: 'resize', size: 10 }),
      400,
      'invalid_request',
      /larger than the current 10 GB \(grow only\)/,
    );
    expect((await call('PUT', '/volumes', { id: v, action: 'resize', size: 20 })).status).toBe(202);
    await call('PUT', '/volumes', { id: v, action: 'rename', name: 'bigger' });
    expect(obj(await call('GET', `/volumes/${v}`))).toMatchObject({ size: 20, name: 'bigger' });
    expectError(
      await call('PUT', '/volumes', { id: v, action: 'clone' }),
      400,
      'invalid_request',
      /clone is not emulated/,
    );
    expectError(
      await call('GET', '/volumes?status=melted'),
      400,
      'invalid_request',
      /status "melted"/,
    );
    expect(arr(await call('GET', '/volumes?status=detached')).map((x) => x.id)).toEqual([v]);

    expect((await call('DELETE', `/volumes/${v}`, { is_permanent: false })).status).toBe(202);
    expect(arr(await call('GET', '/volumes/trash')).map((x) => x.id)).toEqual([v]);
    expect(arr(await call('GET', '/volumes'))).toEqual([]);
    const w = await newVolume({ type: 'NVMe', name: 'w', size: 10, location_code: 'FIN-01' });
    expect((await call('DELETE', `/volumes/${w}?force=true`)).status).toBe(202);
    expect(obj(await call('GET', `/volumes/${w}`))).toMatchObject({
      status: 'deleted',
      is_permanently_deleted: true,
    });
    expectError(await call('DELETE', `/volumes/${w}`), 400, 'invalid_request', /no volume with id/);
  });

  it('POST /volumes: location_code, type, name and size are required', async () => {
    await start();
    const base = { type: 'NVMe', name: 'v', size: 10, location_code: 'FIN-01' };
    const cases: [Json, RegExp][] = [
      [{ location_code: undefined }, /location_code is required/],
      [{ type: 'Floppy' }, /type "Floppy" is not a volume type/],
      [{ name: '' }, /name is required/],
      [{ size: 0 }, /size must be an integer >= 1/],
    ];
    for (const [overrides, message] of cases) {
      const body: Json = { ...base, ...overrides };
      for (const [k, val] of Object.entries(overrides)) if (val === undefined) delete body[k];
      expectError(await call('POST', '/volumes', body), 400, 'invalid_request', message);
    }
    expect(emu.volumes()).toEqual([]);
  });
});

describe('SSH keys and startup scripts', () => {
  it('keys on /sshkeys and /ssh-keys alike: create answers the id as text, by-id GETs a 1-element array', async () => {
    await start();
    const key = publicKey('ops@runner');
    const r = await call('POST', '/sshkeys', { name: 'ops', key });
    expect(r.status).toBe(202);
    const id = r.text;
    const viaDash = await call('GET', `/ssh-keys/${id}`);
    expect(viaDash.body).toEqual([
      expect.objectContaining({
        id,
        name: 'ops',
        key,
        fingerprint: expect.stringMatching(/^SHA256:/),
      }),
    ]);
    expect((await call('GET', `/sshkeys/${id}`)).body).toEqual(viaDash.body);
    // Duplicate names are allowed.
    const second = (await call('POST', '/ssh-keys', { name: 'ops', key: publicKey() })).text;
    expect(arr(await call('GET', '/sshkeys')).map((k) => k.id)).toEqual([id, second]);
    expect(emu.sshKeys()).toHaveLength(2);
    expectError(
      await call('POST', '/sshkeys', { key }),
      400,
      'invalid_request',
      /name is required/,
    );
    expectError(
      await call('POST', '/sshkeys', { name: 'x' }),
      400,
      'invalid_request',
      /key is required/,
    );
    expectError(
      await call('POST', '/sshkeys', { name: 'x', key: 'not a key' }),
      400,
      'invalid_request',
      /key must be an OpenSSH public key/,
    );
    expectError(
      await call('POST', '/sshkeys', { name: 'x', key: `${key}\n${publicKey()}` }),
      400,
      'invalid_request',
      /key must be an OpenSSH public key/,
    );
    expect((await call('DELETE', `/ssh-keys/${id}`)).status).toBe(200);
    expectError(await call('GET', `/sshkeys/${id}`), 404, 'not_found', /no SSH key/);
    expect((await call('DELETE', '/sshkeys', { keys: [second] })).status).toBe(200);
    expect(emu.sshKeys()).toEqual([]);
  });

  it('scripts: id as text, by-id array, pagination headers, the per-user limit', async () => {
    await start({ instances: { maxScripts: 3 } });
    const ids: string[] = [];
    for (const n of [1, 2, 3]) {
      const r = await call('POST', '/scripts', { name: `s${n}`, script: `#!/bin/sh\necho ${n}\n` });
      expect(r.status).toBe(202);
      ids.push(r.text);
    }
    expectError(
      await call('POST', '/scripts', { name: 's4', script: 'true' }),
      400,
      'invalid_request',
      /Script limit exceeded/,
    );
    expectError(
      await call('POST', '/scripts', { name: 's4' }),
      400,
      'invalid_request',
      /script is required/,
    );
    expect((await call('GET', `/scripts/${ids[1]}`)).body).toEqual([
      expect.objectContaining({ id: ids[1], name: 's2', script: '#!/bin/sh\necho 2\n' }),
    ]);
    const page = await call('GET', '/scripts?page=2&pageSize=2');
    expect(arr(page).map((s) => s.id)).toEqual([ids[2]]);
    expect([
      page.headers.get('x-page'),
      page.headers.get('x-page-size'),
      page.headers.get('x-total-count'),
    ]).toEqual(['2', '2', '3']);
    expectError(
      await call('GET', '/scripts?pageSize=101'),
      400,
      'invalid_request',
      /pageSize must be an integer from 1 to 100/,
    );
    expect((await call('DELETE', `/scripts/${ids[0]}`)).status).toBe(200);
    expect((await call('DELETE', '/scripts', { scripts: [ids[1]] })).status).toBe(200);
    expect(emu.scripts().map((s) => s.id)).toEqual([ids[2]]);
  });
});

interface Deferred {
  req: BootRequest;
  resolve: (host: BootedHost) => void;
  reject: (err: Error) => void;
}

describe('the boot hook', () => {
  function hook() {
    const calls: Deferred[] = [];
    const stopped: string[] = [];
    const bootHost = (req: BootRequest) =>
      new Promise<BootedHost>((resolve, reject) => calls.push({ req, resolve, reject }));
    const host = (ip: string): BootedHost => ({
      ip,
      port: 22,
      stop: () => {
        stopped.push(ip);
        return Promise.resolve();
      },
    });
    return { calls, stopped, bootHost, host };
  }
  const settle = () => new Promise((r) => setTimeout(r, 0));

  it('boots when provisioning starts, with the keys and the script; running only once both the delay passed and the boot resolved', async () => {
    const h = hook();
    await start({ instances: { bootHost: h.bootHost } });
    const key = publicKey('ops');
    const keyId = (await call('POST', '/sshkeys', { name: 'ops', key })).text;
    const scriptId = (await call('POST', '/scripts', { name: 'boot', script: 'echo hi\n' })).text;
    const id = await create({ ssh_key_ids: [keyId], startup_script_id: scriptId });
    await instance(id);
    expect(h.calls).toHaveLength(0);
    emu.advance(2_000);
    expect((await instance(id)).status).toBe('provisioning');
    expect(h.calls.map((c) => c.req)).toEqual([
      {
        id,
        hostname: 'gpu-test-1',
        instanceType: '1V100.6V',
        location: 'FIN-01',
        authorizedKeys: [key],
        startupScript: 'echo hi\n',
      },
    ]);
    emu.advance(20_000);
    expect(await instance(id)).toMatchObject({ status: 'provisioning', ip: null });
    h.calls[0]?.resolve(h.host('10.222.9.2'));
    await settle();
    expect(await instance(id)).toMatchObject({ status: 'running', ip: '10.222.9.2' });
    expect(h.calls).toHaveLength(1);
    await act('delete', id);
    expect(h.stopped).toEqual(['10.222.9.2']);
  });

  it('a boot that fails makes the instance `error`; stop() stops every booted host, also one that finishes booting late', async () => {
    const h = hook();
    await start({ instances: { bootHost: h.bootHost } });
    const bad = await create({ hostname: 'gpu-bad' });
    const good = await create({ hostname: 'gpu-good' });
    const late = await create({ hostname: 'gpu-late' });
    emu.advance(22_000);
    await instance(bad);
    expect(h.calls).toHaveLength(3);
    h.calls[0]?.reject(new Error('nspawn failed'));
    h.calls[1]?.resolve(h.host('10.0.0.2'));
    await settle();
    expect((await instance(bad)).status).toBe('error');
    expect((await instance(good)).status).toBe('running');
    expect((await instance(late)).status).toBe('provisioning');
    const stopping = emu.stop();
    h.calls[2]?.resolve(h.host('10.0.0.3'));
    await stopping;
    expect(h.stopped.sort()).toEqual(['10.0.0.2', '10.0.0.3']);
  });
});

describe('faults and variants', () => {
  it('429 with Retry-After and 5xx on the new paths; a create answered 504 still took effect; reset', async () => {
    await start();
    emu.addFault({
      kind: 'http',
      method: 'GET',
      path: '/instances',
      status: 429,
      retryAfterSeconds: 7,
    });
    const limited = await call('GET', '/instances');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('7');
    emu.addFault({ kind: 'http', method: 'GET', path: /^\/instance-types/, status: 503 });
    expectError(await call('GET', '/instance-types'), 503, 'service_unavailable', /injected/);
    emu.addFault({ kind: 'http-after-handling', method: 'POST', path: '/instances', status: 504 });
    const lost = await call('POST', '/instances', order());
    expect(lost.status).toBe(504);
    expect(emu.instances()).toHaveLength(1);
    const listed = arr(await call('GET', '/instances'));
    expect(listed.map((i) => i.hostname)).toEqual(['gpu-test-1']);
    emu.addFault({ kind: 'reset', method: 'POST', path: '/volumes' });
    await expect(
      call('POST', '/volumes', { type: 'NVMe', name: 'v', size: 10, location_code: 'FIN-01' }),
    ).rejects.toThrow();
    expect(emu.volumes().filter((v) => !v.isOsVolume)).toEqual([]);
    expect(emu.writes().map((w) => `${w.method} ${w.path} ${w.status}`)).toEqual([
      'POST /instances 504',
      'POST /volumes 0',
    ]);
  });

  it('create variants: 201 with a quoted id, or an {id} object', async () => {
    await start({ instanceVariants: { createStatus: 201, idFormat: 'quoted' } });
    const r = await call('POST', '/instances', order());
    expect(r.status).toBe(201);
    expect(r.text).toMatch(/^"[0-9a-f-]{36}"$/);
    await emu.stop();
    await start({ instanceVariants: { idFormat: 'object' } });
    const o = await call('POST', '/scripts', { name: 's', script: 'true' });
    expect(o.status).toBe(202);
    expect(obj(o)).toEqual({ id: emu.scripts()[0]?.id });
  });

  it('the serverless API is still there beside it, behind the same auth', async () => {
    await start();
    expect((await call('GET', '/container-types')).status).toBe(200);
    const res = await fetch(`${emu.apiUrl}/instances`);
    expect(res.status).toBe(401);
  });
});
