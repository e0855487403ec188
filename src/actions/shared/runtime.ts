// The Actions runtime behind the port: inputs exactly as the runner hands them over (INPUT_<NAME>
// env), workflow commands for logs, masks and failure, the GITHUB_OUTPUT and job summary files.
import * as core from '@actions/core';
import type { ActionPort } from './port.js';

export const actionsPort: ActionPort = {
  input: (name) => core.getInput(name),
  logger: {
    debug: (m) => core.debug(m),
    info: (m) => core.info(m),
    // Warnings become annotations; groups fold in the log.
    warn: (m) => core.warning(m),
    error: (m) => core.error(m),
    group: (title, fn) => core.group(title, fn),
  },
  mask: (value) => core.setSecret(value),
  setOutput: (name, value) => core.setOutput(name, value),
  summary: async (markdown) => {
    if (!process.env.GITHUB_STEP_SUMMARY) return;
    await core.summary.addRaw(markdown, false).write();
  },
  fail: (message) => core.setFailed(message),
};
