// verify-host: the seed's checklist run on the live host over SSH (pinned host key), read-only.
// The check program (checks.ts) is sent as one `bash -c` command; what comes back is parsed
// strictly. A required check that fails fails the run, naming it; optional ones are reported.
import { OpsError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { shellQuote } from '../lib/shell.js';
import { connectSsh, type ConnectOptions } from '../lib/ssh.js';
import type { Table } from '../lib/summary.js';
import {
  checkScript,
  CHECKS,
  expectations,
  parseCheckLines,
  type CheckId,
  type CheckTarget,
} from './checks.js';
import type { VerifyPlan } from './verify-config.js';

export interface VerifyOptions {
  ssh: Omit<ConnectOptions, 'logger'>;
  target: CheckTarget;
  plan: VerifyPlan;
  logger: Logger;
}

export interface VerifyRow {
  id: CheckId;
  level: 'required' | 'optional';
  expected: string;
  found: string;
  ok: boolean;
}

export interface VerifyResult {
  host: string;
  hostFingerprint: string;
  rows: VerifyRow[];
  /** Required checks that failed. */
  failed: CheckId[];
  /** Optional checks that failed. */
  warnings: CheckId[];
}

export async function verifyHost(opts: VerifyOptions): Promise<VerifyResult> {
  const ids = opts.plan.checks.map((c) => c.id);
  const conn = await connectSsh({ ...opts.ssh, logger: opts.logger });
  let output: string;
  try {
    const { stdout } = await conn.run(`bash -c ${shellQuote(checkScript(opts.target, ids))}`);
    output = stdout;
  } finally {
    await conn.close();
  }
  const results = parseCheckLines(output, ids);
  const expected = expectations(opts.target);
  const rows = results.map((r, i) => ({
    id: r.id,
    level: opts.plan.checks[i]?.level ?? 'required',
    expected: expected[r.id],
    found: r.found,
    ok: r.ok,
  }));
  return {
    host: `${opts.ssh.host}:${opts.ssh.port}`,
    hostFingerprint: conn.hostFingerprint,
    rows,
    failed: rows.filter((r) => !r.ok && r.level === 'required').map((r) => r.id),
    warnings: rows.filter((r) => !r.ok && r.level === 'optional').map((r) => r.id),
  };
}

/** The summary table: check, expected, found, ✓/✗. */
export function verifyTable(result: VerifyResult): Table {
  return {
    title: `verify-host ${result.host} (${result.hostFingerprint})`,
    headers: ['', 'check', 'expected', 'found'],
    rows: result.rows.map((r) => [
      r.ok ? '✓' : r.level === 'required' ? '✗' : '⚠',
      `${CHECKS[r.id]} (${r.id}${r.level === 'optional' ? ', optional' : ''})`,
      r.expected,
      r.found,
    ]),
  };
}

/** The error of a run whose required checks failed, naming each with what was found. */
export function verifyFailure(result: VerifyResult): OpsError | undefined {
  if (result.failed.length === 0) return undefined;
  const lines = result.rows
    .filter((r) => result.failed.includes(r.id))
    .map((r) => `${r.id}: ${r.found} (expected ${r.expected})`);
  return new OpsError(
    `verify-host: ${result.failed.length} required check(s) failed on ${result.host}: ${lines.join('; ')}`,
  );
}
