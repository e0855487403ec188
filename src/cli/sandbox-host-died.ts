// The sandbox's "the GPU host died": the Verda emulator's instance API boots a real fresh Debian
// 12 (systemd-nspawn) when provision-host creates an instance; restore-host rebuilds the last
// backup onto it over SSH, sync-models pulls the vault onto its models mount, verify-host checks
// it, provision-host deletes it (volumes kept). The same actions, in the same order, as
// rebuild-host.yml; the recovery time is shown per phase.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { newEd25519KeyPair, type Ed25519KeyPair } from '../lib/ssh.js';
import type { SigningKey } from '../sandbox/signing-key.js';
import type { FreshHostBooter } from '../sandbox/verda-instance-boot.js';
import {
  OHMYZSH_REPO,
  installOhMyZsh,
  rebuildConfigYaml,
  startRedisStandin,
} from '../sandbox/rebuild-standins.js';
import type { R2Emulator } from '../sandbox/r2.js';
import { startTcpRelay, type TcpRelay } from '../sandbox/tcp-relay.js';
import type { VerdaEmulator } from '../sandbox/verda.js';
import { runActionInProcess, type ActionName, type ActionResult } from './action-runner.js';

export interface HostDiedWorld {
  verda: VerdaEmulator;
  booter: FreshHostBooter;
  r2: R2Emulator;
  backupBucket: string;
  modelsBucket: string;
  /** The sandbox's backup config (the fixture host) and its keys. */
  backupConfig: string;
  backupInputs: Record<string, string>;
  identity: string;
  signing: SigningKey;
  dir: string;
  packageRoot: string;
  say: (line: string) => void;
}

export interface PhaseResult {
  title: string;
  ok: boolean;
  shown: string[];
}

/**
 * The runner's SSH key, registered with the Verda emulator as the admin would in the console, and
 * the provision-host inputs that reach it.
 */
