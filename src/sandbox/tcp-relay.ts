// A plain TCP relay: a service bound to the loopback (the R2 emulator) made reachable at another
// address of this machine (a fresh host's outer veth address), byte for byte. The relay changes
// nothing in the stream, so a request signed for the relay's address (a presigned URL's Host)
// verifies at the service behind it.
import net from 'node:net';
import { boundPort } from './bound-port.js';

export interface TcpRelay {
  /** host:port the relay listens on. */
  address: string;
  port: number;
  stop(): Promise<void>;
}

export async function startTcpRelay(
  listenHost: string,
  target: { host: string; port: number },
): Promise<TcpRelay> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      // One side failing ends both; the other side's error is the one worth nothing.
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, listenHost, resolve);
  });
  const port = boundPort(server);
  return {
    address: `${listenHost}:${port}`,
    port,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
