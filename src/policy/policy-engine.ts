/**
 * Compiles policy documents once into matchers and decides requests against them.
 *
 * Evaluation order (Istio's, which Cilium's model fits into): DENY rules first (any match
 * denies); then, if any ALLOW policy applies to the workload, the request must match one of
 * their rules or it is denied (`DEFAULT_DENY`); with no ALLOW policy it is allowed
 * (`DEFAULT_ALLOW`). AUDIT rules are recorded on the decision and never change it. CUSTOM is
 * rejected when parsing. Cilium `ingress` rules are ALLOW rules and `ingressDeny` rules DENY
 * rules; a Cilium policy with `enableDefaultDeny.ingress: false` adds allows without making
 * the workload deny-by-default. Among matching rules the first in the given policy order is
 * reported.
 *
 * Work is split by how often its inputs change:
 * - compile time: which policies apply to this workload (namespace, root namespace, selector)
 *   and every pattern, set and regex;
 * - once per peer (`engine.peer(id)`, cached): the principal / namespace / service-account
 *   strings and which rules the peer's identity satisfies, so a request only visits rules whose
 *   `from` part already matched;
 * - per request (`decideFor`): only operation and header checks, and when a peer has many
 *   candidate rules a trie over their exact and prefix paths skips those whose paths cannot
 *   match (see path-index.ts). Decisions are prebuilt frozen objects, so a request that no
 *   AUDIT rule matches allocates nothing beyond an optional lowercase copy of the host.
 *
 * Requests without a peer identity follow Istio: the principal and namespace are the empty
 * string, so `principals` / `namespaces` (and `*`) never match and `notPrincipals` /
 * `notNamespaces` always do. That makes Istio's documented "require mTLS" DENY rule
 * (`notPrincipals: ["*"]`) work, and it means an ALLOW rule written only with `not*` fields
 * also admits unauthenticated requests, exactly as it would in Istio.
 *
 * A request attribute the transport did not supply (host, port, headers) can neither satisfy
 * nor fail a condition on it; the policy's action decides, like Istio does for HTTP-only fields
 * on TCP traffic: a DENY (or AUDIT) condition counts as matched, an ALLOW condition as not
 * matched. Either way the result is the more restrictive one.
 */
import { ConfigError } from '../errors.js';
import type { SpiffeId } from '../spiffe/spiffe-id.js';
import { TrustDomain } from '../spiffe/trust-domain.js';
import {
  policyId,
  type AuditMark,
  type Decision,
  type PolicyDocument,
  type PolicyKind,
  type RequestAttributes,
} from './authorization-policy.js';
import {
  CILIUM_NAMESPACE_LABEL,
  compileFullMatch,
  type CiliumIngressRule,
  type CiliumNetworkPolicy,
  type CiliumPortRule,
} from './cilium-policy.js';
import type { IstioAuthorizationPolicy, IstioCondition, IstioOperation, IstioRule, IstioSource } from './istio-policy.js';
import { requirementHolds, selectorMatches, type LabelSelector, type WorkloadLabels } from './label-selector.js';
import { PathIndex, type PathGuard } from './path-index.js';
import { isNamespaceName } from './policy-input.js';
import { compileStringMatcher, parseStringPattern, type StringMatcher, type StringPattern } from './string-match.js';
import { workloadIdentityOf } from './workload-id.js';

export const DEFAULT_ROOT_NAMESPACE = 'istio-system';

export interface CompilePoliciesOptions {
  /** The local trust domain: only its peers have a namespace and service account. */
  readonly trustDomain: TrustDomain;
  /**
   * Labels of the protected workload, for `selector` / `endpointSelector`. For Cilium
   * selectors on the service account, include `io.cilium.k8s.policy.serviceaccount`; the
   * namespace label is added from `namespace`.
   */
  readonly workloadLabels?: WorkloadLabels;
  /**
   * Namespace of the protected workload: policies from other namespaces (except Istio's root
   * namespace) are ignored. When omitted, every given policy applies regardless of its
   * namespace, for a file that holds one workload's policies.
   */
  readonly namespace?: string;
  /** Istio's root namespace, whose policies apply mesh-wide. Default `istio-system`. */
  readonly rootNamespace?: string;
}

