import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyServerFactory,
} from 'fastify';
import type { IssuanceService } from '../../ca/issuance-service.js';
import { HttpRequestError } from '../../errors.js';
import type { InjectionSettings } from '../../inject/pod-injection.js';
import type { Logger } from '../../log.js';
import type { CaMetrics } from '../metrics.js';
import { toPublicError } from '../status.js';
import { bundleRoutes, type BundleInfo } from './bundle-routes.js';
import { certificateRoutes } from './certificate-routes.js';
import { healthRoutes, type ReadinessCheck } from './health-routes.js';
import { injectionRoutes } from './injection-routes.js';
import { jwtSvidRoutes } from './jwt-svid-routes.js';

export interface HttpAppDeps {
  readonly issuance: IssuanceService;
  readonly bundle: () => BundleInfo;
  readonly logger: Logger;
  readonly metrics: CaMetrics;
  readonly ready: ReadinessCheck;
  /** Request body cap; a certificate request is a few KiB. */
  readonly bodyLimitBytes?: number;
  readonly requestTimeoutMs?: number;
  /** Serve the sidecar injection webhook (`POST /inject`) with these settings. */
  readonly injection?: InjectionSettings;
  /** Supplies the node server (e.g. HTTPS with a rotating certificate); plain HTTP otherwise. */
  readonly serverFactory?: FastifyServerFactory;
}

/** The CA's HTTP API. Builds, never listens: the caller decides where (and tests use inject). */
export function buildHttpApp(deps: HttpAppDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'http' }) as unknown as FastifyBaseLogger,
    // Each certificate request is logged once, by its handler, with its outcome.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.bodyLimitBytes ?? 64 * 1024,
    requestTimeout: deps.requestTimeoutMs ?? 15_000,
    return503OnClosing: true,
    // Reject unknown fields instead of silently dropping them: a client that believes it can
    // ask for a SPIFFE ID must hear that it cannot.
    ajv: { customOptions: { removeAdditional: false } },
    ...(deps.serverFactory ? { serverFactory: deps.serverFactory } : {}),
  });

  // One JSON error shape for everything, including framework-level failures.
  const send = (reply: FastifyReply, err: unknown): void => {
    const pub = toPublicError(err);
    void reply.status(pub.httpStatus).send({ error: { code: pub.code, message: pub.message } });
  };
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return send(reply, new HttpRequestError('ERR_REQUEST_TOO_LARGE', 'request body too large'));
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return send(reply, new HttpRequestError('ERR_MEDIA_TYPE_UNSUPPORTED', 'content-type must be application/json'));
    // Schema violations, malformed JSON and other framework-detected client errors.
    if (err.validation || (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500)) {
      return send(reply, new HttpRequestError('ERR_BAD_REQUEST', err.message));
    }
    if (toPublicError(err).code === 'ERR_INTERNAL') request.log.error({ err }, 'request failed');
    return send(reply, err);
  });
  app.setNotFoundHandler((request, reply) => send(reply, new HttpRequestError('ERR_NOT_FOUND', `no route for ${request.method} ${request.url}`)));

  void app.register(certificateRoutes, { issuance: deps.issuance, metrics: deps.metrics, bundle: deps.bundle });
  void app.register(jwtSvidRoutes, { issuance: deps.issuance });
  void app.register(bundleRoutes, { bundle: deps.bundle });
  void app.register(healthRoutes, { ready: deps.ready, metrics: deps.metrics });
  if (deps.injection) void app.register(injectionRoutes, { settings: deps.injection });
  return app;
}
