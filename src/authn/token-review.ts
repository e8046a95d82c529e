/**
 * Authenticates service-account tokens by asking the API server (TokenReview,
 * authentication.k8s.io/v1). Unlike offline JWKS checks this sees revocations: a token bound
 * to a deleted pod or service account is refused at once. It costs an API call per token, so
 * wrap it in `CachingAuthenticator`.
 *
 * The CA's own credentials need RBAC `create` on `tokenreviews` (ClusterRole
 * `system:auth-delegator` grants it).
 */
import { ApiException, AuthenticationV1Api, FetchError } from '@kubernetes/client-node';
import type { KubeConfig, V1TokenReview } from '@kubernetes/client-node';

import { AuthnError, AuthnUnavailableError, ConfigError } from '../errors.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { signalMiddleware } from '../k8s/kube-api.js';
import { checkTokenShape, parseServiceAccountUsername, readUnverifiedExpiry } from './authenticator.js';
import type { AuthenticateOptions, Authenticator, CallerIdentity } from './authenticator.js';

export interface CreateTokenReviewAuthenticatorOptions {
  readonly kubeConfig: KubeConfig;
  /**
   * Audiences the token must be meant for (`spec.audiences`). Required: without them the API
   * server checks against its own audience, and a token meant for the API server could then be
   * replayed to the CA.
   */
  readonly audiences: readonly string[];
  readonly timeoutMs?: number;
  readonly logger?: Logger;
  /** Arms the timeout; injectable so tests control it without real sleeps. */
  readonly clock?: Clock;
  readonly maxTokenBytes?: number;
}

export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';

const MAX_STATUS_ERROR_CHARS = 300;

/** `status.error` is free text from the API server: bound it, and make sure the token is not in it. */
function sanitizeStatusError(text: string | undefined, token: string): string {
  if (text === undefined || text.length === 0) return 'no reason given';
  const scrubbed = text.split(token).join('[REDACTED]');
  return scrubbed.length > MAX_STATUS_ERROR_CHARS ? `${scrubbed.slice(0, MAX_STATUS_ERROR_CHARS)}…` : scrubbed;
}

/** Pulls `reason` and `message` out of a `kind: Status` error body (client-node hands it over as text). */
function describeStatusBody(raw: unknown): string {
  let body = raw;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      return '';
    }
  }
  if (typeof body !== 'object' || body === null) return '';
  const { reason, message } = body as { reason?: unknown; message?: unknown };
  const parts = [typeof reason === 'string' ? reason : undefined, typeof message === 'string' ? message : undefined].filter(
    (p): p is string => p !== undefined && p.length > 0,
  );
  return parts.length === 0 ? '' : `: ${parts.join(': ').slice(0, MAX_STATUS_ERROR_CHARS)}`;
}

function firstExtra(extra: Record<string, string[]> | undefined, key: string): string | undefined {
  const values = extra?.[key];
  return Array.isArray(values) && typeof values[0] === 'string' && values[0].length > 0 ? values[0] : undefined;
}

/** Turns a failed API call into an Unavailable error: none of these are a verdict on the token. */
function backendFailure(err: unknown): AuthnUnavailableError {
  if (err instanceof ApiException) {
    const code = err.code;
    const detail = describeStatusBody(err.body);
    if (code === 401 || code === 403) {
      return new AuthnUnavailableError(
        `the API server rejected the CA's own credentials for TokenReview (HTTP ${code}${detail}); check the CA's service account and its RBAC (create tokenreviews, e.g. system:auth-delegator)`,
        { cause: err, rule: 'ca-credentials' },
      );
    }
    return new AuthnUnavailableError(`TokenReview failed with HTTP ${code}${detail}`, { cause: err, rule: 'api-error' });
  }
  if (err instanceof FetchError) {
    return new AuthnUnavailableError(`cannot reach the API server for TokenReview: ${err.code ?? err.type}`, { cause: err, rule: 'unreachable' });
  }
  return new AuthnUnavailableError('TokenReview request failed', { cause: err, rule: 'unreachable' });
}

class TimeoutMarker extends Error {
  constructor() {
    super('TokenReview deadline reached');
  }
}

