import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../../lib/errors.js';
import { hostTarget, loadHostConfig } from '../../provision/host-config.js';
import { HostCostLimitError, planHost } from '../../provision/plan.js';
import {
  createHost,
  deleteHost,
  hostStatus,
  reapTestHosts,
  startHost,
  stopHost,
  type ProvisionDeps,
} from '../../provision/provision.js';
import {
  createTable,
  planTable,
  reapTable,
  statusTable,
  stoppedBillingNote,
} from '../../provision/report.js';
import { VerdaInstances } from '../../provision/verda-instances.js';
import {
  maskSecret,
  maskSecretInputs,
  runAction,
  setOutputs,
  writeSummary,
  type ActionPort,
} from '../shared/port.js';
import { verdaClient } from '../shared/verda-inputs.js';
import { parseProvisionInputs, SECRET_INPUTS } from './inputs.js';

const seconds = (ms: number | undefined) => (ms === undefined ? '' : (ms / 1000).toFixed(1));

export async function run(port: ActionPort): Promise<void> {
  await runAction(port, async () => {
    maskSecretInputs(port, SECRET_INPUTS);
    const inputs = parseProvisionInputs(port.input);
    const workspace = process.env.GITHUB_WORKSPACE ?? process.cwd();
    const configFile = path.resolve(workspace, inputs.config);
    const config = await loadHostConfig(configFile);
    const target = hostTarget(config, inputs.preset);
    const extraScript =
      config['startup-script'] === undefined
        ? undefined
        : await readFile(path.resolve(workspace, config['startup-script']), 'utf8').catch(() => {
            throw new ConfigError(configFile, [
              `startup-script: ${config['startup-script']} cannot be read`,
            ]);
          });
    const client = verdaClient(port, inputs);
    const deps: ProvisionDeps = {
      api: new VerdaInstances(client),
      logger: port.logger,
      onSecret: (value) => maskSecret(port, value),
      apiNow: () => client.lastServerDate ?? Date.now(),
    };
    const writes = () => client.writes.length;
    switch (inputs.command) {
      case 'plan': {
        try {
          const plan = await planHost(deps.api, target);
          setOutputs(port, {
            'hourly-cost': plan.totalPerHour.toFixed(4),
            status: plan.existing?.status ?? 'absent',
            changed: false,
          });
          await writeSummary(port, planTable(plan));
        } catch (err) {
          if (err instanceof HostCostLimitError) {
            setOutputs(port, { 'hourly-cost': err.plan.totalPerHour.toFixed(4), changed: false });
            await writeSummary(port, [...planTable(err.plan), `**Refused:** ${err.message}`]);
          }
          throw err;
        }
        return;
      }
      case 'create': {
        const result = await createHost(deps, target, {
          wait: inputs.wait,
          ssh: inputs.ssh,
          extraScript,
        });
        const i = result.instance;
        setOutputs(port, {
          'instance-id': i.id,
          hostname: i.hostname,
          ip: i.ip ?? '',
          status: i.status,
          'hourly-cost': result.plan.totalPerHour.toFixed(4),
          'bootstrap-host-key-fingerprint': result.bootstrapFingerprint ?? '',
          'models-mount': result.modelsMount ?? '',
          'volumes-seconds': seconds(result.timings.volumesMs),
          'provision-seconds': seconds(result.timings.instanceMs),
          'ssh-seconds': seconds(result.timings.sshMs),
          changed: writes() > 0,
        });
        await writeSummary(port, createTable(result));
        return;
      }
      case 'status': {
        const status = await hostStatus(deps, target);
        setOutputs(port, {
          'instance-id': status.instance?.id ?? '',
          hostname: target.hostname,
          ip: status.instance?.ip ?? '',
          status: status.instance?.status ?? 'absent',
          'hourly-cost': status.perHour.toFixed(4),
          'cost-so-far': status.costSoFar?.toFixed(4) ?? '',
          changed: false,
        });
        await writeSummary(port, statusTable(target, status));
        return;
      }
      case 'stop':
      case 'start': {
        const act = inputs.command === 'stop' ? stopHost : startHost;
        const { instance, changed } = await act(deps, target, inputs.wait);
        const status = await hostStatus(deps, target);
        setOutputs(port, {
          'instance-id': instance.id,
          hostname: instance.hostname,
          ip: status.instance?.ip ?? '',
          status: status.instance?.status ?? instance.status,
          'hourly-cost': status.perHour.toFixed(4),
          changed,
        });
        const parts = statusTable(target, status);
        if (inputs.command === 'stop') {
          const note = stoppedBillingNote(status.perHour);
          port.logger.warn(note);
          parts.push(`**Note:** ${note}`);
        }
        await writeSummary(port, parts);
        return;
      }
      case 'delete': {
        const result = await deleteHost(deps, target, {
          confirm: inputs.confirm,
          deleteVolumes: inputs.deleteVolumes,
          wait: inputs.wait,
        });
        setOutputs(port, {
          'instance-id': result.instance?.id ?? '',
          hostname: target.hostname,
          status: result.instance ? 'deleted' : 'absent',
          changed: writes() > 0,
        });
        const kept = result.keptVolumes.length
          ? ` Kept (detached, still billed): ${result.keptVolumes.map((v) => `"${v}"`).join(', ')}.`
          : '';
        const gone = result.deletedVolumes.length
          ? ` Deleted volumes: ${result.deletedVolumes.map((v) => `"${v}"`).join(', ')}.`
          : '';
        await writeSummary(port, [
          result.instance
            ? `Deleted instance ${target.hostname} (${result.instance.id}) and its OS volume.${gone}${kept}`
            : `No instance ${target.hostname}: nothing deleted.`,
        ]);
        return;
      }
      case 'reap': {
        const reaped = await reapTestHosts(deps, config, {
          dryRun: inputs.dryRun,
          wait: inputs.wait,
        });
        setOutputs(port, {
          reaped: reaped.map((r) => r.hostname).join(','),
          changed: writes() > 0,
        });
        await writeSummary(port, reapTable(reaped, inputs.dryRun));
        return;
      }
    }
  });
}
