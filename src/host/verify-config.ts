// config/verify.yml: which checks of the seed's checklist must pass (required) and which are only
// reported (optional), and which are not run (off). A check it does not name is required.
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { parseWithSchema } from '../lib/schema.js';
import { readYamlFile } from '../lib/yaml-file.js';
import { CHECK_IDS, type CheckId } from './checks.js';

const level = z.enum(['required', 'optional', 'off']);
export type CheckLevel = z.infer<typeof level>;

const verifyConfigSchema = z.strictObject({
  version: z.literal(1),
  checks: z.partialRecord(z.enum(CHECK_IDS as [CheckId, ...CheckId[]]), level).default({}),
});

export interface VerifyPlan {
  /** Every check that runs, in the checklist's order, with its level. */
  checks: { id: CheckId; level: Exclude<CheckLevel, 'off'> }[];
}

export function planChecks(levels: Partial<Record<CheckId, CheckLevel>>): VerifyPlan {
  const checks: VerifyPlan['checks'] = [];
  for (const id of CHECK_IDS) {
    const l = levels[id] ?? 'required';
    if (l !== 'off') checks.push({ id, level: l });
  }
  return { checks };
}

export function parseVerifyConfig(file: string, data: unknown): VerifyPlan {
  return planChecks(parseWithSchema(verifyConfigSchema, data, file).checks);
}

export async function loadVerifyConfig(file: string): Promise<VerifyPlan> {
  return parseVerifyConfig(file, await readYamlFile(file));
}

/** The plan of config/verify.yml, or every check required when there is no such file. */
export async function loadVerifyConfigIfPresent(file: string): Promise<VerifyPlan> {
  return existsSync(file) ? loadVerifyConfig(file) : planChecks({});
}
