import type { FastifyPluginAsync } from 'fastify';
import type { IssuanceService } from '../../ca/issuance-service.js';
import { parseDurationSeconds } from '../../config/duration.js';
import { ConfigError, RequestError, TtlError } from '../../errors.js';
import { bearerToken } from '../bearer.js';
import type { CaMetrics } from '../metrics.js';
import { errorLogFields, toPublicError } from '../status.js';
import type { BundleInfo } from './bundle-routes.js';

interface CertificateRequestBody {
  readonly csr: string;
  /** Seconds, or a duration such as "24h". */
  readonly ttl?: number | string;
}

const bodySchema = {
  type: 'object',
  required: ['csr'],
  additionalProperties: false,
  properties: {
    csr: { type: 'string', minLength: 1, maxLength: 32 * 1024 },
    ttl: { anyOf: [{ type: 'integer', minimum: 1 }, { type: 'string', minLength: 1, maxLength: 32 }] },
  },
} as const;

function ttlFrom(body: CertificateRequestBody): number | undefined {
  if (body.ttl === undefined) return undefined;
  if (typeof body.ttl === 'number') return body.ttl;
  try {
    return parseDurationSeconds(body.ttl, 'ttl');
  } catch (err) {
    throw new TtlError((err as ConfigError).problems[0] ?? 'invalid ttl', { rule: 'format' });
  }
}

/** `POST /v1/certificates`: the JSON twin of the gRPC CreateCertificate. */
export const certificateRoutes: FastifyPluginAsync<{ issuance: IssuanceService; metrics: CaMetrics; bundle: () => BundleInfo }> = async (
  app,
  { issuance, metrics, bundle },
) => {
  app.post<{ Body: CertificateRequestBody }>('/v1/certificates', { schema: { body: bodySchema } }, async (request, reply) => {
    const started = performance.now();
    const abort = new AbortController();
    // The response stream closing before it finished means the client is gone: stop work for it.
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) abort.abort(new RequestError('the client went away before the answer', { rule: 'client-gone' }));
    });
    try {
      const token = bearerToken(request.headers.authorization);
      const ttlSeconds = ttlFrom(request.body);
      const issued = await issuance.issue({
        token,
        csr: request.body.csr,
        signal: abort.signal,
        ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
      });
      metrics.observe('http', started);
      request.log.info(
        {
          spiffeId: issued.spiffeId.toString(),
          namespace: issued.caller.namespace,
          serviceAccount: issued.caller.serviceAccount,
          serial: issued.serial,
          notAfter: issued.notAfter.toISOString(),
          result: 'issued',
          latencyMs: Math.round((performance.now() - started) * 100) / 100,
        },
        'certificate issued',
      );
      return {
        certChain: issued.certChainPem,
        rootCert: bundle().rootsPem,
        spiffeId: issued.spiffeId.toString(),
        serial: issued.serial,
        expiresAt: issued.notAfter.toISOString(),
      };
    } catch (err) {
      const pub = toPublicError(err);
      metrics.observe('http', started, pub.code);
      const entry = { result: 'denied', code: pub.code, latencyMs: Math.round((performance.now() - started) * 100) / 100, ...errorLogFields(err) };
      if (pub.code === 'ERR_INTERNAL') request.log.error(entry, 'certificate request failed');
      else request.log.warn(entry, 'certificate request refused');
      return reply.status(pub.httpStatus).send({ error: { code: pub.code, message: pub.message } });
    }
  });
};
