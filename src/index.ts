/**
 * meshca's public library surface. Subpaths: `meshca/spiffe`, `meshca/policy`, `meshca/tls`,
 * `meshca/fastify`, `meshca/workloadapi`, `meshca/errors`. The CA, the agent, Kubernetes
 * adapters and the CLI are not part of it.
 */
export * from './spiffe/index.js';
export * from './errors.js';
export type { Clock, TimerHandle } from './clock.js';
export { systemClock } from './clock.js';
export { PROTO_DIR } from './proto-dir.js';
export type { KeyKind } from './pki/algorithms.js';
export { KEY_KINDS } from './pki/algorithms.js';
export { generateKey, exportPrivateKeyPem } from './pki/keys.js';
export { createCsr, parseCsr, verifyCsrSignature, checkCsrKey } from './pki/csr.js';
export type { Csr, CreateCsrOptions, RequestedSan } from './pki/csr.js';
export { workloadIdFor, workloadIdentityOf } from './policy/workload-id.js';
export type { WorkloadIdentity } from './policy/workload-id.js';
// Policy files: YAML with Istio AuthorizationPolicy / CiliumNetworkPolicy documents, for `meshca/policy`.
export { loadPolicyFile, parsePolicyYaml } from './files/policy-file.js';
export type { LoadedPolicies, LoadPolicyFileOptions } from './files/policy-file.js';
