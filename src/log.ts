import { pino } from 'pino';

/** The pino-compatible surface the rest of meshca depends on. */
export interface Logger {
  child(bindings: Record<string, unknown>): Logger;
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

/**
 * Paths that may carry secrets. Redaction is a backstop: code must not log these in the first
 * place, but a stray `req.headers` or options object must still not leak a token.
 */
export const REDACT_PATHS: readonly string[] = [
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'request.headers.authorization',
  'privateKey',
  '*.privateKey',
  'key',
  '*.key',
  'csr',
  '*.csr',
];

export interface CreateLoggerOptions {
  readonly level?: string;
  readonly name?: string;
  /** Destination stream; stderr by default so stdout stays for command output. */
  readonly destination?: NodeJS.WritableStream;
}

export function createLogger(options: CreateLoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env['MESHCA_LOG_LEVEL'] ?? 'info',
      name: options.name ?? 'meshca',
      redact: { paths: [...REDACT_PATHS], censor: '[REDACTED]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? process.stderr,
  ) as unknown as Logger;
}

/** A logger that drops everything: for library defaults and tests that do not read logs. */
export const silentLogger: Logger = {
  child: () => silentLogger,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
