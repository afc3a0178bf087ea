import net from 'node:net';

export interface DropProxy {
  /** The proxy's base URL: requests through it reach the target. */
  url: string;
  /** Destroys every connection through the proxy, both sides, as a network failure would. */
  dropConnections(): void;
  close(): Promise<void>;
}

/** A TCP proxy on 127.0.0.1 to `port` whose connections a test can drop mid-stream. */
export async function dropProxy(port: number): Promise<DropProxy> {
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const dropConnections = () => {
    for (const socket of sockets) socket.destroy();
  };
  return {
    url: `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
    dropConnections,
    close: async () => {
      dropConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}

export interface LagProxy {
  port: number;
  close(): Promise<void>;
}

/**
 * A TCP proxy on 127.0.0.1 to `port` that delays a connection's bytes, both ways, by what
 * `lagFor` returns for the text the client has sent so far (a Redis connection names itself
 * with CLIENT SETNAME, so one role can lag while another does not). Order is kept: every chunk
 * of a direction waits the same time, and timers of one duration fire in the order they were set.
 */
export async function lagProxy(port: number, lagFor: (sent: string) => number): Promise<LagProxy> {
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    let sent = '';
    let lag = 0;
    const forward = (to: net.Socket, chunk: Buffer) => {
      if (lag === 0) to.write(chunk);
      else setTimeout(() => to.writable && to.write(chunk), lag);
    };
    client.on('data', (chunk: Buffer) => {
      if (sent.length < 4096) {
        sent += chunk.toString('latin1');
        lag = lagFor(sent);
      }
      forward(upstream, chunk);
    });
    upstream.on('data', (chunk: Buffer) => forward(client, chunk));
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    port: (proxy.address() as net.AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}
