import net from 'node:net';
import { boundPort } from '../../src/sandbox/bound-port.js';

/** A port that was just bound and closed: nothing listens there (a refused connection). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = boundPort(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}
