// The Verda secrets config/workshop.yml refers to: an emulated account holds them, as the real
// one must before the first start (the emulator refuses a reference to a missing secret).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseWorkshopConfig, secretReferences } from '../../src/serverless/config.js';
import { repoRoot } from './run-action.js';

const file = path.join(repoRoot, 'config/workshop.yml');
export const WORKSHOP_SECRETS: string[] = secretReferences(
  parseWorkshopConfig(parseYaml(readFileSync(file, 'utf8')), file),
);
