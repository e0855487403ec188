// The port a listening TCP server was given (listen on port 0 picks a free one).
import type { Server } from 'node:net';

export function boundPort(server: Server): number {
  const address = server.address();
  // A string is a pipe or socket path, null a server not listening: neither has a port.
  if (address === null || typeof address === 'string')
    throw new Error(`server is not listening on TCP (address: ${String(address)})`);
  return address.port;
}
