// provision-host through its committed bundle (as the runner runs it) against the Verda emulator's
// instance API. The emulator's clock is frozen and ticks 1 s per request, so the child process
// sees deterministic emulated time (ordered 2 s, provisioning 20 s). The boot hook here records
// what the instance was booted with (its keys and startup script) and gives it a documentation
// address; tests/integration/rebuild-host.test.ts boots real hosts.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fingerprintSha256, newEd25519KeyPair } from '../../src/lib/ssh.js';
import {
  startVerdaEmulator,
  type BootRequest,
  type VerdaEmulator,
  type VerdaEmulatorOptions,
} from '../../src/sandbox/verda.js';
import { repoRoot, runAction, type ActionRun } from '../helpers/run-action.js';

jest.setTimeout(90_000);

const HOSTNAME = 'comfyume-gpu-test';
let tmp: string;
let configFile: string;
let clientKey: { private: string; public: string };

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'provision-host-'));
  configFile = path.join(tmp, 'host.yml');
  await writeFile(configFile, await readFile(path.join(repoRoot, 'config/host.yml'), 'utf8'));
  clientKey = newEd25519KeyPair('runner');
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface World {
  emu: VerdaEmulator;
  boots: BootRequest[];
}

async function world(opts: VerdaEmulatorOptions = {}): Promise<World> {
  const boots: BootRequest[] = [];
  const emu = await startVerdaEmulator({
    timeScale: 0,
    tickPerRequestMs: 1_000,
    ...opts,
    instances: {
      bootHost: async (req) => {
        boots.push(req);
        return { ip: `192.0.2.${10 + boots.length}`, stop: async () => undefined };
      },
      ...opts.instances,
    },
  });
  // The account's SSH key, as the admin registered it in the console.
  const res = await fetch(`${emu.apiUrl}/sshkeys`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${await emu.token()}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'comfyume-ops', key: clientKey.public }),
  });
  expect(res.ok).toBe(true);
  emu.clearRequests();
  return { emu, boots };
}

function provision(
  emu: VerdaEmulator,
  inputs: Record<string, string | number | boolean | undefined>,
  extraSecrets: string[] = [],
): Promise<ActionRun> {
  return runAction('provision-host', {
    inputs: {
      config: configFile,
      'api-url': emu.apiUrl,
      'verda-client-id': emu.clientId,
      'verda-client-secret': emu.clientSecret,
      'poll-interval': '20ms',
      'wait-timeout': '60s',
      ...inputs,
    },
    secrets: [emu.clientSecret, emu.clientId, ...extraSecrets],
  });
}

const writes = (emu: VerdaEmulator) => emu.writes().map((w) => `${w.method} ${w.path} ${w.status}`);
const failure = (run: ActionRun) => run.errors.join('\n');
/** The catalogue's rule for a volume's hourly price (verda-instances-api.md §6). */
const volumeHourly = (perGbMonth: number, gb: number) =>
  Math.ceil(((perGbMonth * gb) / 730) * 10_000) / 10_000;
/** V100 $0.14/h, OS volume 100 GB NVMe ($0.20/GB/month), vault 50 GB NVMe_Shared ($0.15), scratch 10 GB NVMe. */
const V100_TOTAL = 0.14 + volumeHourly(0.2, 100) + volumeHourly(0.15, 50) + volumeHourly(0.2, 10);

