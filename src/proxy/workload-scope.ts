/**
 * Which policies apply is decided by the protected workload's own identity, never by flags
 * alone. The namespace and service account come from its SVID
 * (`spiffe://<td>/ns/<ns>/sa/<sa>`); pod labels given by the operator (`app`, `version`) may
 * add to what the SVID says, but never contradict it: a proxy told it is someone else refuses to
 * start rather than apply the wrong policies.
 */
import { ConfigError } from '../errors.js';
import { CILIUM_NAMESPACE_LABEL } from '../policy/cilium-policy.js';
import type { WorkloadLabels } from '../policy/label-selector.js';
import { workloadIdentityOf } from '../policy/workload-id.js';
import type { SpiffeId } from '../spiffe/spiffe-id.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';

export const CILIUM_SERVICE_ACCOUNT_LABEL = 'io.cilium.k8s.policy.serviceaccount';
/** Cilium's label source prefix for labels that come from Kubernetes. */
const K8S_SOURCE = 'k8s:';

export interface WorkloadScope {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The given pod labels plus those derived from the SVID, each also in its `k8s:` form. */
  readonly labels: WorkloadLabels;
}

export interface WorkloadScopeFlags {
  /** `--namespace`: must agree with the SVID. */
  readonly namespace?: string | undefined;
  /** `--workload-labels`: pod labels; the derived ones may be repeated, never changed. */
  readonly labels?: Readonly<Record<string, string>> | undefined;
}

/** Derives the scope of `self`, or throws `ConfigError` naming every contradiction. */
export function workloadScopeOf(self: SpiffeId, trustDomain: TrustDomain, flags: WorkloadScopeFlags = {}): WorkloadScope {
  const identity = self.trustDomain.equals(trustDomain) ? workloadIdentityOf(self) : undefined;
  if (identity === undefined) {
    throw new ConfigError([
      `the workload's SVID ${self.toString()} is not of the form spiffe://${trustDomain.name}/ns/<namespace>/sa/<service-account>, so meshca cannot tell which policies apply to it`,
    ], { rule: 'workload-scope' });
  }
  const derived: Record<string, string> = {
    [CILIUM_SERVICE_ACCOUNT_LABEL]: identity.serviceAccount,
    [CILIUM_NAMESPACE_LABEL]: identity.namespace,
  };
  const problems: string[] = [];
  if (flags.namespace !== undefined && flags.namespace !== identity.namespace) {
    problems.push(`--namespace ${flags.namespace} contradicts the workload's SVID ${self.toString()} (namespace ${identity.namespace})`);
  }
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(flags.labels ?? {})) {
    const bare = key.startsWith(K8S_SOURCE) ? key.slice(K8S_SOURCE.length) : key;
    const expected = derived[bare];
    if (expected !== undefined && expected !== value) {
      problems.push(`--workload-labels ${key}=${value} contradicts the workload's SVID ${self.toString()} (${bare}=${expected})`);
      continue;
    }
    if (labels[bare] !== undefined && labels[bare] !== value) {
      problems.push(`--workload-labels gives ${bare} twice, as ${labels[bare]} and ${value}`);
      continue;
    }
    labels[bare] = value;
  }
  if (problems.length > 0) throw new ConfigError(problems, { rule: 'workload-scope' });
  Object.assign(labels, derived);
  for (const [key, value] of Object.entries(labels)) labels[`${K8S_SOURCE}${key}`] = value;
  return Object.freeze({ namespace: identity.namespace, serviceAccount: identity.serviceAccount, labels: Object.freeze(labels) });
}

/** The part of a compiled engine that says what applied. */
export interface PolicyScopeReport {
  readonly appliedPolicies: readonly unknown[];
  readonly ignoredPolicies: readonly { readonly kind: string; readonly policy: string; readonly reason: string }[];
}

/**
 * Fails closed on a policy file that says nothing about this workload: with no applicable
 * policy Istio's semantics would allow every peer, which for a per-workload file is almost
 * always a mistake (a wrong namespace, a label typo). `meshWide` is the operator's explicit
 * opt-in to those semantics, for one file shared by the whole mesh.
 */
export function requireApplicablePolicy(engine: PolicyScopeReport, source: string, self: SpiffeId, meshWide: boolean): void {
  if (meshWide || engine.appliedPolicies.length > 0) return;
  const why = engine.ignoredPolicies.map((p) => `${p.kind} ${p.policy}: ${p.reason}`);
  throw new ConfigError(
    [
      `no policy in ${source} applies to ${self.toString()}${why.length === 0 ? ' (the file holds no policy)' : ''}; without one every peer would be allowed (pass --mesh-wide-policy if that is meant)`,
      ...why,
    ],
    { rule: 'policy-not-applicable' },
  );
}
