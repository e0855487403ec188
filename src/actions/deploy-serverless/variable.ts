// The endpoint as a GitHub Actions variable (repository or environment) through @actions/github's
// REST client: create-or-update on start, delete on stop (GitHub keeps no empty variable; a
// deleted one reads as empty in `vars.X`, the same "down" as the VPS's empty line).
import type * as GitHub from '@actions/github';
import { OpsError, errorMessage } from '../../lib/errors.js';

type Octokit = ReturnType<typeof GitHub.getOctokit>;

export interface VariableTarget {
  token: string;
  name: string;
  scope: 'repo' | 'environment';
  /** The environment's name when scope is environment. */
  environment?: string;
  /** owner/name; default GITHUB_REPOSITORY. */
  repository?: string;
  /** REST base URL; default GITHUB_API_URL (a local stand-in in tests). */
  apiUrl?: string;
}

export type VariableResult = 'created' | 'updated' | 'deleted' | 'absent';

function statusOf(err: unknown): number | undefined {
  const status = (err as { status?: unknown } | undefined)?.status;
  return typeof status === 'number' ? status : undefined;
}

export function describeVariable(t: VariableTarget, repository: string): string {
  return t.scope === 'environment'
    ? `environment variable ${t.name} of ${repository} (environment ${t.environment ?? ''})`
    : `repository variable ${t.name} of ${repository}`;
}

/** Sets the variable to `value`, or deletes it when `value` is empty. */
export async function publishVariable(t: VariableTarget, value: string): Promise<VariableResult> {
  const repository = t.repository ?? process.env.GITHUB_REPOSITORY ?? '';
  const [owner = '', repo = ''] = repository.split('/');
  if (!/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(repository))
    throw new OpsError(`GITHUB_REPOSITORY is not owner/name: ${JSON.stringify(repository)}`);
  const apiUrl = t.apiUrl ?? process.env.GITHUB_API_URL;
  // Loaded only when a variable is published: Octokit costs ~26 MiB of memory at import.
  const github = await import('@actions/github');
  const octokit: Octokit = github.getOctokit(t.token, apiUrl ? { baseUrl: apiUrl } : {});
  const base = { owner, repo, name: t.name };
  const env = t.scope === 'environment' ? (t.environment ?? '') : undefined;
  const what = describeVariable(t, repository);
  try {
    if (value === '') {
      try {
        if (env === undefined) await octokit.rest.actions.deleteRepoVariable(base);
        else
          await octokit.rest.actions.deleteEnvironmentVariable({ ...base, environment_name: env });
        return 'deleted';
      } catch (err) {
        if (statusOf(err) === 404) return 'absent';
        throw err;
      }
    }
    try {
      if (env === undefined) await octokit.rest.actions.updateRepoVariable({ ...base, value });
      else
        await octokit.rest.actions.updateEnvironmentVariable({
          ...base,
          environment_name: env,
          value,
        });
      return 'updated';
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    if (env === undefined) await octokit.rest.actions.createRepoVariable({ ...base, value });
    else
      await octokit.rest.actions.createEnvironmentVariable({
        ...base,
        environment_name: env,
        value,
      });
    return 'created';
  } catch (err) {
    const status = statusOf(err);
    const hint =
      status === 401 || status === 403
        ? `; the token needs write access to ${t.scope === 'environment' ? 'Environments' : 'Variables'} (see the README's github-token)`
        : status === 404
          ? `; the repository${env === undefined ? '' : ` or environment ${env}`} was not found with this token`
          : '';
    throw new OpsError(
      `publishing the ${what} failed${status ? ` (HTTP ${status})` : ''}: ${errorMessage(err).split('\n')[0] ?? ''}${hint}`,
    );
  }
}