async function registerRunner(w: HostDiedWorld): Promise<{
  runner: Ed25519KeyPair;
  verda: Record<string, string>;
}> {
  const runner = newEd25519KeyPair('sandbox-runner');
  const res = await fetch(`${w.verda.apiUrl}/sshkeys`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${await w.verda.token()}`,
      'Content-Type': 'application/json',
    },
    body: JSON.stringify({ name: 'comfyume-ops', key: runner.public }),
  });
  if (!res.ok) throw new Error(`the sandbox could not register its SSH key: ${res.status}`);
  const hostConfig = path.join(w.dir, 'host.yml');
  await writeFile(hostConfig, await readFile(path.join(w.packageRoot, 'config/host.yml'), 'utf8'));
  const verda = {
    config: hostConfig,
    'api-url': w.verda.apiUrl,
    'verda-client-id': w.verda.clientId,
    'verda-client-secret': w.verda.clientSecret,
    'poll-interval': '200ms',
  };
  return { runner, verda };
}

/** Runs the rebuild; returns a row per phase and the recovery time table's rows. */
export async function runHostDied(w: HostDiedWorld): Promise<{
  phases: PhaseResult[];
  times: [string, number][];
}> {
  const phases: PhaseResult[] = [];
  const times: [string, number][] = [];
  const { runner, verda } = await registerRunner(w);
  const r2 = {
    'r2-endpoint': w.r2.endpoint,
    'r2-access-key-id': w.r2.accessKeyId,
    'r2-secret-access-key': w.r2.secretAccessKey,
  };
  const step = async (
    title: string,
    action: ActionName,
    inputs: Record<string, string>,
    show: string[],
    recovery = true,
  ): Promise<ActionResult> => {
    w.say(`\n=== ${title} (actions/${action})`);
    const started = Date.now();
    const result = await runActionInProcess(action, inputs);
    const seconds = (Date.now() - started) / 1000;
    phases.push({
      title,
      ok: result.ok,
      shown: show
        .filter((name) => result.outputs[name] !== undefined && result.outputs[name] !== '')
        .map((name) => `${name}=${result.outputs[name]}`),
    });
    if (!result.ok) throw new PhaseFailed(title);
    if (recovery) times.push([title, seconds]);
    return result;
  };

  let redis: ReturnType<typeof startRedisStandin> | undefined;
  let r2Relay: TcpRelay | undefined;
  try {
    const created = await step(
      'The GPU host died: provision a V100 with the Model Vault and Scratch Disk',
      'provision-host',
      { command: 'create', 'ssh-private-key': runner.private, ...verda },
      ['ip', 'status', 'hourly-cost', 'bootstrap-host-key-fingerprint', 'provision-seconds'],
    );
    const fresh = w.booter.bootedHosts()[0]?.host;
    if (!fresh) throw new Error('the emulator booted no host');
    // The sandbox's last nightly backup, its host: section aimed at what the fresh host can
    // reach here (the VPS Redis stand-in on its network).
    redis = startRedisStandin(fresh);
    const config = path.join(w.dir, 'rebuild.yml');
    await writeFile(config, rebuildConfigYaml(await readFile(w.backupConfig, 'utf8'), fresh));
    await installOhMyZsh(fresh);
    const backup = await runActionInProcess(
      'backup-verda',
      { ...w.backupInputs, config },
      {
        quiet: true,
      },
    );
    if (!backup.ok) throw new PhaseFailed('the last nightly backup before the rebuild');

    const restored = await step(
      'Restore the last backup onto it over SSH (pinned to the bootstrap key)',
      'restore-host',
      {
        bucket: w.backupBucket,
        ...r2,
        'age-identity': w.identity,
        signers: w.signing.signersFile,
        host: created.outputs.ip ?? '',
        user: 'root',
        'ssh-private-key': runner.private,
        'host-key-fingerprints': created.outputs['bootstrap-host-key-fingerprint'] ?? '',
        'models-mount': `${fresh.disks.models} ext4`,
        'scratch-mount': `${fresh.disks.scratch} ext4`,
        'ohmyzsh-repo': OHMYZSH_REPO,
      },
      ['backup-id', 'changes', 'restore-seconds', 'restored-host-key-fingerprints'],
    );
    const pins = restored.outputs['restored-host-key-fingerprints'] ?? '';
    // The sandbox's vault holds three of the seed's models and has no network for the others:
    // the pull takes what the vault has, with no list of required ones.
    const manifest = path.join(w.dir, 'sandbox-models.yml');
    await writeFile(manifest, 'models: []\n');
    // The host downloads the vault from R2 itself (pull-via: host), as rebuild-host.yml does: the
    // emulator answers on the loopback, so a relay on the host's network stands for R2's
    // address, and the runner signs for that address too.
    const r2Url = new URL(w.r2.endpoint);
    r2Relay = await startTcpRelay(fresh.outerAddress, {
      host: r2Url.hostname,
      port: Number(r2Url.port),
    });
    await step(
      'Pull the model vault onto its models mount (the host fetches from R2, presigned)',
      'sync-models',
      {
        direction: 'pull',
        target: `ssh://root@${created.outputs.ip}:22/home/dev/comfy-multi/data/models`,
        'ssh-private-key': runner.private,
        'host-key-fingerprints': pins,
        bucket: w.modelsBucket,
        manifest,
        'hf-fallback': 'false',
        'pull-via': 'host',
        ...r2,
        'r2-endpoint': `http://${r2Relay.address}`,
      },
      ['downloaded', 'bytes'],
    );
    await step(
      'Verify the rebuilt host against the checklist',
      'verify-host',
      {
        host: created.outputs.ip ?? '',
        user: 'root',
        'ssh-private-key': runner.private,
        'host-key-fingerprints': pins,
        'backup-config': config,
      },
      ['passed', 'failed', 'warnings'],
    );
    await step(
      'Delete the test instance (volumes kept)',
      'provision-host',
      { command: 'delete', confirm: 'comfyume-gpu-test', ...verda },
      ['status'],
      false,
    );
  } catch (err) {
    if (!(err instanceof PhaseFailed)) throw err;
  } finally {
    redis?.kill();
    await r2Relay?.stop();
  }
  return { phases, times };
}

class PhaseFailed extends Error {}
