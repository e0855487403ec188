// Every test run's temporary files under one root: TMPDIR points there for the whole run (jest's
// workers inherit it, so os.tmpdir() is the root), and at the end the root must be empty: a test
// or a stand-in that leaves a file behind (a key, an encrypted backup) fails the run, named.
import { mkdtempSync, chmodSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';

export function makeTempRoot() {
  const root = mkdtempSync(path.join('/tmp', 'comfyume-test-'));
  // Traversable by the fixture host's own user, as /tmp is (sticky, world-writable).
  chmodSync(root, 0o1777);
  process.env.COMFYUME_TEST_TMP_ROOT = root;
  process.env.TMPDIR = root;
  return root;
}

/** What a run left in its root (removed either way); [] when it cleaned up after itself. */
export function removeTempRoot() {
  const root = process.env.COMFYUME_TEST_TMP_ROOT;
  if (!root) return [];
  // Tools' own caches (tsx, node's compile cache) live in TMPDIR by design.
  const left = readdirSync(root).filter((f) => !/^(tsx-\d+|node-compile-cache|jest_\w+)$/.test(f));
  rmSync(root, { recursive: true, force: true });
  return left;
}
