// The entry of bin/help.mjs, the bundle bin/comfyume-ops.mjs loads to answer --help and
// --version without tsx (scripts/build-cli-help.mjs builds it; a test keeps it fresh).
import { parseArgs } from './args.js';
import { helpAnswer, type HelpAnswer, type Specs } from './help.js';

/** Help for argv from the action specs (src/cli/action-specs.json); undefined when not help. */
export function answer(argv: string[], specs: Specs): Promise<HelpAnswer | undefined> {
  return helpAnswer(parseArgs(argv, { readFiles: false }), () => Promise.resolve(specs));
}
