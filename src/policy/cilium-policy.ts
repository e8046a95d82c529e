/**
 * Cilium `CiliumNetworkPolicy` (cilium.io/v2): the ingress subset that an mTLS server can enforce
 * from the peer's certificate.
 *
 * Cilium identifies peers by pod labels; meshca only knows what the SPIFFE ID proves, namely
 * `spiffe://<td>/ns/<namespace>/sa/<service-account>`. So `fromEndpoints` may select only by
 * `io.kubernetes.pod.namespace` and `io.cilium.k8s.policy.serviceaccount`; a selector on any
 * other label (`app: frontend`) is rejected, because meshca could not check it and treating it
 * as "any pod" would widen the rule. As in Cilium, a selector that does not name a namespace
 * only selects peers in the policy's own namespace. Addresses (CIDRs, entities) are never used.
 *
 * L7 HTTP rules are RE2 regular expressions (Envoy, which enforces them for Cilium, uses RE2),
 * matched against the whole value, compiled with `re2js` so that matching stays linear in the
 * input whatever the pattern: `(a+)+$` cannot stall the server.
 */
import { RE2JS } from 're2js';
import type { ParsePolicyOptions } from './istio-policy.js';
import { readLabelSelector, type LabelRequirement, type LabelSelector } from './label-selector.js';
import {
  checkKeys,
  deepFreeze,
  describeValue,
  isRecord,
  ProblemCollector,
  type ProblemPath,
  readList,
  readMetadata,
  readPort,
  readRecord,
  readString,
  type ReadResult,
  subjectOf,
  throwProblems,
} from './policy-input.js';

export const CILIUM_NAMESPACE_LABEL = 'io.kubernetes.pod.namespace';
export const CILIUM_SERVICE_ACCOUNT_LABEL = 'io.cilium.k8s.policy.serviceaccount';

/** Longest regex accepted; RE2 is linear in the input, but its program grows with the pattern. */
export const MAX_REGEX_LENGTH = 4096;

export type CiliumProtocol = 'TCP' | 'UDP' | 'SCTP' | 'ANY';

export interface CiliumPort {
  readonly port: number;
  /** Inclusive end of a port range. */
  readonly endPort?: number;
  readonly protocol: CiliumProtocol;
}

/** A header that must be present, and equal `value` when one is given. Names are lowercase. */
export interface CiliumHeaderMatch {
  readonly name: string;
  readonly value?: string;
}

/** All present fields must match; regexes match the whole value. */
export interface CiliumHttpRule {
  readonly method?: string;
  readonly path?: string;
  readonly host?: string;
  readonly headers?: readonly CiliumHeaderMatch[];
}

export interface CiliumPortRule {
  readonly ports: readonly CiliumPort[];
  /** Absent: any HTTP request on these ports (an L4-only rule). Never empty. */
  readonly http?: readonly CiliumHttpRule[];
}

export interface CiliumIngressRule {
  /**
   * Absent: any peer, as in Cilium (no L3 constraint). Present (never empty): one selector
   * must match. Keys are the bare label names; each selector already carries
   * the implicit "same namespace as the policy" requirement when it named no namespace.
   */
  readonly fromEndpoints?: readonly LabelSelector[];
  /** Absent: any port and request. Never empty. */
  readonly toPorts?: readonly CiliumPortRule[];
}

export interface CiliumNetworkPolicy {
  readonly kind: 'CiliumNetworkPolicy';
  readonly apiVersion: 'cilium.io/v2';
  readonly name: string;
  readonly namespace: string;
  /** Selects workloads in the policy's namespace; `{}` selects all of them. */
  readonly endpointSelector: LabelSelector;
  readonly ingress: readonly CiliumIngressRule[];
  /** L3/L4 deny rules, evaluated before any allow. */
  readonly ingressDeny: readonly CiliumIngressRule[];
  /** `spec.enableDefaultDeny.ingress`; when false the policy only adds allows. */
  readonly defaultDenyIngress: boolean;
}

const NOT_ENFORCEABLE = 'meshca cannot enforce it, and ignoring it would change what the policy allows';

