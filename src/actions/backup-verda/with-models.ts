// with-models: after the backup, sync the model vault from the same host (the sync-models issue).
// The model sync library (src/models) is not part of this build yet, so the input is refused up
// front — before any connection — instead of silently skipping the models.
import type { BackupConfig } from '../../backup/config.js';
import { InputError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { SshConnection } from '../../lib/ssh.js';
import type { BackupInputs } from './inputs.js';

export function modelSyncAfterBackup(
  _config: BackupConfig,
  _inputs: BackupInputs,
  _logger: Logger,
): (conn: SshConnection) => Promise<void> {
  throw new InputError(
    'with-models',
    'true',
    'false for now: the model sync (sync-models) is not in this build yet; run the sync-models action for the model vault',
  );
}