describe('the GPU host from nothing to deleted', () => {
  let w: World;
  beforeAll(async () => {
    w = await world();
  });
  afterAll(async () => {
    await w.emu.stop();
  });

  it('plan shows the hourly cost of instance and volumes and writes nothing', async () => {
    const run = await provision(w.emu, { command: 'plan' });
    expect(failure(run)).toBe('');
    expect(run.code).toBe(0);
    expect(writes(w.emu)).toEqual([]);
    expect(Number(run.outputs['hourly-cost'])).toBeCloseTo(V100_TOTAL, 4);
    expect(run.outputs.status).toBe('absent');
    expect(run.summary).toContain('1V100.6V');
    expect(run.summary).toContain('create volume "Model Vault" (NVMe_Shared, 50 GB) in FIN-01');
    expect(run.summary).toContain('create volume "Scratch Disk" (NVMe, 10 GB) in FIN-01');
    expect(run.summary).toMatch(/\*\*\$0\.18\/h\*\*/);
  });

  it('create makes both volumes and the instance with them attached, and waits until it runs', async () => {
    const run = await provision(w.emu, { command: 'create' });
    expect(failure(run)).toBe('');
    expect(run.outputs.status).toBe('running');
    expect(run.outputs.ip).toBe('192.0.2.11');
    expect(run.outputs['models-mount']).toMatch(
      /^nfs\.fin-01\.datacrunch\.io:\/model-vault-[0-9a-f]{8} nfs nconnect=16$/,
    );
    expect(run.outputs.changed).toBe('true');
    expect(Number(run.outputs['provision-seconds'])).toBeGreaterThan(0);
    const [instance, ...others] = w.emu.instances().filter((i) => i.listed);
    expect(others).toEqual([]);
    const volumes = w.emu.volumes().filter((v) => v.status !== 'deleted');
    const byName = (name: string) => volumes.find((v) => v.name === name);
    expect(byName('Model Vault')).toMatchObject({ type: 'NVMe_Shared', size: 50 });
    expect(byName('Scratch Disk')).toMatchObject({ type: 'NVMe', size: 10 });
    expect(instance?.volumeIds.sort()).toEqual(
      [byName('Model Vault')?.id, byName('Scratch Disk')?.id].sort(),
    );
    expect(instance?.osVolumeId).toBeTruthy();
    // The ssh key by name, and the bootstrap host key in the startup script; the script is gone.
    expect(w.boots).toHaveLength(1);
    const boot = w.boots[0];
    expect(boot?.authorizedKeys).toEqual([clientKey.public]);
    const pub = /BOOTSTRAP_PUBLIC='(ssh-ed25519 \S+)/.exec(boot?.startupScript ?? '')?.[1] ?? '';
    const fingerprint = fingerprintSha256(Buffer.from(pub.split(' ')[1] ?? '', 'base64'));
    expect(run.outputs['bootstrap-host-key-fingerprint']).toBe(fingerprint);
    expect(w.emu.scripts()).toEqual([]);
    // The bootstrap private key never shows: not in the log, the summary or an output.
    const privateKey = /BOOTSTRAP_PRIVATE=\$'([^']+)'/.exec(boot?.startupScript ?? '')?.[1] ?? '';
    const keyLines = privateKey
      .split('\\x0a')
      .filter((l) => l.length > 20 && !l.startsWith('-----'));
    expect(keyLines.length).toBeGreaterThan(2);
    // What the runner shows: its add-mask commands are consumed, never printed.
    const shown = run.stdout
      .split('\n')
      .filter((l) => !l.startsWith('::add-mask::'))
      .join('\n');
    const everything = `${shown}${run.stderr}${run.summary}${JSON.stringify(run.outputs)}`;
    for (const line of keyLines) expect(everything).not.toContain(line);
    expect(writes(w.emu)).toEqual([
      'POST /volumes 202',
      'POST /volumes 202',
      expect.stringMatching(/^POST \/scripts 20[12]$/),
      'POST /instances 202',
      expect.stringMatching(/^DELETE \/scripts\/\S+ 20\d$/),
    ]);
  });

  it('create again changes nothing', async () => {
    w.emu.clearRequests();
    const run = await provision(w.emu, { command: 'create' });
    expect(failure(run)).toBe('');
    expect(run.outputs.changed).toBe('false');
    expect(run.outputs.status).toBe('running');
    expect(writes(w.emu)).toEqual([]);
    expect(w.emu.instances().filter((i) => i.listed)).toHaveLength(1);
  });

  it('status tells the cost so far on the API clock', async () => {
    w.emu.advance(2 * 3_600_000);
    const run = await provision(w.emu, { command: 'status' });
    expect(failure(run)).toBe('');
    expect(run.outputs.status).toBe('running');
    // Two hours and the seconds the requests ticked, at the instance and volume prices.
    expect(Number(run.outputs['cost-so-far'])).toBeGreaterThan(2 * V100_TOTAL - 0.01);
    expect(Number(run.outputs['cost-so-far'])).toBeLessThan(2.1 * V100_TOTAL);
    expect(run.summary).toContain('cost so far');
  });

  it('stop shuts it down and says it is still billed; start runs it again', async () => {
    const stop = await provision(w.emu, { command: 'stop' });
    expect(failure(stop)).toBe('');
    expect(stop.outputs.status).toBe('offline');
    expect(stop.warnings.join('\n')).toMatch(/still billed/);
    const start = await provision(w.emu, { command: 'start' });
    expect(failure(start)).toBe('');
    expect(start.outputs.status).toBe('running');
  });

  it('delete needs the hostname, and keeps the volumes', async () => {
    w.emu.clearRequests();
    const wrong = await provision(w.emu, { command: 'delete', confirm: 'comfyume' });
    expect(wrong.code).not.toBe(0);
    expect(failure(wrong)).toContain(
      'delete needs confirm set to the hostname "comfyume-gpu-test", not "comfyume"',
    );
    expect(writes(w.emu)).toEqual([]);

    const osVolume = w.emu.instances().find((i) => i.listed)?.osVolumeId;
    const run = await provision(w.emu, { command: 'delete', confirm: HOSTNAME });
    expect(failure(run)).toBe('');
    expect(run.outputs.status).toBe('deleted');
    expect(w.emu.instances().filter((i) => i.listed)).toEqual([]);
    const volumes = w.emu.volumes();
    expect(volumes.find((v) => v.id === osVolume)?.status).toBe('deleted');
    for (const name of ['Model Vault', 'Scratch Disk'])
      expect(volumes.find((v) => v.name === name)).toMatchObject({
        status: 'detached',
        instanceIds: [],
      });
    expect(run.summary).toContain('Kept (detached, still billed): "Model Vault", "Scratch Disk"');
  });

  it('create after the delete reuses both volumes', async () => {
    w.emu.clearRequests();
    const run = await provision(w.emu, { command: 'create' });
    expect(failure(run)).toBe('');
    expect(writes(w.emu).filter((x) => x.startsWith('POST /volumes'))).toEqual([]);
    expect(run.summary).toContain('created: none');
  });
});