/** What the engine derived from a peer identity; build it once per connection with `engine.peer`. */
export interface PeerContext {
  readonly id: SpiffeId | undefined;
  /** The SPIFFE ID without `spiffe://`, Istio's principal form; `''` without a peer. */
  readonly principal: string;
  /** From `/ns/<namespace>/sa/<sa>` in the local trust domain; `''` otherwise. */
  readonly namespace: string;
  readonly serviceAccount: string;
}

export interface AppliedPolicy {
  readonly kind: PolicyKind;
  readonly policy: string;
  readonly action: 'ALLOW' | 'DENY' | 'AUDIT';
  readonly rules: number;
}

export interface IgnoredPolicy {
  readonly kind: PolicyKind;
  readonly policy: string;
  readonly reason: string;
}

export interface PolicyEngine {
  /** Decides one request. Never throws for well-typed attributes. */
  decide(req: RequestAttributes): Decision;
  /** Precomputes what the engine needs from a peer identity (cached per ID). */
  peer(id: SpiffeId | undefined): PeerContext;
  /** `decide` for a peer context from this engine's `peer`; `req.peer` is ignored. */
  decideFor(peer: PeerContext, req: RequestAttributes): Decision;
  /** Policies that apply to this workload, in evaluation order within each action. */
  readonly appliedPolicies: readonly AppliedPolicy[];
  /** Policies given but not applying here, with why (other namespace, selector mismatch). */
  readonly ignoredPolicies: readonly IgnoredPolicy[];
}

type RequestPredicate = (req: RequestAttributes, host: string | undefined) => boolean;
type PeerPredicate = (peer: EnginePeer) => boolean;

interface CompiledRule {
  readonly peerMatches: PeerPredicate;
  readonly requestMatches: RequestPredicate;
  /** A necessary condition on the path, for the path index; undefined when there is none. */
  readonly pathGuard: PathGuard | undefined;
  readonly decision: Decision;
  readonly audit: AuditMark | undefined;
}

interface CompiledPolicy {
  readonly applied: AppliedPolicy;
  /** For ALLOW: whether applying puts the workload into deny-by-default (Cilium can opt out). */
  readonly defaultDeny: boolean;
  readonly rules: readonly CompiledRule[];
}

const TRUE_REQUEST: RequestPredicate = () => true;
const TRUE_PEER: PeerPredicate = () => true;
const MAX_CACHED_PEERS = 1024;
/** Below this many candidate rules, running them beats walking the path index. */
const INDEX_THRESHOLD = 8;

/** The rules of one action that a peer's identity satisfies, ready for the path index. */
interface Candidates {
  /** Positions in the rule set, ascending (policy order). */
  readonly all: readonly number[];
  /** The candidates the path index cannot rule out (no path guard), ascending. */
  readonly unguarded: readonly number[];
  /** 1 at each candidate's position; only when the index will be consulted. */
  readonly member: Uint8Array | undefined;
}

const NO_CANDIDATES: Candidates = Object.freeze({ all: [], unguarded: [], member: undefined });
const ascending = (a: number, b: number): number => a - b;

/**
 * The rules of one action in evaluation order, with a path index consulted when a peer has
 * many candidate rules. A request then visits the candidates the index finds for its path plus
 * the unguarded ones, merged in ascending position, so the first match found is the first in
 * policy order whichever way it is found, and the cost follows the matches, not the rule count.
 */
class RuleSet {
  readonly rules: readonly CompiledRule[];
  readonly #index: PathIndex | undefined;
  readonly #stamps: Uint32Array;
  /** Scratch for the rules the index found; safe because only the outermost decide uses it. */
  readonly #found: number[] = [];
  #epoch = 0;

  constructor(rules: readonly CompiledRule[]) {
    this.rules = rules;
    const index = new PathIndex(rules.map((r) => r.pathGuard));
    this.#index = index.empty ? undefined : index;
    this.#stamps = new Uint32Array(this.#index === undefined ? 0 : rules.length);
  }