export function createTokenReviewAuthenticator(options: CreateTokenReviewAuthenticatorOptions): Authenticator {
  const { kubeConfig } = options;
  const audiences = [...options.audiences];
  if (audiences.length === 0 || audiences.some((a) => typeof a !== 'string' || a.length === 0)) {
    throw new TypeError('audiences must list at least one non-empty audience');
  }
  const timeoutMs = options.timeoutMs ?? 5000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new TypeError(`timeoutMs must be positive, got ${timeoutMs}`);
  const clock = options.clock ?? systemClock;
  const logger = (options.logger ?? silentLogger).child({ component: 'token-review' });
  const maxBytes = options.maxTokenBytes;

  let api: AuthenticationV1Api;
  try {
    api = kubeConfig.makeApiClient(AuthenticationV1Api);
  } catch (err) {
    throw new ConfigError([`kubeconfig cannot be used for TokenReview: ${err instanceof Error ? err.message : String(err)}`], { cause: err });
  }

  /** Sends the review, bounded by the timeout and the caller's signal, whatever the HTTP stack does. */
  const review = async (token: string, callerSignal: AbortSignal | undefined): Promise<V1TokenReview> => {
    if (callerSignal?.aborted) throw callerSignal.reason;
    const controller = new AbortController();
    const timer = clock.setTimeout(() => controller.abort(new TimeoutMarker()), timeoutMs);
    const onCallerAbort = (): void => controller.abort(callerSignal?.reason);
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    const aborted = new Promise<never>((_, reject) => {
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
    });
    try {
      const call = api.createTokenReview(
        {
          body: {
            apiVersion: 'authentication.k8s.io/v1',
            kind: 'TokenReview',
            spec: { token, audiences: [...audiences] },
          },
        },
        { middleware: [signalMiddleware(controller.signal)], middlewareMergeStrategy: 'append' },
      );
      // Keep a late rejection from the losing side of the race from going unhandled.
      call.catch(() => undefined);
      return await Promise.race([call, aborted]);
    } catch (err) {
      if (callerSignal?.aborted) throw callerSignal.reason;
      if (controller.signal.reason instanceof TimeoutMarker) {
        throw new AuthnUnavailableError(`TokenReview timed out after ${timeoutMs}ms`, { cause: err, rule: 'timeout' });
      }
      throw backendFailure(err);
    } finally {
      clock.clearTimeout(timer);
      callerSignal?.removeEventListener('abort', onCallerAbort);
    }
  };

  return {
    async authenticate(token: string, authOptions?: AuthenticateOptions): Promise<CallerIdentity> {
      checkTokenShape(token, maxBytes === undefined ? {} : { maxBytes });
      const result = await review(token, authOptions?.signal);
      const status = result.status;
      if (status === undefined) {
        throw new AuthnUnavailableError('TokenReview response has no status', { rule: 'api-error' });
      }
      if (status.authenticated !== true) {
        throw new AuthnError(`the API server did not authenticate the token: ${sanitizeStatusError(status.error, token)}`, {
          rule: 'unauthenticated',
        });
      }
      // An audience-unaware reviewer answers with no audiences, meaning "valid for the API
      // server": not proof the token was meant for us, so an intersection is required.
      const granted = status.audiences ?? [];
      if (!granted.some((a) => audiences.includes(a))) {
        throw new AuthnError('the token is not meant for this audience', { rule: 'audience' });
      }
      const username = status.user?.username;
      if (typeof username !== 'string') {
        throw new AuthnError('TokenReview returned no username', { rule: 'not-service-account' });
      }
      const { namespace, serviceAccount } = parseServiceAccountUsername(username);
      const podName = firstExtra(status.user?.extra, POD_NAME_EXTRA);
      const podUid = firstExtra(status.user?.extra, POD_UID_EXTRA);
      // The API server just verified the token, so its exp can be trusted to bound caching.
      const expiresAt = readUnverifiedExpiry(token);
      logger.debug({ namespace, serviceAccount }, 'token review authenticated');
      return {
        namespace,
        serviceAccount,
        ...(podName === undefined ? {} : { podName }),
        ...(podUid === undefined ? {} : { podUid }),
        ...(expiresAt === undefined ? {} : { expiresAt }),
      };
    },
  };
}