describe('faults and refusals', () => {
  it('a create that timed out but took effect makes one instance, not two', async () => {
    const w = await world();
    try {
      w.emu.addFault({
        kind: 'http-after-handling',
        method: 'POST',
        path: '/instances',
        status: 504,
      });
      const run = await provision(w.emu, { command: 'create' });
      expect(failure(run)).toBe('');
      expect(run.outputs.status).toBe('running');
      expect(w.emu.instances()).toHaveLength(1);
      expect(writes(w.emu).filter((x) => x.startsWith('POST /instances'))).toEqual([
        'POST /instances 504',
      ]);
      expect(run.stdout).toContain('was created despite the error; not creating it again');
    } finally {
      await w.emu.stop();
    }
  });

  it('retries 429 and 503 answers, honouring Retry-After', async () => {
    const w = await world();
    try {
      w.emu.addFault({
        kind: 'http',
        method: 'GET',
        path: '/instance-types',
        status: 429,
        retryAfterSeconds: 1,
      });
      w.emu.addFault({ kind: 'http', method: 'POST', path: '/volumes', status: 503 });
      const run = await provision(w.emu, { command: 'create' });
      expect(failure(run)).toBe('');
      expect(w.emu.volumes().filter((v) => !v.isOsVolume)).toHaveLength(2);
      const types = w.emu.requests().filter((r) => r.path === '/instance-types');
      expect(types.map((r) => r.status)).toEqual([429, 200]);
    } finally {
      await w.emu.stop();
    }
  });

  it("a preset never takes another preset's instance for its own, even by the same hostname", async () => {
    const w = await world();
    const shared = path.join(tmp, 'shared-hostname.yml');
    await writeFile(
      shared,
      (await readFile(configFile, 'utf8')).replace(
        'max-hourly-cost: 6.00',
        'max-hourly-cost: 6.00\n    hostname: comfyume-gpu-test',
      ),
    );
    try {
      expect(failure(await provision(w.emu, { command: 'create' }))).toBe('');
      w.emu.clearRequests();
      const expected =
        "instance comfyume-gpu-test in FIN-01 is a 1V100.6V, not preset h100's 1H100.80S.22V";
      for (const command of ['create', 'stop', 'status'])
        expect(
          failure(await provision(w.emu, { command, preset: 'h100', config: shared })),
        ).toContain(expected);
      const del = await provision(w.emu, {
        command: 'delete',
        preset: 'h100',
        config: shared,
        confirm: 'comfyume-gpu-test',
      });
      expect(failure(del)).toContain(expected);
      expect(writes(w.emu)).toEqual([]);
      expect(w.emu.instances().filter((i) => i.listed)).toHaveLength(1);
    } finally {
      await w.emu.stop();
    }
  });

  it('no capacity: a clear error naming the type and the location, nothing written', async () => {
    const w = await world();
    try {
      w.emu.setCapacity('1V100.6V', 'FIN-01', 0);
      const run = await provision(w.emu, { command: 'create' });
      expect(run.code).not.toBe(0);
      expect(failure(run)).toContain(
        'no capacity: Verda has no 1V100.6V instance available in FIN-01 now',
      );
      expect(writes(w.emu)).toEqual([]);
      const plan = await provision(w.emu, { command: 'plan' });
      expect(plan.summary).toContain('No capacity now');
    } finally {
      await w.emu.stop();
    }
  });

  it('over the cost cap: refused before any write, with the plan in the summary', async () => {
    const w = await world();
    const capped = path.join(tmp, 'capped.yml');
    await writeFile(
      capped,
      (await readFile(configFile, 'utf8')).replace(
        'max-hourly-cost: 1.00',
        'max-hourly-cost: 0.15',
      ),
    );
    try {
      const run = await provision(w.emu, { command: 'create', config: capped });
      expect(run.code).not.toBe(0);
      expect(failure(run)).toContain(
        "Refusing: 1V100.6V with its volumes costs $0.18/h, above preset v100-test's max-hourly-cost $0.15/h",
      );
      expect(writes(w.emu)).toEqual([]);
      const plan = await provision(w.emu, { command: 'plan', config: capped });
      expect(plan.code).not.toBe(0);
      expect(plan.summary).toContain('**Refused:**');
    } finally {
      await w.emu.stop();
    }
  });

  it('bad input and config are named before any request', async () => {
    const w = await world();
    try {
      const preset = await provision(w.emu, { command: 'plan', preset: 'a100' });
      expect(failure(preset)).toContain(
        `Input 'preset' is invalid: got "a100"; expected one of v100-test, h100`,
      );
      const bad = path.join(tmp, 'bad.yml');
      await writeFile(
        bad,
        (await readFile(configFile, 'utf8')).replace('hostname: comfyume-gpu', 'hostname: -gpu'),
      );
      const config = await provision(w.emu, { command: 'plan', config: bad });
      expect(failure(config)).toContain('hostname');
      expect(w.emu.requests()).toEqual([]);
    } finally {
      await w.emu.stop();
    }
  });

  it('an unknown SSH key name lists the keys the account has', async () => {
    const w = await world();
    const other = path.join(tmp, 'other-key.yml');
    await writeFile(
      other,
      (await readFile(configFile, 'utf8')).replace('ssh-key: comfyume-ops', 'ssh-key: laptop'),
    );
    try {
      const run = await provision(w.emu, { command: 'plan', config: other });
      expect(failure(run)).toContain(
        'ssh-key "laptop" is not an SSH key of the Verda account; it has "comfyume-ops"',
      );
    } finally {
      await w.emu.stop();
    }
  });
});