  candidatesFor(peer: EnginePeer): Candidates {
    const all: number[] = [];
    for (let i = 0; i < this.rules.length; i++) if (this.rules[i]!.peerMatches(peer)) all.push(i);
    if (all.length === 0) return NO_CANDIDATES;
    const index = this.#index;
    if (index === undefined || all.length < INDEX_THRESHOLD) return Object.freeze({ all, unguarded: all, member: undefined });
    const member = new Uint8Array(this.rules.length);
    for (const k of all) member[k] = 1;
    return Object.freeze({ all, unguarded: all.filter((k) => index.guarded[k] === 0), member });
  }

  /** The first candidate rule matching the request. `useIndex` is false for re-entrant calls. */
  firstMatch(candidates: Candidates, req: RequestAttributes, host: string | undefined, useIndex: boolean): CompiledRule | undefined {
    const rules = this.rules;
    const index = this.#index;
    const member = candidates.member;
    if (index === undefined || member === undefined || !useIndex) {
      const all = candidates.all;
      for (let i = 0; i < all.length; i++) {
        const rule = rules[all[i]!]!;
        if (rule.requestMatches(req, host)) return rule;
      }
      return undefined;
    }
    if (this.#epoch === 0xffffffff) {
      this.#stamps.fill(0);
      this.#epoch = 0;
    }
    const found = this.#found;
    found.length = 0;
    index.mark(req.path, this.#stamps, ++this.#epoch, found);
    // Keep this peer's candidates, in policy order (the index finds them in trie order).
    let n = 0;
    for (let i = 0; i < found.length; i++) {
      const k = found[i]!;
      if (member[k] === 1) found[n++] = k;
    }
    found.length = n;
    if (n > 1) found.sort(ascending);
    const unguarded = candidates.unguarded;
    let u = 0;
    let f = 0;
    while (u < unguarded.length || f < n) {
      const k = f >= n || (u < unguarded.length && unguarded[u]! < found[f]!) ? unguarded[u++]! : found[f++]!;
      const rule = rules[k]!;
      if (rule.requestMatches(req, host)) return rule;
    }
    return undefined;
  }
}

class EnginePeer implements PeerContext {
  deny: Candidates = NO_CANDIDATES;
  allow: Candidates = NO_CANDIDATES;
  audit: Candidates = NO_CANDIDATES;

  constructor(
    readonly engine: Engine,
    readonly id: SpiffeId | undefined,
    readonly principal: string,
    readonly namespace: string,
    readonly serviceAccount: string,
    /** `<namespace>/<service-account>`, Istio's serviceAccounts form; `''` when unknown. */
    readonly serviceAccountKey: string,
  ) {}
}

class Engine implements PolicyEngine {
  readonly appliedPolicies: readonly AppliedPolicy[];
  readonly ignoredPolicies: readonly IgnoredPolicy[];
  readonly #trustDomain: TrustDomain;
  readonly #deny: RuleSet;
  readonly #allow: RuleSet;
  readonly #audit: RuleSet;
  /** Nesting depth of decide: a header callback could call back in, and stamps are shared. */
  #depth = 0;
  readonly #lowercaseHost: boolean;
  readonly #noMatch: Decision;
  readonly #anonymous: EnginePeer;
  readonly #byObject = new WeakMap<SpiffeId, EnginePeer>();
  readonly #byString = new Map<string, EnginePeer>();

