// What a backup takes from the host: per configured item, the paths the probe found (the rest
// is missing) and whether the item is backed up or skipped. The manifest item is built from the
// config item and this plan (manifestItem in manifest.ts), so both say the same paths.
import { onHost, type BackupConfig } from './config.js';
import type { ProbeResult } from './remote-commands.js';

export interface PlannedItem {
  id: string;
  paths: string[];
  missing: string[];
  action: 'backup' | 'skip';
}

/** Decides what to take per item from the probe; a missing required path fails here. */
export function planItems(
  config: BackupConfig,
  probe: ProbeResult,
): { plan: PlannedItem[]; problems: string[] } {
  const problems: string[] = [];
  const plan = config.items.map((item): PlannedItem => {
    const missing = probe.missing.get(item.id) ?? [];
    const present = item.paths.filter((p) => !missing.includes(onHost(config, p)));
    if (missing.length > 0 && item.required)
      problems.push(`required item ${item.id} is missing ${missing.join(', ')}`);
    return { id: item.id, paths: present, missing, action: present.length > 0 ? 'backup' : 'skip' };
  });
  const sudoUsed = config.items.some(
    (i) => i.sudo && plan.find((p) => p.id === i.id)?.action === 'backup',
  );
  if (sudoUsed && probe.sudo === 'missing') {
    problems.push(
      `the SSH user may not run 'sudo -n ${config['read-wrapper']}' on the host (root-owned items need it; see the sudoers line in actions/backup-verda/README.md)`,
    );
  }
  return { plan, problems };
}