const SPEC_REJECTED: Readonly<Record<string, string>> = {
  egress: 'egress rules restrict the selected workload\'s outgoing traffic, which an mTLS server cannot enforce; put them in a separate policy for Cilium',
  egressDeny: 'egress rules restrict the selected workload\'s outgoing traffic, which an mTLS server cannot enforce; put them in a separate policy for Cilium',
  nodeSelector: `host policies (nodeSelector) are not supported; ${NOT_ENFORCEABLE}`,
};

const ADDRESS_REASON = `address- and entity-based peers are not supported (identity comes from the peer certificate, never an address); ${NOT_ENFORCEABLE}`;
const INGRESS_REJECTED: Readonly<Record<string, string>> = {
  fromCIDR: ADDRESS_REASON,
  fromCIDRSet: ADDRESS_REASON,
  fromEntities: ADDRESS_REASON,
  fromGroups: ADDRESS_REASON,
  fromNodes: ADDRESS_REASON,
  fromRequires: `fromRequires is not supported; ${NOT_ENFORCEABLE}`,
  icmps: `ICMP rules are not supported; ${NOT_ENFORCEABLE}`,
  authentication: `Cilium mutual authentication settings are not supported; ${NOT_ENFORCEABLE}`,
};

const PORT_RULE_REJECTED: Readonly<Record<string, string>> = {
  serverNames: `TLS server names are not supported; ${NOT_ENFORCEABLE}`,
  terminatingTLS: `TLS interception is not supported; ${NOT_ENFORCEABLE}`,
  originatingTLS: `TLS interception is not supported; ${NOT_ENFORCEABLE}`,
  listener: `Envoy listeners are not supported; ${NOT_ENFORCEABLE}`,
};

const L7_REJECTED: Readonly<Record<string, string>> = {
  kafka: `only HTTP L7 rules are supported; ${NOT_ENFORCEABLE}`,
  dns: `only HTTP L7 rules are supported; ${NOT_ENFORCEABLE}`,
  l7proto: `only HTTP L7 rules are supported; ${NOT_ENFORCEABLE}`,
  l7: `only HTTP L7 rules are supported; ${NOT_ENFORCEABLE}`,
};

/** Reads and validates a CiliumNetworkPolicy object; never throws for bad input. */
export function readCiliumNetworkPolicy(obj: unknown, options: ParsePolicyOptions = {}): ReadResult<CiliumNetworkPolicy> {
  const problems = new ProblemCollector();
  if (!isRecord(obj)) {
    problems.add([], `must be an object, found ${describeValue(obj)}`);
    return { ok: false, problems: problems.problems };
  }
  checkKeys(obj, [], problems, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], {
    specs: 'a list of specs is not supported; write one CiliumNetworkPolicy per spec',
  });
  if (obj['apiVersion'] !== 'cilium.io/v2') problems.add(['apiVersion'], `must be cilium.io/v2, found ${describeValue(obj['apiVersion'])}`);
  if (obj['kind'] !== 'CiliumNetworkPolicy') problems.add(['kind'], `must be CiliumNetworkPolicy, found ${describeValue(obj['kind'])}`);
  const meta = readMetadata(obj['metadata'], problems, options);

  let endpointSelector: LabelSelector = { requirements: [] };
  const ingress: CiliumIngressRule[] = [];
  const ingressDeny: CiliumIngressRule[] = [];
  let defaultDenyIngress = true;
  const spec = obj['spec'] === undefined ? undefined : readRecord(obj['spec'], ['spec'], problems);
  if (obj['spec'] === undefined) problems.add(['spec'], 'is required');
  if (spec !== undefined) {
    checkKeys(spec, ['spec'], problems, ['endpointSelector', 'ingress', 'ingressDeny', 'enableDefaultDeny', 'description', 'labels'], SPEC_REJECTED);
    if (spec['endpointSelector'] === undefined) problems.add(['spec', 'endpointSelector'], 'is required (use `{}` to select every workload in the namespace)');
    else {
      endpointSelector = readLabelSelector(spec['endpointSelector'], ['spec', 'endpointSelector'], problems, {
        allowExpressions: true,
        normalizeKey: normalizeEndpointKey,
      });
    }
    const namespace = meta?.namespace;
    if (spec['ingress'] !== undefined && spec['ingress'] !== null) {
      const list = readList(spec['ingress'], ['spec', 'ingress'], problems) ?? [];
      list.forEach((rule, i) => {
        const parsed = readIngressRule(rule, ['spec', 'ingress', i], problems, namespace, false);
        if (parsed !== undefined) ingress.push(parsed);
      });
    }
    if (spec['ingressDeny'] !== undefined && spec['ingressDeny'] !== null) {
      const list = readList(spec['ingressDeny'], ['spec', 'ingressDeny'], problems) ?? [];
      list.forEach((rule, i) => {
        const parsed = readIngressRule(rule, ['spec', 'ingressDeny', i], problems, namespace, true);
        if (parsed !== undefined) ingressDeny.push(parsed);
      });
    }
    if (spec['enableDefaultDeny'] !== undefined) {
      const dd = readRecord(spec['enableDefaultDeny'], ['spec', 'enableDefaultDeny'], problems);
      if (dd !== undefined) {
        checkKeys(dd, ['spec', 'enableDefaultDeny'], problems, ['ingress', 'egress']);
        if (dd['ingress'] !== undefined) {
          if (typeof dd['ingress'] === 'boolean') defaultDenyIngress = dd['ingress'];
          else problems.add(['spec', 'enableDefaultDeny', 'ingress'], `must be true or false, found ${describeValue(dd['ingress'])}`);
        }
      }
    }
    if (problems.empty && ingress.length === 0 && ingressDeny.length === 0) {
      // Cilium: an omitted or empty `ingress` means the policy does not apply at ingress at all.
      problems.add(['spec'], 'has no ingress or ingressDeny rules, so it would have no effect on incoming requests');
    }
  }
  if (!problems.empty || meta === undefined) return { ok: false, problems: problems.problems };
  return {
    ok: true,
    value: deepFreeze({
      kind: 'CiliumNetworkPolicy',
      apiVersion: 'cilium.io/v2',
      name: meta.name,
      namespace: meta.namespace,
      endpointSelector,
      ingress,
      ingressDeny,
      defaultDenyIngress,
    }),
  };
}

