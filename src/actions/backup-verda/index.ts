import '../../lib/cjs-globals.js';
import '../../lib/small-heap.js';

// The action is compiled only now, after the heap flags are set (ncc puts it in chunks of its own).
const { actionsPort } = await import('../shared/runtime.js');
const { run } = await import('./main.js');
await run(actionsPort);
