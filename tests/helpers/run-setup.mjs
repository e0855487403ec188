// Jest global setup and teardown of the whole run (both projects): the temp root.
import { makeTempRoot } from './temp-root.mjs';

export default function runSetup() {
  makeTempRoot();
}
