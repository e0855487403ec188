// After every test: nothing may be left in the run's temp root.
import { removeTempRoot } from './temp-root.mjs';

export default function runTeardown() {
  const left = removeTempRoot();
  if (left.length > 0) {
    process.stderr.write(`temp files left behind by the run: ${left.join(', ')}\n`);
    process.exitCode = 1;
  }
}
