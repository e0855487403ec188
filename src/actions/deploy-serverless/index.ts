import '../../lib/cjs-globals.js';
import { actionsPort } from '../shared/runtime.js';
import { run } from './main.js';

await run(actionsPort);