/** Like `readCiliumNetworkPolicy`, but throws one `ConfigError` listing every problem. */
export function parseCiliumNetworkPolicy(obj: unknown, options: ParsePolicyOptions = {}): CiliumNetworkPolicy {
  const result = readCiliumNetworkPolicy(obj, options);
  if (result.ok) return result.value;
  throwProblems(subjectOf('CiliumNetworkPolicy', obj), result.problems);
}

/**
 * Compiles a Cilium regex into a whole-value matcher. Plain literals (`GET`, `/healthz`) become
 * string equality; everything else runs on RE2. Throws the re2js syntax error for bad input.
 */
export function compileFullMatch(source: string): (value: string) => boolean {
  if (!/[\\^$.|?*+()[\]{}]/.test(source)) return (value) => value === source;
  const re = RE2JS.compile(source);
  return (value) => re.testExact(value);
}

function stripLabelSource(raw: string): string | { readonly error: string } {
  const colon = raw.indexOf(':');
  if (colon === -1) return raw;
  const source = raw.slice(0, colon);
  if (source === 'k8s' || source === 'any') return raw.slice(colon + 1);
  return { error: `label source ${JSON.stringify(source)} is not supported (only k8s: and any:)` };
}

function normalizeEndpointKey(raw: string): string | { readonly error: string } {
  return stripLabelSource(raw);
}

function normalizePeerKey(raw: string): string | { readonly error: string } {
  const key = stripLabelSource(raw);
  if (typeof key !== 'string') return key;
  if (key === CILIUM_NAMESPACE_LABEL || key === CILIUM_SERVICE_ACCOUNT_LABEL) return key;
  return {
    error: `label ${JSON.stringify(raw)} cannot be verified from a peer certificate; fromEndpoints may only select by ${CILIUM_NAMESPACE_LABEL} and ${CILIUM_SERVICE_ACCOUNT_LABEL}`,
  };
}

