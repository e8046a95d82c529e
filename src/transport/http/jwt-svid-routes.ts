import type { FastifyPluginAsync } from 'fastify';
import type { IssuanceService } from '../../ca/issuance-service.js';
import { bearerToken } from '../bearer.js';
import { errorLogFields, toPublicError } from '../status.js';

interface JwtSvidRequestBody {
  readonly audience: string | readonly string[];
  /** Seconds; at most an hour. */
  readonly ttl?: number;
}

const bodySchema = {
  type: 'object',
  required: ['audience'],
  additionalProperties: false,
  properties: {
    audience: {
      anyOf: [
        { type: 'string', minLength: 1, maxLength: 256 },
        { type: 'array', minItems: 1, maxItems: 10, items: { type: 'string', minLength: 1, maxLength: 256 } },
      ],
    },
    ttl: { type: 'integer', minimum: 1, maximum: 3600 },
  },
} as const;

/** `POST /v1/jwtsvids`: a JWT-SVID for the caller's own identity (the agent's FetchJWTSVID backend). */
export const jwtSvidRoutes: FastifyPluginAsync<{ issuance: IssuanceService }> = async (app, { issuance }) => {
  app.post<{ Body: JwtSvidRequestBody }>('/v1/jwtsvids', { schema: { body: bodySchema } }, async (request, reply) => {
    try {
      const audience = typeof request.body.audience === 'string' ? [request.body.audience] : request.body.audience;
      const minted = await issuance.mintJwtSvid({
        token: bearerToken(request.headers.authorization),
        audience,
        ...(request.body.ttl === undefined ? {} : { ttlSeconds: request.body.ttl }),
      });
      request.log.info({ spiffeId: minted.spiffeId.toString(), audience, expiresAt: minted.expiresAt.toISOString(), result: 'issued' }, 'JWT-SVID issued');
      return { token: minted.token, spiffeId: minted.spiffeId.toString(), audience, expiresAt: minted.expiresAt.toISOString() };
    } catch (err) {
      const pub = toPublicError(err);
      request.log.warn({ result: 'denied', code: pub.code, ...errorLogFields(err) }, 'JWT-SVID request refused');
      return reply.status(pub.httpStatus).send({ error: { code: pub.code, message: pub.message } });
    }
  });
};
