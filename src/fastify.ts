/**
 * Public surface of `meshca/fastify`: the mTLS plugin for fastify 5. It puts the verified
 * SPIFFE ID of each request's client on `request.peerSpiffeId` and can authorize every request.
 * The server must come from `meshca/tls` (`createHttpsServer` as fastify's `serverFactory`).
 */
export { fastifyMtls } from './transport/http/fastify-mtls.js';
export type { FastifyMtlsOptions } from './transport/http/fastify-mtls.js';
