import { loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import type { ProtoGrpcType as IstioCaProto } from '../../generated/istio-ca/ca.js';
import type { ProtoGrpcType as WorkloadProto } from '../../generated/workload/workload.js';
import { PROTO_DIR } from '../../proto-dir.js';

export { PROTO_DIR };

/** Must match the flags of `npm run gen:proto`, or the generated types lie. */
export const PROTO_LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

let istioCa: IstioCaProto | undefined;
let workload: WorkloadProto | undefined;

export function loadIstioCaProto(): IstioCaProto {
  istioCa ??= loadPackageDefinition(loadSync('istio/v1/auth/ca.proto', PROTO_LOADER_OPTIONS)) as unknown as IstioCaProto;
  return istioCa;
}

export function loadWorkloadProto(): WorkloadProto {
  workload ??= loadPackageDefinition(loadSync('spiffe/workload/workload.proto', PROTO_LOADER_OPTIONS)) as unknown as WorkloadProto;
  return workload;
}
