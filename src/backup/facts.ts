// Facts recorded with each backup: tailscale ip -4, hostname, OS release, kernel and the disk
// usage of the configured mounts. Each is best-effort; a missing fact is a warning, not a failure.
import { shellQuote } from '../lib/shell.js';
import { onHost, type BackupConfig } from './config.js';
import { bashPipefail } from './remote-commands.js';

export interface DiskFact {
  path: string;
  filesystem: string;
  sizeBytes: number;
  usedBytes: number;
  availableBytes: number;
  mountedOn: string;
}

export interface HostFacts {
  tailscaleIp: string;
  hostname: string;
  os: string;
  kernel: string;
  disks: Record<string, DiskFact>;
}

export function factsCommand(config: Pick<BackupConfig, 'disk-facts' | 'host-root'>): string {
  const lines = [
    `printf 'tailscale-ip\\t%s\\n' "$(tailscale ip -4 2>/dev/null | head -n 1)"`,
    `printf 'hostname\\t%s\\n' "$(hostname 2>/dev/null)"`,
    `printf 'os\\t%s\\n' "$( (. /etc/os-release && printf '%s' "$PRETTY_NAME") 2>/dev/null)"`,
    `printf 'kernel\\t%s\\n' "$(uname -r)"`,
  ];
  for (const [name, path] of Object.entries(config['disk-facts'])) {
    lines.push(
      `printf 'disk\\t%s\\t%s\\t%s\\n' ${shellQuote(name)} ${shellQuote(path)} "$(df -P -B1 -- ${shellQuote(onHost(config, path))} 2>/dev/null | tail -n 1)"`,
    );
  }
  // Facts are best-effort: never let one failed probe fail the script.
  return bashPipefail(`${lines.join('\n')}\nexit 0`);
}

export function parseFacts(output: string): { facts: HostFacts; missing: string[] } {
  const facts: HostFacts = { tailscaleIp: '', hostname: '', os: '', kernel: '', disks: {} };
  for (const line of output.split('\n')) {
    const [kind, a = '', b = '', c = ''] = line.split('\t');
    if (kind === 'tailscale-ip')
      facts.tailscaleIp = /^\d{1,3}(\.\d{1,3}){3}$/.test(a.trim()) ? a.trim() : '';
    else if (kind === 'hostname') facts.hostname = a.trim();
    else if (kind === 'os') facts.os = a.trim();
    else if (kind === 'kernel') facts.kernel = a.trim();
    else if (kind === 'disk') {
      const f = c.trim().split(/\s+/);
      if (f.length >= 6 && /^\d+$/.test(f[1] ?? '')) {
        facts.disks[a] = {
          path: b,
          filesystem: f[0] ?? '',
          sizeBytes: Number(f[1]),
          usedBytes: Number(f[2]),
          availableBytes: Number(f[3]),
          mountedOn: f.slice(5).join(' '),
        };
      } else {
        facts.disks[a] = {
          path: b,
          filesystem: '',
          sizeBytes: 0,
          usedBytes: 0,
          availableBytes: 0,
          mountedOn: '',
        };
      }
    }
  }
  const missing: string[] = [];
  if (!facts.tailscaleIp) missing.push('tailscale ip -4 gave no IPv4 address');
  if (!facts.hostname) missing.push('hostname is empty');
  for (const [name, disk] of Object.entries(facts.disks)) {
    if (!disk.filesystem) missing.push(`df of ${name} (${disk.path}) failed`);
  }
  return { facts, missing };
}