  constructor(trustDomain: TrustDomain, compiled: readonly CompiledPolicy[], ignored: readonly IgnoredPolicy[], lowercaseHost: boolean) {
    this.#trustDomain = trustDomain;
    const byAction = (action: AppliedPolicy['action']): CompiledPolicy[] => compiled.filter((p) => p.applied.action === action);
    this.#deny = new RuleSet(byAction('DENY').flatMap((p) => p.rules));
    this.#allow = new RuleSet(byAction('ALLOW').flatMap((p) => p.rules));
    this.#audit = new RuleSet(byAction('AUDIT').flatMap((p) => p.rules));
    this.appliedPolicies = Object.freeze([...byAction('DENY'), ...byAction('ALLOW'), ...byAction('AUDIT')].map((p) => p.applied));
    this.ignoredPolicies = Object.freeze([...ignored]);
    this.#lowercaseHost = lowercaseHost;
    const enforcing = byAction('ALLOW').filter((p) => p.defaultDeny).length;
    this.#noMatch = Object.freeze(
      enforcing === 0
        ? { allowed: true, action: 'DEFAULT_ALLOW', reason: 'no DENY rule matched and no ALLOW policy applies to this workload' }
        : {
            allowed: false,
            action: 'DEFAULT_DENY',
            reason: `no rule of the ${enforcing} ALLOW ${enforcing === 1 ? 'policy' : 'policies'} applying to this workload matched`,
          },
    );
    this.#anonymous = this.#buildPeer(undefined);
    Object.freeze(this);
  }

  decide(req: RequestAttributes): Decision {
    return this.#decide(this.#peer(req.peer), req);
  }

  decideFor(peer: PeerContext, req: RequestAttributes): Decision {
    if (!(peer instanceof EnginePeer) || peer.engine !== this) {
      throw new TypeError('peer must come from this engine\'s peer()');
    }
    return this.#decide(peer, req);
  }

  peer(id: SpiffeId | undefined): PeerContext {
    return this.#peer(id);
  }

  #peer(id: SpiffeId | undefined): EnginePeer {
    if (id === undefined) return this.#anonymous;
    let peer = this.#byObject.get(id);
    if (peer !== undefined) return peer;
    const key = id.toString();
    peer = this.#byString.get(key);
    if (peer === undefined) {
      peer = this.#buildPeer(id);
      // A crude bound: identities are few in a mesh, and rebuilding a peer is cheap.
      if (this.#byString.size >= MAX_CACHED_PEERS) this.#byString.clear();
      this.#byString.set(key, peer);
    }
    this.#byObject.set(id, peer);
    return peer;
  }

  #buildPeer(id: SpiffeId | undefined): EnginePeer {
    let principal = '';
    let namespace = '';
    let serviceAccount = '';
    if (id !== undefined) {
      principal = id.toString().slice('spiffe://'.length);
      // Only the local trust domain's CA vouches for Kubernetes namespaces and service accounts.
      const workload = id.memberOf(this.#trustDomain) ? workloadIdentityOf(id) : undefined;
      if (workload !== undefined) {
        namespace = workload.namespace;
        serviceAccount = workload.serviceAccount;
      }
    }
    const peer = new EnginePeer(this, id, principal, namespace, serviceAccount, namespace === '' ? '' : `${namespace}/${serviceAccount}`);
    peer.deny = this.#deny.candidatesFor(peer);
    peer.allow = this.#allow.candidatesFor(peer);
    peer.audit = this.#audit.candidatesFor(peer);
    return Object.freeze(peer);
  }

  #decide(peer: EnginePeer, req: RequestAttributes): Decision {
    const host = this.#lowercaseHost && typeof req.host === 'string' ? req.host.toLowerCase() : req.host;
    const useIndex = ++this.#depth === 1;
    try {
      const audit = peer.audit.all.length === 0 ? undefined : this.#audit.firstMatch(peer.audit, req, host, useIndex)?.audit;
      const decision =
        this.#deny.firstMatch(peer.deny, req, host, useIndex)?.decision ??
        this.#allow.firstMatch(peer.allow, req, host, useIndex)?.decision ??
        this.#noMatch;
      return audit === undefined ? decision : Object.freeze({ ...decision, audit });
    } finally {
      this.#depth--;
    }
  }
}

/**
 * Compiles parsed policies (from `parseIstioAuthorizationPolicy`, `parseCiliumNetworkPolicy`
 * or the policy file loader) for one workload. Throws `ConfigError` when a policy cannot be
 * scoped (a selector but no `workloadLabels`) or two policies share a kind and name.
 */
