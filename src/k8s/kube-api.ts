/**
 * What the Kubernetes adapters share: one coded error for failed API calls, the labels meshca
 * puts on what it creates, and a per-request deadline.
 *
 * `@kubernetes/client-node` has no request timeout of its own: a half-open connection to the API
 * server would stall a lease renewal forever, and a leader that cannot tell whether it renewed
 * must not go on believing it leads. Every call here is bounded.
 */
import { ApiException, FetchError, Observable } from '@kubernetes/client-node';
import type { ConfigurationOptions, ObservableMiddleware, RequestContext, ResponseContext } from '@kubernetes/client-node';

import { CaNotReadyError } from '../errors.js';
import type { IdentityErrorOptions } from '../errors.js';

/** Labels on every object meshca creates, so `kubectl get -l app.kubernetes.io/name=meshca` finds them. */
export const MESHCA_LABELS: Readonly<Record<string, string>> = Object.freeze({
  'app.kubernetes.io/name': 'meshca',
  'app.kubernetes.io/managed-by': 'meshca',
});

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/**
 * `forbidden`: the API server refused meshca's own credentials (401/403), an RBAC problem an
 * operator must fix; `unavailable`: network failure, timeout, 429 or 5xx, worth retrying;
 * `conflict`: 409; `api`: any other answer.
 */
export type KubeApiErrorRule = 'forbidden' | 'unavailable' | 'conflict' | 'api';

/**
 * A Kubernetes API call failed. A kind of `ERR_CA_NOT_READY`: the CA cannot use (or publish) its
 * state in the cluster yet, and callers answer "retry later". `status` is the HTTP status, when
 * the server answered.
 */
export class KubeApiError extends CaNotReadyError {
  readonly status: number | undefined;
  readonly reason: string | undefined;

  constructor(message: string, options: IdentityErrorOptions & { readonly rule: KubeApiErrorRule; readonly status?: number; readonly reason?: string }) {
    super(message, options);
    this.status = options.status;
    this.reason = options.reason;
  }
}

/** The HTTP status of a failed client-node call, or undefined when the server never answered. */
export function kubeStatusOf(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.status;
  return err instanceof ApiException ? err.code : undefined;
}

/** `reason` and `message` of a `kind: Status` body (client-node hands it over as text). */
function readStatusBody(raw: unknown): { reason?: string; message?: string } {
  let body = raw;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      return {};
    }
  }
  if (typeof body !== 'object' || body === null) return {};
  const { reason, message } = body as { reason?: unknown; message?: unknown };
  return {
    ...(typeof reason === 'string' && reason !== '' ? { reason } : {}),
    // Bounded: the message is free text from the server and ends up in logs.
    ...(typeof message === 'string' && message !== '' ? { message: message.slice(0, 300) } : {}),
  };
}

/** Wraps a failed call as a `KubeApiError` naming what was attempted (`action`, e.g. `get secret meshca/cacerts`). */
export function toKubeApiError(err: unknown, action: string): KubeApiError {
  if (err instanceof KubeApiError) return err;
  if (err instanceof ApiException) {
    const status = err.code;
    const { reason, message } = readStatusBody(err.body);
    const detail = [reason, message].filter((p) => p !== undefined).join(': ');
    const text = `${action}: HTTP ${status}${detail === '' ? '' : ` ${detail}`}`;
    const rule: KubeApiErrorRule =
      status === 401 || status === 403 ? 'forbidden' : status === 409 ? 'conflict' : status === 429 || status >= 500 ? 'unavailable' : 'api';
    const hint = rule === 'forbidden' ? ' (check the service account and its RBAC: see k8s/base)' : '';
    return new KubeApiError(`${text}${hint}`, { rule, status, cause: err, ...(reason === undefined ? {} : { reason }) });
  }
  if (err instanceof RequestTimeout) {
    return new KubeApiError(`${action}: no answer within ${err.timeoutMs} ms`, { rule: 'unavailable', cause: err });
  }
  if (err instanceof FetchError) {
    return new KubeApiError(`${action}: cannot reach the API server (${err.code ?? err.type})`, { rule: 'unavailable', cause: err });
  }
  return new KubeApiError(`${action}: ${err instanceof Error ? err.message : String(err)}`, { rule: 'unavailable', cause: err });
}

class RequestTimeout extends Error {
  constructor(readonly timeoutMs: number) {
    super(`request timed out after ${timeoutMs} ms`);
  }
}

/** Per-request middleware that attaches an abort signal to the client's outgoing fetch. */
export function signalMiddleware(signal: AbortSignal): ObservableMiddleware {
  return {
    pre: (context: RequestContext) => {
      context.setSignal(signal);
      return new Observable(Promise.resolve(context));
    },
    post: (context: ResponseContext) => new Observable(Promise.resolve(context)),
  };
}

export interface CallKubeOptions {
  /** Cancels the call (the caller is shutting down); the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

/**
 * Runs one API call with a deadline and the caller's signal, and turns any failure into a
 * `KubeApiError` (an abort rejects with the signal's reason instead, so loops can tell "stop"
 * from "failed").
 *
 * The deadline is wall-clock time on purpose, not the injected Clock: it bounds a network wait,
 * not a lease decision, and must fire even while a test holds logical time still.
 */
export async function callKube<T>(action: string, call: (options: ConfigurationOptions) => Promise<T>, options: CallKubeOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const outer = options.signal;
  if (outer?.aborted) throw outer.reason;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new RequestTimeout(timeoutMs)), timeoutMs);
  timer.unref();
  const onOuterAbort = (): void => controller.abort(outer?.reason);
  outer?.addEventListener('abort', onOuterAbort, { once: true });
  // Race the abort too: whether the HTTP stack honours the signal is its business, not ours.
  const aborted = new Promise<never>((_, reject) => {
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
  });
  try {
    const pending = call({ middleware: [signalMiddleware(controller.signal)], middlewareMergeStrategy: 'append' });
    pending.catch(() => undefined);
    return await Promise.race([pending, aborted]);
  } catch (err) {
    if (outer?.aborted) throw outer.reason;
    throw toKubeApiError(err, action);
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', onOuterAbort);
  }
}

/** Runs a call and maps 404 to undefined: reads of objects that may legitimately be absent. */
export async function readOptional<T>(action: string, call: (options: ConfigurationOptions) => Promise<T>, options: CallKubeOptions = {}): Promise<T | undefined> {
  try {
    return await callKube(action, call, options);
  } catch (err) {
    if (kubeStatusOf(err) === 404) return undefined;
    throw err;
  }
}
