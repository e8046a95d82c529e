/**
 * The vocabulary shared by policy parsing and evaluation: the request an mTLS server asks about,
 * the decision it gets back, and the policy documents (Istio AuthorizationPolicy, Cilium
 * CiliumNetworkPolicy) it can be configured with, including `List` objects as `kubectl get -o
 * yaml` prints them.
 */
import type { SpiffeId } from '../spiffe/spiffe-id.js';
import { readCiliumNetworkPolicy, type CiliumNetworkPolicy } from './cilium-policy.js';
import { readIstioAuthorizationPolicy, type IstioAuthorizationPolicy, type ParsePolicyOptions } from './istio-policy.js';
import {
  describeValue,
  formatProblem,
  isRecord,
  type PolicyProblem,
  type ProblemPath,
  readList,
  ProblemCollector,
  subjectOf,
} from './policy-input.js';
import { ConfigError } from '../errors.js';

/** What the server knows about one request when it asks for a decision. */
export interface RequestAttributes {
  /** The verified peer SPIFFE ID; undefined when the connection carried no client identity. */
  readonly peer?: SpiffeId | undefined;
  readonly method: string;
  /** The request path without the query string. */
  readonly path: string;
  /**
   * The query string with its `?`, or undefined / `''` when there is none. Istio's `paths` never
   * see it; a Cilium `path` regex must match `path + query` in full, as Envoy's `:path` holds it.
   */
  readonly query?: string | undefined;
  /** The `Host` / `:authority` value as sent. */
  readonly host?: string | undefined;
  /** The local port the request arrived on. */
  readonly port?: number | undefined;
  /** Header lookup by lowercase name; undefined when the transport offers no headers. */
  readonly headers?: ((name: string) => string | undefined) | undefined;
}

export type PolicyDocument = IstioAuthorizationPolicy | CiliumNetworkPolicy;
export type PolicyKind = PolicyDocument['kind'];

/**
 * - `ALLOW` / `DENY`: a rule of `policy` decided;
 * - `DEFAULT_ALLOW`: no DENY rule matched and no ALLOW policy applies to the workload;
 * - `DEFAULT_DENY`: ALLOW policies apply but none of their rules matched.
 */
export type DecisionAction = 'ALLOW' | 'DENY' | 'DEFAULT_ALLOW' | 'DEFAULT_DENY';

/** An AUDIT rule that matched; auditing never changes `allowed`. */
export interface AuditMark {
  readonly policy: string;
  readonly kind: PolicyKind;
  readonly rule: number;
}

export interface Decision {
  readonly allowed: boolean;
  readonly action: DecisionAction;
  /** `<namespace>/<name>` of the deciding policy. */
  readonly policy?: string;
  readonly kind?: PolicyKind;
  /** Index of the deciding rule in the policy's `rules` (Istio) or `ingress` / `ingressDeny` (Cilium). */
  readonly rule?: number;
  /** One line for logs and the denial message. */
  readonly reason: string;
  readonly audit?: AuditMark;
}

/** A problem in one object of a policy document, with a human label for that object. */
export interface DocumentProblem extends PolicyProblem {
  /** `AuthorizationPolicy foo/httpbin`, or just the kind when the name is unreadable. */
  readonly subject: string;
}

export interface ReadPolicyDocumentsResult {
  readonly documents: readonly PolicyDocument[];
  readonly problems: readonly DocumentProblem[];
}

export const SUPPORTED_KINDS: readonly string[] = ['AuthorizationPolicy', 'CiliumNetworkPolicy', 'List'];

/**
 * Reads one Kubernetes object that is a policy or a list of policies (`kind: List` or
 * `AuthorizationPolicyList` / `CiliumNetworkPolicyList`). Never throws for bad input; problems
 * of list items carry paths starting with `items[i]`.
 */
export function readPolicyDocuments(obj: unknown, options: ParsePolicyOptions = {}): ReadPolicyDocumentsResult {
  const documents: PolicyDocument[] = [];
  const problems: DocumentProblem[] = [];
  const kind = isRecord(obj) ? obj['kind'] : undefined;
  if (typeof kind === 'string' && (kind === 'List' || kind.endsWith('List'))) {
    const collector = new ProblemCollector();
    const items = readList((obj as Record<string, unknown>)['items'], ['items'], collector) ?? [];
    for (const p of collector.problems) problems.push({ ...p, subject: kind });
    items.forEach((item, i) => {
      const itemKind = isRecord(item) ? item['kind'] : undefined;
      if (typeof itemKind === 'string' && itemKind.endsWith('List')) {
        problems.push({ path: ['items', i, 'kind'], message: 'lists cannot be nested', subject: kind });
        return;
      }
      const result = readPolicyDocuments(item, options);
      documents.push(...result.documents);
      for (const p of result.problems) problems.push({ ...p, path: ['items', i, ...p.path] });
    });
    return { documents, problems };
  }
  const result =
    kind === 'AuthorizationPolicy'
      ? readIstioAuthorizationPolicy(obj, options)
      : kind === 'CiliumNetworkPolicy'
        ? readCiliumNetworkPolicy(obj, options)
        : undefined;
  if (result === undefined) {
    const path: ProblemPath = isRecord(obj) ? ['kind'] : [];
    const message = isRecord(obj)
      ? `${describeValue(kind)} is not a supported kind (${SUPPORTED_KINDS.join(', ')})`
      : `must be a Kubernetes object, found ${describeValue(obj)}`;
    problems.push({ path, message, subject: 'document' });
  } else if (result.ok) {
    documents.push(result.value);
  } else {
    const subject = subjectOf(kind as string, obj);
    for (const p of result.problems) problems.push({ ...p, subject });
  }
  return { documents, problems };
}

/** Like `readPolicyDocuments`, but throws one `ConfigError` listing every problem. */
export function parsePolicyDocuments(obj: unknown, options: ParsePolicyOptions = {}): readonly PolicyDocument[] {
  const result = readPolicyDocuments(obj, options);
  if (result.problems.length > 0) {
    throw new ConfigError(result.problems.map((p) => `${p.subject}: ${formatProblem(p)}`));
  }
  return result.documents;
}

/** `<namespace>/<name>`, the id decisions report. */
export function policyId(policy: PolicyDocument): string {
  return `${policy.namespace}/${policy.name}`;
}