function readIngressRule(
  value: unknown,
  path: ProblemPath,
  problems: ProblemCollector,
  policyNamespace: string | undefined,
  deny: boolean,
): CiliumIngressRule | undefined {
  const obj = readRecord(value, path, problems);
  if (obj === undefined) return undefined;
  checkKeys(obj, path, problems, ['fromEndpoints', 'toPorts'], INGRESS_REJECTED);
  const rule: { fromEndpoints?: LabelSelector[]; toPorts?: CiliumPortRule[] } = {};
  if (obj['fromEndpoints'] !== undefined && obj['fromEndpoints'] !== null) {
    const list = readList(obj['fromEndpoints'], [...path, 'fromEndpoints'], problems) ?? [];
    // Cilium reads an empty list as "no peer"; refuse it rather than guess which was meant.
    if (Array.isArray(obj['fromEndpoints']) && list.length === 0) {
      problems.add([...path, 'fromEndpoints'], 'must not be empty: it would select no peer (use `- {}` for every peer in the namespace, or omit it for any peer)');
    }
    rule.fromEndpoints = list.map((item, i) => {
      const selector = readLabelSelector(item, [...path, 'fromEndpoints', i], problems, { allowExpressions: true, normalizeKey: normalizePeerKey });
      return withImplicitNamespace(selector, policyNamespace);
    });
  }
  if (obj['toPorts'] !== undefined && obj['toPorts'] !== null) {
    const list = readList(obj['toPorts'], [...path, 'toPorts'], problems) ?? [];
    if (Array.isArray(obj['toPorts']) && list.length === 0) problems.add([...path, 'toPorts'], 'must not be empty (omit it to match any port)');
    rule.toPorts = [];
    list.forEach((item, i) => {
      const portRule = readPortRule(item, [...path, 'toPorts', i], problems, deny);
      if (portRule !== undefined) rule.toPorts!.push(portRule);
    });
  }
  return rule;
}

/** Cilium scopes a CiliumNetworkPolicy's peer selectors to its own namespace unless they name one. */
function withImplicitNamespace(selector: LabelSelector, namespace: string | undefined): LabelSelector {
  if (namespace === undefined || selector.requirements.some((r) => r.key === CILIUM_NAMESPACE_LABEL)) return selector;
  const implicit: LabelRequirement = { key: CILIUM_NAMESPACE_LABEL, operator: 'In', values: [namespace] };
  return { requirements: [...selector.requirements, implicit] };
}

function readPortRule(value: unknown, path: ProblemPath, problems: ProblemCollector, deny: boolean): CiliumPortRule | undefined {
  const obj = readRecord(value, path, problems);
  if (obj === undefined) return undefined;
  checkKeys(obj, path, problems, ['ports', 'rules'], PORT_RULE_REJECTED);
  const ports: CiliumPort[] = [];
  const list = obj['ports'] === undefined ? [] : (readList(obj['ports'], [...path, 'ports'], problems) ?? []);
  if (obj['ports'] === undefined || (Array.isArray(obj['ports']) && list.length === 0)) {
    problems.add([...path, 'ports'], 'must list at least one port');
  }
  list.forEach((item, i) => {
    const at = [...path, 'ports', i];
    const p = readRecord(item, at, problems);
    if (p === undefined) return;
    checkKeys(p, at, problems, ['port', 'endPort', 'protocol']);
    if (typeof p['port'] === 'string' && !/^[0-9]+$/.test(p['port'])) {
      problems.add([...at, 'port'], `named port ${JSON.stringify(p['port'])} cannot be resolved by meshca; use the port number`);
      return;
    }
    const port = readPort(p['port'], [...at, 'port'], problems);
    const endPort = p['endPort'] === undefined ? undefined : readPort(p['endPort'], [...at, 'endPort'], problems);
    if (port !== undefined && endPort !== undefined && endPort < port) problems.add([...at, 'endPort'], 'must not be less than port');
    const protocol = p['protocol'] === undefined ? 'ANY' : p['protocol'];
    if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP' && protocol !== 'ANY') {
      problems.add([...at, 'protocol'], `must be TCP, UDP, SCTP or ANY, found ${describeValue(protocol)}`);
      return;
    }
    if (port !== undefined) ports.push({ port, ...(endPort === undefined ? {} : { endPort }), protocol });
  });
  const rule: { ports: CiliumPort[]; http?: CiliumHttpRule[] } = { ports };
  if (obj['rules'] !== undefined && obj['rules'] !== null) {
    const rules = readRecord(obj['rules'], [...path, 'rules'], problems);
    if (rules !== undefined) {
      checkKeys(rules, [...path, 'rules'], problems, ['http'], L7_REJECTED);
      if (rules['http'] !== undefined && rules['http'] !== null) {
        if (deny) {
          problems.add([...path, 'rules', 'http'], 'deny rules cannot carry L7 rules (as in Cilium)');
        } else {
          const http = readList(rules['http'], [...path, 'rules', 'http'], problems) ?? [];
          if (Array.isArray(rules['http']) && http.length === 0) {
            problems.add([...path, 'rules', 'http'], 'must not be empty (omit `rules` to allow any request on these ports)');
          }
          rule.http = [];
          http.forEach((item, i) => {
            const h = readHttpRule(item, [...path, 'rules', 'http', i], problems);
            if (h !== undefined) rule.http!.push(h);
          });
        }
      }
    }
  }
  return rule;
}

