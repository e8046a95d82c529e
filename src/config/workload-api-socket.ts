import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../errors.js';

/**
 * A Workload API socket as SPIFFE_ENDPOINT_SOCKET spells it (`unix:///path`, `unix:path`) or a
 * plain path; returns the absolute filesystem path. TCP endpoints are refused.
 */
export function parseWorkloadApiSocket(socket: string): string {
  if (typeof socket !== 'string' || socket.length === 0) throw new ConfigError(['workload API socket path is empty']);
  if (/^[a-z][a-z0-9+.-]*:/i.test(socket)) {
    if (!socket.startsWith('unix:')) {
      throw new ConfigError([`workload API socket ${JSON.stringify(socket)} must be unix:///absolute/path (tcp is not supported)`]);
    }
    const path = socket.startsWith('unix://') ? socket.slice('unix://'.length) : socket.slice('unix:'.length);
    if (!isAbsolute(path)) throw new ConfigError([`workload API socket ${JSON.stringify(socket)} must name an absolute path (unix:///...)`]);
    return path;
  }
  return resolve(socket);
}
