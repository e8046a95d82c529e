import { IdentityMismatchError } from '../errors.js';
import { spiffeIdFromSegments, type SpiffeId } from '../spiffe/spiffe-id.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';

/** Who the caller is, as authentication established it (a Kubernetes service account). */
export interface WorkloadIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/**
 * The one mapping from an authenticated Kubernetes identity to a SPIFFE ID, Istio's form:
 * `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
 */
export function workloadIdFor(trustDomain: TrustDomain, identity: WorkloadIdentity): SpiffeId {
  try {
    return spiffeIdFromSegments(trustDomain, 'ns', identity.namespace, 'sa', identity.serviceAccount);
  } catch (err) {
    // Kubernetes names are a subset of SPIFFE path characters, so this means a forged claim.
    throw new IdentityMismatchError(
      `namespace ${JSON.stringify(identity.namespace)} / service account ${JSON.stringify(identity.serviceAccount)} cannot form a SPIFFE ID`,
      { rule: 'workload-id', cause: err },
    );
  }
}

/** The inverse, for an ID in Istio's form; undefined for any other shape. */
export function workloadIdentityOf(id: SpiffeId): WorkloadIdentity | undefined {
  const segments = id.segments();
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') return undefined;
  return { namespace: segments[1]!, serviceAccount: segments[3]! };
}