describe('the safety net', () => {
  it('reap deletes a test instance past its max-running-hours, keeps its volumes and the H100', async () => {
    const w = await world();
    try {
      const test = await provision(w.emu, { command: 'create' });
      expect(failure(test)).toBe('');
      const h100 = path.join(tmp, 'h100.yml');
      await writeFile(
        h100,
        (await readFile(configFile, 'utf8')).replace(
          'max-hourly-cost: 6.00',
          'max-hourly-cost: 6.00\n    hostname: comfyume-h100',
        ),
      );
      const big = await provision(w.emu, { command: 'create', preset: 'h100', config: h100 });
      // The H100 cannot take the block scratch volume the V100 holds.
      expect(failure(big)).toContain(
        'volume "Scratch Disk" is attached to comfyume-gpu-test (running)',
      );

      const early = await provision(w.emu, { command: 'reap' });
      expect(failure(early)).toBe('');
      expect(early.outputs.reaped).toBe('');

      w.emu.advance(5 * 3_600_000);
      const dry = await provision(w.emu, { command: 'reap', 'dry-run': true });
      expect(dry.outputs.reaped).toBe(HOSTNAME);
      expect(w.emu.instances().filter((i) => i.listed)).toHaveLength(1);

      const run = await provision(w.emu, { command: 'reap' });
      expect(failure(run)).toBe('');
      expect(run.outputs.reaped).toBe(HOSTNAME);
      expect(w.emu.instances().filter((i) => i.listed)).toEqual([]);
      expect(w.emu.volumes().filter((v) => !v.isOsVolume && v.status !== 'deleted')).toHaveLength(
        2,
      );
    } finally {
      await w.emu.stop();
    }
  });
});
