/**
 * The proxy's own answers: a JSON body `{ "error": { code, message } }` and the code again in
 * `meshca-error-code`, with the status from transport/status.ts. A refusal about framing or a
 * connection the proxy no longer trusts also closes the connection.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorCode } from '../errors.js';
import { HTTP_STATUS } from '../transport/status.js';

export const ERROR_CODE_HEADER = 'meshca-error-code';

/**
 * Connections whose current answer closes them. node emits a pipelined request as soon as it is
 * parsed, before the answers ahead of it are written; one queued behind a closing answer must
 * not be forwarded, whatever the policy would say of it.
 */
const closing = new WeakSet<object>();

export function markClosing(socket: object | null): void {
  if (socket !== null) closing.add(socket);
}

export function isClosing(socket: object | null): boolean {
  return socket !== null && closing.has(socket);
}

export function sendError(res: ServerResponse, code: ErrorCode, message: string, close: boolean): void {
  if (close) markClosing(res.socket);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify({ error: { code, message } });
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    [ERROR_CODE_HEADER]: code,
  };
  if (close) headers['connection'] = 'close';
  res.writeHead(HTTP_STATUS[code], headers);
  res.end(text);
}

const REASON: Readonly<Record<number, string>> = { 400: 'Bad Request', 431: 'Request Header Fields Too Large', 501: 'Not Implemented' };

/**
 * Answers a request node's parser refused (it never became a request) on the raw socket, then
 * closes it: after a parse error nothing more on that connection can be framed.
 */
export function sendParseError(socket: Socket, code: ErrorCode, message: string): void {
  // A refusal was already written (the parser can fail on the body of a request the proxy
  // refused by its headers): one answer per connection is enough; let it flush, then close.
  if (isClosing(socket)) {
    socket.end();
    return;
  }
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const status = HTTP_STATUS[code];
  const text = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${REASON[status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n${ERROR_CODE_HEADER}: ${code}\r\nconnection: close\r\n\r\n${text}`,
  );
  socket.destroySoon();
}

/** The framing code for one of node's parser errors (`HPE_*`), with a message for the client. */
export function parseErrorOf(err: NodeJS.ErrnoException & { reason?: string }): { code: ErrorCode; message: string } {
  const reason = err.reason ?? err.message;
  if (err.code === 'HPE_HEADER_OVERFLOW') return { code: 'ERR_HEADERS_TOO_LARGE', message: 'request headers too large' };
  // llhttp says "Request has invalid `Transfer-Encoding`" for a coding it does not know (xchunked);
  // its other Transfer-Encoding errors are malformed framing (chunked not last, CL with TE).
  if (err.code === 'HPE_INVALID_TRANSFER_ENCODING' && /^Request has invalid/.test(reason)) {
    return { code: 'ERR_TRANSFER_CODING_UNSUPPORTED', message: 'unsupported transfer coding: only chunked' };
  }
  return { code: 'ERR_FRAMING_INVALID', message: `malformed request: ${reason}` };
}
