import type { X509Certificate } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import { formatSpiffeBundleJwks } from '../../spiffe/bundle-jwks.js';

export interface BundleInfo {
  readonly trustDomain: string;
  readonly authorities: readonly X509Certificate[];
  readonly rootsPem: string;
  readonly sequence: number;
  readonly refreshHintSeconds: number;
  /** Public JWKs of the JWT-SVID signing keys. */
  readonly jwtAuthorities: readonly Record<string, unknown>[];
}

/** Trust bundle endpoints: PEM for agents and operators, SPIFFE JWKS for federation. */
export const bundleRoutes: FastifyPluginAsync<{ bundle: () => BundleInfo }> = async (app, { bundle }) => {
  app.get('/v1/bundle', async (_request, reply) => {
    const info = bundle();
    return reply
      .header('content-type', 'application/x-pem-file')
      .header('x-spiffe-sequence', String(info.sequence))
      .header('x-spiffe-refresh-hint', String(info.refreshHintSeconds))
      .header('cache-control', `max-age=${info.refreshHintSeconds}`)
      .send(info.rootsPem);
  });

  app.get('/.well-known/spiffe-bundle', async (_request, reply) => {
    const info = bundle();
    return reply
      .header('content-type', 'application/json')
      .header('cache-control', `max-age=${info.refreshHintSeconds}`)
      .send(formatSpiffeBundleJwks(info.authorities, {
          sequence: info.sequence,
          refreshHintSeconds: info.refreshHintSeconds,
          jwtAuthorities: info.jwtAuthorities,
        }),);
  });
};
