import { fileURLToPath } from 'node:url';

/**
 * `proto/` of the meshca package (Istio's `ca.proto`, the SPIFFE Workload API): pass it as
 * `includeDirs` to `@grpc/proto-loader`. The same relative path from `src/` (tsx) and `dist/`,
 * so it resolves from a checkout and from an installed package, whatever the current directory.
 */
export const PROTO_DIR = fileURLToPath(new URL('../proto/', import.meta.url));
