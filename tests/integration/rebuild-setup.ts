// The rebuild stand-ins (src/sandbox/rebuild-standins.ts) as the rebuild tests use them: a
// support check that logs why it skips, and the backup world's config aimed at the fresh host.
import type { FreshHost } from '../../src/sandbox/fresh-host.js';
import {
  rebuildConfigYaml,
  rebuildSupport as support,
} from '../../src/sandbox/rebuild-standins.js';
import type { BackupWorld } from './backup-setup.js';

export {
  OHMYZSH_REPO,
  REDIS_PORT,
  installOhMyZsh,
  startRedisStandin,
} from '../../src/sandbox/rebuild-standins.js';

/** Whether a rebuild test can run here; logs why not (the caller skips). */
export function rebuildSupport(what: string): boolean {
  const { ok, reason } = support();
  if (!ok) console.log(`${what} skipped: ${reason}`);
  return ok;
}

/** The backup config of the fixture host, aimed at what the fresh host can reach and run. */
export function writeRebuildConfig(world: BackupWorld, fresh: FreshHost): string {
  return world.writeConfig('rebuild.yml', (yaml) => rebuildConfigYaml(yaml, fresh));
}