export function compilePolicies(policies: readonly PolicyDocument[], options: CompilePoliciesOptions): PolicyEngine {
  if (!Array.isArray(policies)) throw new TypeError('policies must be an array');
  if (options === null || typeof options !== 'object' || !(options.trustDomain instanceof TrustDomain)) {
    throw new TypeError('options.trustDomain must be a TrustDomain');
  }
  const rootNamespace = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const problems: string[] = [];
  for (const [field, value] of [['namespace', options.namespace], ['rootNamespace', rootNamespace]] as const) {
    if (value !== undefined && (typeof value !== 'string' || !isNamespaceName(value))) {
      problems.push(`${field}: ${JSON.stringify(value)} is not a valid namespace name`);
    }
  }
  const compiled: CompiledPolicy[] = [];
  const ignored: IgnoredPolicy[] = [];
  const seen = new Set<string>();
  let lowercaseHost = false;
  for (const policy of policies) {
    if (policy === null || typeof policy !== 'object' || (policy.kind !== 'AuthorizationPolicy' && policy.kind !== 'CiliumNetworkPolicy')) {
      throw new TypeError('policies must be parsed policy documents (parseIstioAuthorizationPolicy, parseCiliumNetworkPolicy)');
    }
    const id = policyId(policy);
    const subject = `${policy.kind} ${id}`;
    if (seen.has(`${policy.kind} ${id}`)) {
      problems.push(`${subject}: defined more than once`);
      continue;
    }
    seen.add(subject);
    const scope = scopeOf(policy, options, rootNamespace);
    if (scope.problem !== undefined) {
      problems.push(`${subject}: ${scope.problem}`);
      continue;
    }
    if (scope.ignored !== undefined) {
      ignored.push({ kind: policy.kind, policy: id, reason: scope.ignored });
      continue;
    }
    if (policy.kind === 'AuthorizationPolicy') {
      compiled.push(compileIstioPolicy(policy, id));
      lowercaseHost ||= usesHosts(policy);
    } else {
      compiled.push(...compileCiliumPolicy(policy, id));
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return new Engine(options.trustDomain, compiled, ignored, lowercaseHost);
}

function usesHosts(policy: IstioAuthorizationPolicy): boolean {
  return policy.rules.some((rule) => rule.to?.some((op) => op.hosts !== undefined || op.notHosts !== undefined) === true);
}

function scopeOf(
  policy: PolicyDocument,
  options: CompilePoliciesOptions,
  rootNamespace: string,
): { readonly ignored?: string; readonly problem?: string } {
  const inRoot = policy.kind === 'AuthorizationPolicy' && policy.namespace === rootNamespace;
  if (options.namespace !== undefined && policy.namespace !== options.namespace && !inRoot) {
    return { ignored: `it is in namespace ${policy.namespace}, the workload is in ${options.namespace}` };
  }
  const selector: LabelSelector | undefined = policy.kind === 'AuthorizationPolicy' ? policy.selector : policy.endpointSelector;
  if (selector === undefined || selector.requirements.length === 0) return {};
  const field = policy.kind === 'AuthorizationPolicy' ? 'spec.selector' : 'spec.endpointSelector';
  if (options.workloadLabels === undefined) {
    return { problem: `${field} selects workloads by label, but no workloadLabels were given, so meshca cannot tell whether it applies` };
  }
  // Cilium gives every pod its namespace as a label; the workload's is the policy's own.
  const labels =
    policy.kind === 'CiliumNetworkPolicy'
      ? { ...options.workloadLabels, [CILIUM_NAMESPACE_LABEL]: options.namespace ?? policy.namespace }
      : options.workloadLabels;
  if (!selectorMatches(selector, labels)) return { ignored: `${field} does not match the workload's labels` };
  return {};
}

// ---------------------------------------------------------------------------------------------
// Istio

function compileIstioPolicy(policy: IstioAuthorizationPolicy, id: string): CompiledPolicy {
  const missing = policy.action !== 'ALLOW';
  const rules = policy.rules.map((rule, index): CompiledRule => {
    const subject = `AuthorizationPolicy ${id}`;
    const decision: Decision = Object.freeze(
      policy.action === 'DENY'
        ? { allowed: false, action: 'DENY', policy: id, kind: 'AuthorizationPolicy', rule: index, reason: `denied by ${subject} rule ${index}` }
        : { allowed: true, action: 'ALLOW', policy: id, kind: 'AuthorizationPolicy', rule: index, reason: `allowed by ${subject} rule ${index}` },
    );
    return {
      peerMatches: compileIstioPeer(rule),
      requestMatches: compileIstioRequest(rule, missing),
      pathGuard: pathGuardOf(rule),
      decision,
      audit: policy.action === 'AUDIT' ? Object.freeze({ policy: id, kind: 'AuthorizationPolicy', rule: index }) : undefined,
    };
  });
  return {
    applied: Object.freeze({ kind: 'AuthorizationPolicy', policy: id, action: policy.action, rules: rules.length }),
    defaultDeny: true,
    rules,
  };
}

/** The exact paths and prefixes one of which a request must have for `rule` to match, if any. */
function pathGuardOf(rule: IstioRule): PathGuard | undefined {
  if (rule.to === undefined) return undefined;
  const exact: string[] = [];
  const prefixes: string[] = [];
  for (const op of rule.to) {
    if (op.paths === undefined) return undefined;
    for (const p of patterns(op.paths)) {
      if (p.kind === 'exact') exact.push(p.value);
      else if (p.kind === 'prefix') prefixes.push(p.value);
      else return undefined;
    }
  }
  return { exact, prefixes };
}

function patterns(values: readonly string[]): StringPattern[] {
  // Values were validated when parsed, so every one is a pattern.
  return values.map((v) => parseStringPattern(v) as StringPattern);
}

function matcherOf(values: readonly string[], caseInsensitive = false): StringMatcher {
  return compileStringMatcher(patterns(values), { caseInsensitive });
}

function compileIstioPeer(rule: IstioRule): PeerPredicate {
  const parts: PeerPredicate[] = [];
  if (rule.from !== undefined) parts.push(anyPeer(rule.from.map(compileIstioSource)));
  for (const condition of rule.when ?? []) {
    const kind = condition.attribute.kind;
    if (kind !== 'source.principal' && kind !== 'source.namespace') continue;
    const field = kind === 'source.principal' ? 'principal' : 'namespace';
    if (condition.values !== undefined) {
      const m = matcherOf(condition.values);
      parts.push((peer) => m(peer[field]));
    }
    if (condition.notValues !== undefined) {
      const m = matcherOf(condition.notValues);
      parts.push((peer) => !m(peer[field]));
    }
  }
  return allPeer(parts);
}

function compileIstioSource(source: IstioSource): PeerPredicate {
  const parts: PeerPredicate[] = [];
  const field = (values: readonly string[] | undefined, negate: boolean, pick: (peer: EnginePeer) => string): void => {
    if (values === undefined) return;
    const m = matcherOf(values);
    parts.push(negate ? (peer) => !m(pick(peer)) : (peer) => m(pick(peer)));
  };
  field(source.principals, false, (p) => p.principal);
  field(source.notPrincipals, true, (p) => p.principal);
  field(source.namespaces, false, (p) => p.namespace);
  field(source.notNamespaces, true, (p) => p.namespace);
  // Service accounts are exact `ns/sa` values (no wildcards), so the matcher is a Set lookup.
  field(source.serviceAccounts, false, (p) => p.serviceAccountKey);
  field(source.notServiceAccounts, true, (p) => p.serviceAccountKey);
  return allPeer(parts);
}

function compileIstioRequest(rule: IstioRule, missing: boolean): RequestPredicate {
  const parts: RequestPredicate[] = [];
  if (rule.to !== undefined) parts.push(anyRequest(rule.to.map((op) => compileIstioOperation(op, missing))));
  for (const condition of rule.when ?? []) {
    const predicate = compileIstioRequestCondition(condition, missing);
    if (predicate !== undefined) parts.push(predicate);
  }
  return allRequest(parts);
}

function compileIstioOperation(op: IstioOperation, missing: boolean): RequestPredicate {
  // Cheapest checks first: a number in a Set, then short strings, then the host.
  const parts: RequestPredicate[] = [];
  if (op.ports !== undefined) {
    const set = new Set(op.ports);
    parts.push((req) => (req.port === undefined ? missing : set.has(req.port)));
  }
  if (op.notPorts !== undefined) {
    const set = new Set(op.notPorts);
    parts.push((req) => (req.port === undefined ? missing : !set.has(req.port)));
  }
  if (op.methods !== undefined) {
    const m = matcherOf(op.methods);
    parts.push((req) => m(req.method));
  }
  if (op.notMethods !== undefined) {
    const m = matcherOf(op.notMethods);
    parts.push((req) => !m(req.method));
  }
  if (op.paths !== undefined) {
    const m = matcherOf(op.paths);
    parts.push((req) => m(req.path));
  }
  if (op.notPaths !== undefined) {
    const m = matcherOf(op.notPaths);
    parts.push((req) => !m(req.path));
  }
  if (op.hosts !== undefined) {
    const m = matcherOf(op.hosts, true);
    parts.push((_req, host) => (host === undefined ? missing : m(host)));
  }
  if (op.notHosts !== undefined) {
    const m = matcherOf(op.notHosts, true);
    parts.push((_req, host) => (host === undefined ? missing : !m(host)));
  }
  return allRequest(parts);
}

function compileIstioRequestCondition(condition: IstioCondition, missing: boolean): RequestPredicate | undefined {
  const attribute = condition.attribute;
  const parts: RequestPredicate[] = [];
  if (attribute.kind === 'destination.port') {
    for (const [values, negate] of [[condition.values, false], [condition.notValues, true]] as const) {
      if (values === undefined) continue;
      const set = new Set(values.map(Number));
      parts.push((req) => (req.port === undefined ? missing : set.has(req.port) !== negate));
    }
  } else if (attribute.kind === 'request.headers') {
    const name = attribute.header;
    if (condition.values !== undefined) {
      const m = matcherOf(condition.values);
      parts.push((req) => {
        if (req.headers === undefined) return missing;
        const value = req.headers(name);
        return value !== undefined && m(value);
      });
    }
    if (condition.notValues !== undefined) {
      const m = matcherOf(condition.notValues);
      parts.push((req) => {
        if (req.headers === undefined) return missing;
        const value = req.headers(name);
        return value === undefined || !m(value);
      });
    }
  } else {
    return undefined; // identity conditions are evaluated once per peer
  }
  return allRequest(parts);
}

// ---------------------------------------------------------------------------------------------
// Cilium

function compileCiliumPolicy(policy: CiliumNetworkPolicy, id: string): CompiledPolicy[] {
  const out: CompiledPolicy[] = [];
  const subject = `CiliumNetworkPolicy ${id}`;
  if (policy.ingressDeny.length > 0) {
    const rules = policy.ingressDeny.map((rule, index): CompiledRule => ({
      peerMatches: compileCiliumPeer(rule),
      requestMatches: compileCiliumRequest(rule, true),
      pathGuard: undefined,
      decision: Object.freeze({ allowed: false, action: 'DENY', policy: id, kind: 'CiliumNetworkPolicy', rule: index, reason: `denied by ${subject} ingressDeny[${index}]` }),
      audit: undefined,
    }));
    out.push({ applied: Object.freeze({ kind: 'CiliumNetworkPolicy', policy: id, action: 'DENY', rules: rules.length }), defaultDeny: false, rules });
  }
  if (policy.ingress.length > 0) {
    const rules = policy.ingress.map((rule, index): CompiledRule => ({
      peerMatches: compileCiliumPeer(rule),
      requestMatches: compileCiliumRequest(rule, false),
      pathGuard: undefined,
      decision: Object.freeze({ allowed: true, action: 'ALLOW', policy: id, kind: 'CiliumNetworkPolicy', rule: index, reason: `allowed by ${subject} ingress[${index}]` }),
      audit: undefined,
    }));
    out.push({
      applied: Object.freeze({ kind: 'CiliumNetworkPolicy', policy: id, action: 'ALLOW', rules: rules.length }),
      defaultDeny: policy.defaultDenyIngress,
      rules,
    });
  }
  return out;
}

function compileCiliumPeer(rule: CiliumIngressRule): PeerPredicate {
  if (rule.fromEndpoints === undefined) return TRUE_PEER;
  return anyPeer(
    rule.fromEndpoints.map((selector): PeerPredicate => (peer) => {
      // Only a verified Kubernetes identity has the labels these selectors talk about.
      if (peer.namespace === '') return false;
      return selector.requirements.every((r) =>
        requirementHolds(r, r.key === CILIUM_NAMESPACE_LABEL ? peer.namespace : peer.serviceAccount),
      );
    }),
  );
}

function compileCiliumRequest(rule: CiliumIngressRule, missing: boolean): RequestPredicate {
  if (rule.toPorts === undefined) return TRUE_REQUEST;
  return anyRequest(rule.toPorts.map((portRule) => compileCiliumPortRule(portRule, missing)));
}

function compileCiliumPortRule(rule: CiliumPortRule, missing: boolean): RequestPredicate {
  // HTTP always runs over TCP, so UDP- and SCTP-only entries never match a request.
  const ranges = rule.ports.filter((p) => p.protocol === 'TCP' || p.protocol === 'ANY').map((p) => [p.port, p.endPort ?? p.port] as const);
  const portMatches: RequestPredicate = (req) => {
    const port = req.port;
    if (port === undefined) return missing;
    for (let i = 0; i < ranges.length; i++) {
      const range = ranges[i]!;
      if (port >= range[0] && port <= range[1]) return true;
    }
    return false;
  };
  if (rule.http === undefined || rule.http.length === 0) return portMatches;
  const http = anyRequest(
    rule.http.map((h) => {
      const parts: RequestPredicate[] = [];
      if (h.method !== undefined) {
        const m = compileFullMatch(h.method);
        parts.push((req) => m(req.method));
      }
      if (h.path !== undefined) {
        const m = compileFullMatch(h.path);
        // Cilium hands the regex to Envoy as a full match on `:path`, query string included.
        parts.push((req) => m(req.query ? req.path + req.query : req.path));
      }
      if (h.host !== undefined) {
        const m = compileFullMatch(h.host);
        parts.push((req) => (req.host === undefined ? missing : m(req.host)));
      }
      for (const header of h.headers ?? []) {
        const { name, value: expected } = header;
        parts.push((req) => {
          if (req.headers === undefined) return missing;
          const value = req.headers(name);
          return value !== undefined && (expected === undefined || value === expected);
        });
      }
      return allRequest(parts);
    }),
  );
  return (req, host) => portMatches(req, host) && http(req, host);
}

// ---------------------------------------------------------------------------------------------
// Combinators, specialised for the common small arities so V8 can inline them.

function allRequest(parts: readonly RequestPredicate[]): RequestPredicate {
  if (parts.length === 0) return TRUE_REQUEST;
  if (parts.length === 1) return parts[0]!;
  if (parts.length === 2) {
    const [a, b] = parts as [RequestPredicate, RequestPredicate];
    return (req, host) => a(req, host) && b(req, host);
  }
  return (req, host) => {
    for (let i = 0; i < parts.length; i++) if (!parts[i]!(req, host)) return false;
    return true;
  };
}

function anyRequest(parts: readonly RequestPredicate[]): RequestPredicate {
  if (parts.length === 1) return parts[0]!;
  return (req, host) => {
    for (let i = 0; i < parts.length; i++) if (parts[i]!(req, host)) return true;
    return false;
  };
}

function allPeer(parts: readonly PeerPredicate[]): PeerPredicate {
  if (parts.length === 0) return TRUE_PEER;
  if (parts.length === 1) return parts[0]!;
  return (peer) => parts.every((p) => p(peer));
}

function anyPeer(parts: readonly PeerPredicate[]): PeerPredicate {
  if (parts.length === 1) return parts[0]!;
  return (peer) => parts.some((p) => p(peer));
}
