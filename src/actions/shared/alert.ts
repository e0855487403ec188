// Alerting through GitHub issues: a failed run opens (or comments on) the one open issue of its
// title ("Nightly backup failing", "GPU host drifted"); the next good run comments and closes it.
import type * as GitHub from '@actions/github';
import { ALERT_ISSUE_TITLE, type BackupAlerts } from '../../backup/alert.js';

type Octokit = ReturnType<typeof GitHub.getOctokit>;

export interface GitHubAlertOptions {
  token: string;
  /** owner/name; default GITHUB_REPOSITORY. */
  repository?: string;
  /** REST base URL; default GITHUB_API_URL (a local stand-in in tests). */
  apiUrl?: string;
  /** Removes secret values from text before it is posted. */
  redact: (text: string) => string;
  /** The issue's title, what failed and what succeeded, in words; default the nightly backup's. */
  title?: string;
  what?: string;
  subject?: string;
}

export function runUrl(env: NodeJS.ProcessEnv = process.env): string {
  const server = env.GITHUB_SERVER_URL ?? 'https://github.com';
  const repo = env.GITHUB_REPOSITORY ?? '';
  return env.GITHUB_RUN_ID
    ? `${server}/${repo}/actions/runs/${env.GITHUB_RUN_ID}`
    : '(run link unavailable)';
}

export function githubAlerts(opts: GitHubAlertOptions): BackupAlerts {
  const repository = opts.repository ?? process.env.GITHUB_REPOSITORY ?? '';
  const [owner, repo] = repository.split('/');
  if (!owner || !repo)
    throw new Error(`GITHUB_REPOSITORY is not owner/name: ${JSON.stringify(repository)}`);
  const apiUrl = opts.apiUrl ?? process.env.GITHUB_API_URL;
  const title = opts.title ?? ALERT_ISSUE_TITLE;
  const what = opts.what ?? 'The nightly backup';
  const subject = opts.subject ?? 'Backup';
  // Loaded only when an alert is actually sent: Octokit costs ~26 MiB of memory at import.
  let client: Promise<Octokit> | undefined;
  const octokitClient = () =>
    (client ??= import('@actions/github').then((github) =>
      github.getOctokit(opts.token, apiUrl ? { baseUrl: apiUrl } : {}),
    ));

  const openIssue = async (octokit: Octokit): Promise<number | undefined> => {
    const issues = await octokit.paginate(octokit.rest.issues.listForRepo, {
      owner,
      repo,
      state: 'open',
      per_page: 100,
    });
    return issues.find((i) => !i.pull_request && i.title === title)?.number;
  };

  return {
    async failed(message, link) {
      const body = opts.redact(`${what} failed.\n\n\`\`\`\n${message}\n\`\`\`\n\nRun: ${link}`);
      const octokit = await octokitClient();
      const existing = await openIssue(octokit);
      if (existing === undefined) {
        await octokit.rest.issues.create({ owner, repo, title, body });
      } else {
        await octokit.rest.issues.createComment({ owner, repo, issue_number: existing, body });
      }
    },
    async recovered(backupId, link) {
      const octokit = await octokitClient();
      const existing = await openIssue(octokit);
      if (existing === undefined) return;
      await octokit.rest.issues.createComment({
        owner,
        repo,
        issue_number: existing,
        body: `${subject} ${backupId} succeeded; closing. Run: ${link}`,
      });
      await octokit.rest.issues.update({
        owner,
        repo,
        issue_number: existing,
        state: 'closed',
        state_reason: 'completed',
      });
    },
  };
}
