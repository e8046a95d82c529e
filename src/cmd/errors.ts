import { ConfigError, isIdentityError } from '../errors.js';

const OPERATOR_ERRNO = new Set(['ENOENT', 'EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'EROFS', 'ENOSPC', 'EADDRINUSE', 'EADDRNOTAVAIL']);

/** Exit codes: 1 for a refused operation, 2 for bad usage or configuration. */
export function reportCliError(err: unknown, stderr: NodeJS.WritableStream = process.stderr): number {
  if (err instanceof ConfigError) {
    stderr.write(`meshca: ${err.message}\n`);
    return 2;
  }
  if (isIdentityError(err)) {
    stderr.write(`meshca: ${err.message} [${err.code}${err.rule ? `/${err.rule}` : ''}]\n`);
    return 1;
  }
  const e = err as NodeJS.ErrnoException;
  // The operator's to fix (a path, a permission, a read-only volume, a taken port): one line, no stack.
  if (e?.code !== undefined && OPERATOR_ERRNO.has(e.code)) {
    stderr.write(`meshca: ${e.message}\n`);
    return 1;
  }
  stderr.write(`meshca: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
}
