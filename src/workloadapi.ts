/**
 * Public surface of `meshca/workloadapi` (go-spiffe's `workloadapi`): an X509Source fed by the
 * SPIFFE Workload API of any conforming agent (meshca's, SPIRE's), following its stream, for
 * `meshca/tls` servers and clients.
 */
export { createWorkloadApiX509Source } from './transport/grpc/workload-api-client.js';
export type { WorkloadApiSourceOptions } from './transport/grpc/workload-api-client.js';
