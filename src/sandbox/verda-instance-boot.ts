// The Verda emulator's boot hook made real: each instance that starts provisioning becomes a fresh
// Debian 12 host booted with systemd (fresh-host.ts), with root's authorized_keys holding the
// instance's registered SSH keys and the instance's startup script run once at first boot. Its
// address is the instance's `ip`; deleting the instance stops it. Kept out of verda.ts so the
// emulator itself needs none of the fresh host's machinery.
import { startFreshHost, type FreshHost, type FreshHostOptions } from './fresh-host.js';
import type { BootRequest, BootedHost } from './verda-instances.js';

export interface FreshHostBooter {
  /** Pass as `instances.bootHost` of startVerdaEmulator. */
  bootHost(req: BootRequest): Promise<BootedHost>;
  /** The hosts booted and not stopped yet, so tests can exec inside. */
  bootedHosts(): { instanceId: string; host: FreshHost }[];
  /** How many boots were asked for (failed ones included). */
  boots(): number;
}

/** `opts` apply to every host; the request adds its hostname, keys and startup script. */
export function freshHostBooter(opts: FreshHostOptions = {}): FreshHostBooter {
  const hosts = new Map<string, FreshHost>();
  let boots = 0;
  return {
    bootHost: async (req) => {
      boots += 1;
      const hostOpts: FreshHostOptions = {
        ...opts,
        hostname: req.hostname,
        authorizedKeys: [...(opts.authorizedKeys ?? []), ...req.authorizedKeys],
      };
      if (req.startupScript !== undefined) hostOpts.startupScript = req.startupScript;
      const host = await startFreshHost(hostOpts);
      hosts.set(req.id, host);
      return {
        ip: host.address,
        port: host.port,
        stop: async () => {
          hosts.delete(req.id);
          await host.stop();
        },
      };
    },
    bootedHosts: () => [...hosts].map(([instanceId, host]) => ({ instanceId, host })),
    boots: () => boots,
  };
}
