/**
 * Where a failing nightly backup is reported and where its recovery is noted. The action backs it
 * with a GitHub issue; core logic only sees this interface.
 */
export interface BackupAlerts {
  failed(message: string, runUrl: string): Promise<void>;
  recovered(backupId: string, runUrl: string): Promise<void>;
}

export const ALERT_ISSUE_TITLE = 'Nightly backup failing';
