/** Public surface of `meshca/policy`: peer authorizers, workload IDs and Istio / Cilium authorization policies. */
export { authorizeAny, authorizeId, authorizeIf, authorizeMemberOf, authorizeOneOf } from './authorizer.js';
export type { Authorizer, AuthorizerRule } from './authorizer.js';
export { workloadIdFor, workloadIdentityOf } from './workload-id.js';
export type { WorkloadIdentity } from './workload-id.js';
export { parsePolicyDocuments, policyId, SUPPORTED_KINDS } from './authorization-policy.js';
export type {
  AuditMark,
  Decision,
  DecisionAction,
  PolicyDocument,
  PolicyKind,
  RequestAttributes,
} from './authorization-policy.js';
export { ISTIO_API_VERSIONS, parseIstioAuthorizationPolicy } from './istio-policy.js';
export type {
  IstioAction,
  IstioApiVersion,
  IstioAuthorizationPolicy,
  IstioCondition,
  IstioConditionAttribute,
  IstioOperation,
  IstioRule,
  IstioSource,
  ParsePolicyOptions,
} from './istio-policy.js';
export { parseCiliumNetworkPolicy } from './cilium-policy.js';
export type {
  CiliumHeaderMatch,
  CiliumHttpRule,
  CiliumIngressRule,
  CiliumNetworkPolicy,
  CiliumPort,
  CiliumPortRule,
  CiliumProtocol,
} from './cilium-policy.js';
export type { LabelOperator, LabelRequirement, LabelSelector, WorkloadLabels } from './label-selector.js';
export { compilePolicies, DEFAULT_ROOT_NAMESPACE } from './policy-engine.js';
export type { AppliedPolicy, CompilePoliciesOptions, IgnoredPolicy, PeerContext, PolicyEngine } from './policy-engine.js';
export { normalizeRequestPath } from './request-path.js';
export type { NormalizedPath } from './request-path.js';