function readHttpRule(value: unknown, path: ProblemPath, problems: ProblemCollector): CiliumHttpRule | undefined {
  const obj = readRecord(value, path, problems);
  if (obj === undefined) return undefined;
  checkKeys(obj, path, problems, ['method', 'path', 'host', 'headers', 'headerMatches']);
  const rule: { -readonly [K in keyof CiliumHttpRule]: CiliumHttpRule[K] } = {};
  for (const field of ['method', 'path', 'host'] as const) {
    const raw = obj[field];
    // Cilium: "If omitted or empty, all ... are allowed".
    if (raw === undefined || raw === null || raw === '') continue;
    const source = readString(raw, [...path, field], problems);
    if (source !== undefined && checkRegex(source, [...path, field], problems)) rule[field] = source;
  }
  const headers: CiliumHeaderMatch[] = [];
  if (obj['headers'] !== undefined && obj['headers'] !== null) {
    const list = readList(obj['headers'], [...path, 'headers'], problems) ?? [];
    list.forEach((item, i) => {
      const text = readString(item, [...path, 'headers', i], problems);
      if (text === undefined) return;
      // Cilium's format: "Name" (presence) or "Name value" / "Name: value" (exact value).
      const space = text.indexOf(' ');
      const name = space === -1 ? text : text.slice(0, space).replace(/:+$/, '');
      const headerValue = space === -1 ? undefined : text.slice(space + 1);
      if (!isHeaderName(name)) {
        problems.add([...path, 'headers', i], `${JSON.stringify(name)} is not a valid header name (write "Name" or "Name: value")`);
        return;
      }
      headers.push({ name: name.toLowerCase(), ...(headerValue === undefined ? {} : { value: headerValue }) });
    });
  }
  if (obj['headerMatches'] !== undefined && obj['headerMatches'] !== null) {
    const list = readList(obj['headerMatches'], [...path, 'headerMatches'], problems) ?? [];
    list.forEach((item, i) => {
      const at = [...path, 'headerMatches', i];
      const m = readRecord(item, at, problems);
      if (m === undefined) return;
      checkKeys(m, at, problems, ['name', 'value'], {
        secret: `header values from Kubernetes secrets are not supported; ${NOT_ENFORCEABLE}`,
        mismatch: `mismatch actions let a non-matching request through (or rewrite it); ${NOT_ENFORCEABLE}`,
      });
      const name = readString(m['name'], [...at, 'name'], problems);
      if (name !== undefined && !isHeaderName(name)) problems.add([...at, 'name'], `${JSON.stringify(name)} is not a valid header name`);
      let headerValue: string | undefined;
      if (m['value'] !== undefined && m['value'] !== '') {
        if (typeof m['value'] === 'string') headerValue = m['value'];
        else problems.add([...at, 'value'], `must be a string, found ${describeValue(m['value'])}`);
      }
      if (name !== undefined && isHeaderName(name)) headers.push({ name: name.toLowerCase(), ...(headerValue === undefined ? {} : { value: headerValue }) });
    });
  }
  if (headers.length > 0) rule.headers = headers;
  return rule;
}

function isHeaderName(name: string): boolean {
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name);
}

function checkRegex(source: string, path: ProblemPath, problems: ProblemCollector): boolean {
  if (source.length > MAX_REGEX_LENGTH) {
    problems.add(path, `regular expression is ${source.length} characters long, the maximum is ${MAX_REGEX_LENGTH}`);
    return false;
  }
  try {
    RE2JS.compile(source);
    return true;
  } catch (err) {
    problems.add(path, `invalid regular expression: ${err instanceof Error ? err.message : String(err)}`);
    return false;
  }
}
