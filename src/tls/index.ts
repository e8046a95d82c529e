/**
 * Public surface of `meshca/tls`: SPIFFE mTLS servers and clients on node:tls / node:https.
 * The fastify plugin lives in `transport/http/fastify-mtls.ts` (fastify stays in transport/) and
 * is exported as `meshca/fastify`.
 */
/** Authorizers themselves (authorizeId, authorizeMemberOf...) come from `meshca/policy`. */
export type { Authorizer } from '../policy/authorizer.js';
export { createStaticX509Source } from './x509-source.js';
export type { StaticX509Source, X509Source, X509SourceListener, X509SourceMaterial } from './x509-source.js';
export { findPeerIdentity, getPeerIdentity, getPeerSpiffeId } from './peer-identity.js';
export type { PeerConnection, PeerIdentity } from './peer-identity.js';
export type { MtlsVersion } from './secure-material.js';
export { createHttpsServer, createMtlsServerOptions, createServer, enableMtls, isMtlsEnabled } from './mtls-server.js';
export type {
  CreateMtlsHttpsServerOptions,
  CreateMtlsServerOptions,
  MtlsServerOptions,
  MtlsServerTlsOptions,
} from './mtls-server.js';
export { connect, createMtlsAgent, createMtlsClientOptions } from './mtls-client.js';
export type { MtlsAgentOptions, MtlsClientOptions, MtlsClientTlsOptions, MtlsConnectOptions } from './mtls-client.js';
export { createX509SourceFromFiles } from '../files/x509-source-files.js';
export type { FileX509Source, X509SourceFromFilesOptions } from '../files/x509-source-files.js';
