/** Public surface of `meshca/spiffe`: SPIFFE IDs, trust domains, X.509 bundles and X509-SVIDs. */
export { TrustDomain, parseTrustDomain } from './trust-domain.js';
export { SpiffeId, parseSpiffeId, mustParseSpiffeId, isSpiffeId, spiffeIdFromSegments } from './spiffe-id.js';
export type { SpiffeIdRule } from './spiffe-id.js';
export { X509Bundle, X509BundleSet, parseX509BundlePem } from './x509-bundle.js';
export type { X509BundleSource } from './x509-bundle.js';
export {
  MAX_X509_SVID_PATH_LENGTH,
  createStaticX509SvidSource,
  parseCertificatesPem,
  parseX509Svid,
  verifyX509Svid,
} from './x509-svid.js';
export type {
  VerifyX509SvidOptions,
  VerifyX509SvidResult,
  X509Svid,
  X509SvidRule,
  X509SvidSource,
} from './x509-svid.js';
