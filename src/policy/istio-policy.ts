/**
 * Istio `AuthorizationPolicy` (security.istio.io/v1 and v1beta1): parsing and validation.
 *
 * meshca enforces the identity-based subset: peer principals, namespaces and service accounts
 * from the mTLS certificate, and the HTTP operation (host, port, method, path, headers). Fields
 * it cannot enforce (JWT request principals, IP blocks, CUSTOM action, gateway targetRefs) are
 * rejected with a reason instead of being ignored: dropping a condition from an ALLOW rule
 * widens it, and dropping one from a DENY rule can make it deny things it never named, so the
 * only safe answer is to refuse the policy (fail closed).
 *
 * Validation follows istiod's (empty `from`/`to`, empty sources and operations, DENY without
 * rules, `when` without values are errors) and is a little stricter where Istio's behaviour is a
 * trap: lowercase methods (never match), `*` in the middle of a value (taken literally by
 * Istio), paths with a query string (never match), and empty lists.
 */
import { parseStringPattern } from './string-match.js';
import { readLabelSelector, type LabelSelector } from './label-selector.js';
import {
  checkKeys,
  deepFreeze,
  describeValue,
  isNamespaceName,
  isObjectName,
  isRecord,
  ProblemCollector,
  type ProblemPath,
  readList,
  readMetadata,
  readPort,
  readRecord,
  readString,
  type ReadMetadataOptions,
  type ReadResult,
  subjectOf,
  throwProblems,
} from './policy-input.js';

export const ISTIO_API_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'] as const;
export type IstioApiVersion = (typeof ISTIO_API_VERSIONS)[number];
export type IstioAction = 'ALLOW' | 'DENY' | 'AUDIT';

/** Fields are ANDed; an absent field matches anything. Values are validated Istio patterns. */
export interface IstioSource {
  /** `<trust-domain>/ns/<namespace>/sa/<service-account>`: the SPIFFE ID without `spiffe://`. */
  readonly principals?: readonly string[];
  readonly notPrincipals?: readonly string[];
  readonly namespaces?: readonly string[];
  readonly notNamespaces?: readonly string[];
  /** `<namespace>/<service-account>` in the local trust domain, exact only. */
  readonly serviceAccounts?: readonly string[];
  readonly notServiceAccounts?: readonly string[];
}

export interface IstioOperation {
  readonly hosts?: readonly string[];
  readonly notHosts?: readonly string[];
  readonly ports?: readonly number[];
  readonly notPorts?: readonly number[];
  readonly methods?: readonly string[];
  readonly notMethods?: readonly string[];
  readonly paths?: readonly string[];
  readonly notPaths?: readonly string[];
}

/** What a `when` key refers to. */
export type IstioConditionAttribute =
  | { readonly kind: 'source.principal' }
  | { readonly kind: 'source.namespace' }
  | { readonly kind: 'destination.port' }
  | { readonly kind: 'request.headers'; readonly header: string };

export interface IstioCondition {
  readonly key: string;
  readonly attribute: IstioConditionAttribute;
  readonly values?: readonly string[];
  readonly notValues?: readonly string[];
}

/** A rule matches when one `from`, one `to` and every `when` match; an empty rule matches everything. */
export interface IstioRule {
  readonly from?: readonly IstioSource[];
  readonly to?: readonly IstioOperation[];
  readonly when?: readonly IstioCondition[];
}

export interface IstioAuthorizationPolicy {
  readonly kind: 'AuthorizationPolicy';
  readonly apiVersion: IstioApiVersion;
  readonly name: string;
  readonly namespace: string;
  /** Absent: every workload in the namespace (or the mesh, for the root namespace). */
  readonly selector?: LabelSelector;
  readonly action: IstioAction;
  /** Empty: the policy matches nothing (for ALLOW: allow nothing, i.e. deny all). */
  readonly rules: readonly IstioRule[];
}

export type ParsePolicyOptions = ReadMetadataOptions;

const UNSAFE_TO_IGNORE = 'meshca cannot enforce it, and ignoring it would change what the rule matches';

const SPEC_REJECTED: Readonly<Record<string, string>> = {
  targetRef: 'targetRef attaches the policy to a Gateway or Service; meshca only applies selector- and namespace-scoped policies',
  targetRefs: 'targetRefs attach the policy to a Gateway or Service; meshca only applies selector- and namespace-scoped policies',
  provider: 'provider belongs to action CUSTOM, which meshca does not support',
};

const SOURCE_FIELDS = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts'] as const;
const JWT_REASON = `JWT request principals are not supported (meshca authorizes the mTLS peer); ${UNSAFE_TO_IGNORE}`;
const IP_REASON = `IP-based matching is not supported (identity comes from the peer certificate, never an address); ${UNSAFE_TO_IGNORE}`;
const SOURCE_REJECTED: Readonly<Record<string, string>> = {
  requestPrincipals: JWT_REASON,
  notRequestPrincipals: JWT_REASON,
  ipBlocks: IP_REASON,
  notIpBlocks: IP_REASON,
  remoteIpBlocks: IP_REASON,
  notRemoteIpBlocks: IP_REASON,
};

const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

const CONDITION_REJECTED: ReadonlyArray<readonly [RegExp, string]> = [
  [/^(source|remote|destination)\.ip$/, IP_REASON],
  [/^request\.auth\./, `JWT request authentication is not supported; ${UNSAFE_TO_IGNORE}`],
  [/^connection\.sni$/, `connection.sni is not available to the authorizer; ${UNSAFE_TO_IGNORE}`],
  [/^experimental\./, `experimental attributes are not supported; ${UNSAFE_TO_IGNORE}`],
];

/** Parses a `when` key; returns an error message for keys meshca does not enforce. */
export function parseConditionKey(key: string): IstioConditionAttribute | string {
  if (key === 'source.principal' || key === 'source.namespace' || key === 'destination.port') return { kind: key };
  const header = /^request\.headers\[(.*)\]$/.exec(key);
  if (header !== null) {
    const name = header[1]!;
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) return `${JSON.stringify(name)} is not a valid HTTP header name`;
    return { kind: 'request.headers', header: name.toLowerCase() };
  }
  for (const [pattern, reason] of CONDITION_REJECTED) if (pattern.test(key)) return reason;
  return 'unsupported key; meshca supports source.principal, source.namespace, destination.port and request.headers[<name>]';
}

/** Reads and validates an AuthorizationPolicy object; never throws for bad input. */
export function readIstioAuthorizationPolicy(obj: unknown, options: ParsePolicyOptions = {}): ReadResult<IstioAuthorizationPolicy> {
  const problems = new ProblemCollector();
  if (!isRecord(obj)) {
    problems.add([], `must be an object, found ${describeValue(obj)}`);
    return { ok: false, problems: problems.problems };
  }
  checkKeys(obj, [], problems, ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  const apiVersion = obj['apiVersion'];
  if (!ISTIO_API_VERSIONS.includes(apiVersion as IstioApiVersion)) {
    problems.add(['apiVersion'], `must be one of ${ISTIO_API_VERSIONS.join(', ')}, found ${describeValue(apiVersion)}`);
  }
  if (obj['kind'] !== 'AuthorizationPolicy') problems.add(['kind'], `must be AuthorizationPolicy, found ${describeValue(obj['kind'])}`);
  const meta = readMetadata(obj['metadata'], problems, options);
  checkDryRun(obj['metadata'], problems);

  // `spec: {}` and a missing spec are both the documented "allow nothing" policy.
  const spec = obj['spec'] === undefined || obj['spec'] === null ? {} : readRecord(obj['spec'], ['spec'], problems);
  let selector: LabelSelector | undefined;
  let action: IstioAction = 'ALLOW';
  const rules: IstioRule[] = [];
  if (spec !== undefined) {
    checkKeys(spec, ['spec'], problems, ['selector', 'action', 'rules'], SPEC_REJECTED);
    if (spec['selector'] !== undefined && spec['selector'] !== null) {
      selector = readLabelSelector(spec['selector'], ['spec', 'selector'], problems, { allowExpressions: false });
    }
    action = readAction(spec['action'], problems) ?? action;
    if (spec['rules'] !== undefined && spec['rules'] !== null) {
      const list = readList(spec['rules'], ['spec', 'rules'], problems) ?? [];
      list.forEach((rule, i) => {
        const parsed = readRule(rule, ['spec', 'rules', i], problems);
        if (parsed !== undefined) rules.push(parsed);
      });
    }
    if (action === 'DENY' && rules.length === 0 && problems.empty) {
      problems.add(['spec', 'rules'], 'a DENY policy without rules never matches; add a rule `{}` to deny every request');
    }
  }
  if (!problems.empty || meta === undefined) return { ok: false, problems: problems.problems };
  const policy: IstioAuthorizationPolicy = {
    kind: 'AuthorizationPolicy',
    apiVersion: apiVersion as IstioApiVersion,
    name: meta.name,
    namespace: meta.namespace,
    ...(selector === undefined ? {} : { selector }),
    action,
    rules,
  };
  return { ok: true, value: deepFreeze(policy) };
}

/** Like `readIstioAuthorizationPolicy`, but throws one `ConfigError` listing every problem. */
export function parseIstioAuthorizationPolicy(obj: unknown, options: ParsePolicyOptions = {}): IstioAuthorizationPolicy {
  const result = readIstioAuthorizationPolicy(obj, options);
  if (result.ok) return result.value;
  throwProblems(subjectOf('AuthorizationPolicy', obj), result.problems);
}

function checkDryRun(metadata: unknown, problems: ProblemCollector): void {
  if (!isRecord(metadata) || !isRecord(metadata['annotations'])) return;
  const dryRun = metadata['annotations']['istio.io/dry-run'];
  if (dryRun === 'true' || dryRun === true) {
    problems.add(
      ['metadata', 'annotations', 'istio.io/dry-run'],
      'dry-run policies are not supported: enforcing it would block traffic its author only meant to observe; remove the annotation to enforce the policy, or remove the policy',
    );
  }
}

function readAction(value: unknown, problems: ProblemCollector): IstioAction | undefined {
  if (value === undefined || value === null) return undefined;
  if (value === 'ALLOW' || value === 'DENY' || value === 'AUDIT') return value;
  if (value === 'CUSTOM') {
    problems.add(['spec', 'action'], 'CUSTOM delegates the decision to an external authorizer, which meshca does not support; the policy is rejected so its rules are not silently skipped');
    return undefined;
  }
  const hint = typeof value === 'string' && ['ALLOW', 'DENY', 'AUDIT'].includes(value.toUpperCase()) ? ` (actions are upper-case: ${value.toUpperCase()})` : '';
  problems.add(['spec', 'action'], `must be ALLOW, DENY or AUDIT, found ${describeValue(value)}${hint}`);
  return undefined;
}

function readRule(value: unknown, path: ProblemPath, problems: ProblemCollector): IstioRule | undefined {
  if (value === null) {
    problems.add(path, 'a rule must not be null (write `{}` for a rule that matches everything)');
    return undefined;
  }
  const obj = readRecord(value, path, problems);
  if (obj === undefined) return undefined;
  checkKeys(obj, path, problems, ['from', 'to', 'when']);
  const rule: { from?: IstioSource[]; to?: IstioOperation[]; when?: IstioCondition[] } = {};
  if (obj['from'] !== undefined) {
    rule.from = readWrapped(obj['from'], [...path, 'from'], 'source', problems, readSource);
  }
  if (obj['to'] !== undefined) {
    rule.to = readWrapped(obj['to'], [...path, 'to'], 'operation', problems, readOperation);
  }
  if (obj['when'] !== undefined) {
    const list = readList(obj['when'], [...path, 'when'], problems) ?? [];
    rule.when = [];
    list.forEach((item, i) => {
      const condition = readCondition(item, [...path, 'when', i], problems);
      if (condition !== undefined) rule.when!.push(condition);
    });
  }
  return rule;
}

/** `from: [{source: {...}}]` and `to: [{operation: {...}}]`: lists of single-key wrappers. */
function readWrapped<T>(
  value: unknown,
  path: ProblemPath,
  field: 'source' | 'operation',
  problems: ProblemCollector,
  read: (value: unknown, path: ProblemPath, problems: ProblemCollector) => T | undefined,
): T[] {
  const out: T[] = [];
  const list = readList(value, path, problems);
  if (list === undefined) return out;
  if (list.length === 0) {
    problems.add(path, `must not be empty (omit it to match any ${field})`);
    return out;
  }
  list.forEach((item, i) => {
    const wrapper = readRecord(item, [...path, i], problems);
    if (wrapper === undefined) return;
    checkKeys(wrapper, [...path, i], problems, [field]);
    if (wrapper[field] === undefined || wrapper[field] === null) {
      problems.add([...path, i, field], 'is required');
      return;
    }
    const parsed = read(wrapper[field], [...path, i, field], problems);
    if (parsed !== undefined) out.push(parsed);
  });
  return out;
}

function readSource(value: unknown, path: ProblemPath, problems: ProblemCollector): IstioSource | undefined {
  const obj = readRecord(value, path, problems);
  if (obj === undefined) return undefined;
  checkKeys(obj, path, problems, SOURCE_FIELDS, SOURCE_REJECTED);
  const source: Partial<Record<(typeof SOURCE_FIELDS)[number], readonly string[]>> = {};
  for (const field of SOURCE_FIELDS) {
    if (obj[field] === undefined) continue;
    const at = [...path, field];
    if (field === 'serviceAccounts' || field === 'notServiceAccounts') source[field] = readValues(obj[field], at, problems, checkServiceAccount);
    else if (field === 'principals' || field === 'notPrincipals') source[field] = readValues(obj[field], at, problems, checkPrincipalPattern);
    else source[field] = readValues(obj[field], at, problems, checkNamespacePattern);
  }
  const hasServiceAccounts = source.serviceAccounts !== undefined || source.notServiceAccounts !== undefined;
  const hasIdentity = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces'].some((f) => obj[f] !== undefined);
  if (hasServiceAccounts && hasIdentity) {
    problems.add(path, 'serviceAccounts cannot be combined with principals or namespaces (as in Istio)');
  }
  if (Object.keys(obj).length === 0) problems.add(path, 'must not be empty (omit `from` to match any source)');
  return source;
}

function readOperation(value: unknown, path: ProblemPath, problems: ProblemCollector): IstioOperation | undefined {
  const obj = readRecord(value, path, problems);
  if (obj === undefined) return undefined;
  checkKeys(obj, path, problems, OPERATION_FIELDS);
  const op: { -readonly [K in keyof IstioOperation]: IstioOperation[K] } = {};
  for (const field of OPERATION_FIELDS) {
    if (obj[field] === undefined) continue;
    const at = [...path, field];
    switch (field) {
      case 'ports':
      case 'notPorts':
        op[field] = readPorts(obj[field], at, problems);
        break;
      case 'hosts':
      case 'notHosts':
        op[field] = readValues(obj[field], at, problems, checkPattern);
        break;
      case 'methods':
      case 'notMethods':
        op[field] = readValues(obj[field], at, problems, checkMethodPattern);
        break;
      case 'paths':
      case 'notPaths':
        op[field] = readValues(obj[field], at, problems, checkPathPattern);
        break;
    }
  }
  if (Object.keys(obj).length === 0) problems.add(path, 'must not be empty (omit `to` to match any operation)');
  return op;
}

function readCondition(value: unknown, path: ProblemPath, problems: ProblemCollector): IstioCondition | undefined {
  const obj = readRecord(value, path, problems);
  if (obj === undefined) return undefined;
  checkKeys(obj, path, problems, ['key', 'values', 'notValues']);
  const key = readString(obj['key'], [...path, 'key'], problems);
  if (key === undefined) return undefined;
  const attribute = parseConditionKey(key);
  if (typeof attribute === 'string') {
    problems.add([...path, 'key'], `${JSON.stringify(key)}: ${attribute}`);
    return undefined;
  }
  if (obj['values'] === undefined && obj['notValues'] === undefined) {
    problems.add(path, `at least one of values or notValues must be set for key ${key}`);
    return undefined;
  }
  const check =
    attribute.kind === 'source.principal'
      ? checkPrincipalPattern
      : attribute.kind === 'source.namespace'
        ? checkNamespacePattern
        : attribute.kind === 'destination.port'
          ? checkPortValue
          : checkPattern;
  const condition: { key: string; attribute: IstioConditionAttribute; values?: readonly string[]; notValues?: readonly string[] } = { key, attribute };
  if (obj['values'] !== undefined) condition.values = readValues(obj['values'], [...path, 'values'], problems, check, true);
  if (obj['notValues'] !== undefined) condition.notValues = readValues(obj['notValues'], [...path, 'notValues'], problems, check, true);
  return condition;
}

type ValueCheck = (value: string) => string | undefined;

/** A non-empty list of strings, each passing `check` (which returns an error message or undefined). */
function readValues(value: unknown, path: ProblemPath, problems: ProblemCollector, check: ValueCheck, numbersAsStrings = false): string[] {
  const out: string[] = [];
  const list = readList(value, path, problems);
  if (list === undefined) return out;
  if (list.length === 0) problems.add(path, 'must not be empty (omit the field to match any value)');
  list.forEach((item, i) => {
    const raw = numbersAsStrings && typeof item === 'number' ? String(item) : item;
    const s = readString(raw, [...path, i], problems);
    if (s === undefined) return;
    const error = check(s);
    if (error === undefined) out.push(s);
    else problems.add([...path, i], error);
  });
  return out;
}

function readPorts(value: unknown, path: ProblemPath, problems: ProblemCollector): number[] {
  const out: number[] = [];
  const list = readList(value, path, problems);
  if (list === undefined) return out;
  if (list.length === 0) problems.add(path, 'must not be empty (omit the field to match any port)');
  list.forEach((item, i) => {
    const port = readPort(item, [...path, i], problems);
    if (port !== undefined) out.push(port);
  });
  return out;
}

function checkPattern(value: string): string | undefined {
  const pattern = parseStringPattern(value);
  return typeof pattern === 'string' ? pattern : undefined;
}

function checkPrincipalPattern(value: string): string | undefined {
  if (value.startsWith('spiffe://')) {
    return `principals are written without the scheme: ${JSON.stringify(value.slice('spiffe://'.length))}`;
  }
  return checkPattern(value);
}

function checkNamespacePattern(value: string): string | undefined {
  const pattern = parseStringPattern(value);
  if (typeof pattern === 'string') return pattern;
  if (pattern.kind === 'exact' && !isNamespaceName(value)) return `${JSON.stringify(value)} is not a valid namespace name`;
  return undefined;
}

function checkServiceAccount(value: string): string | undefined {
  const parts = value.split('/');
  if (parts.length !== 2 || !isNamespaceName(parts[0]!) || !isObjectName(parts[1]!)) {
    return `${JSON.stringify(value)} must be "<namespace>/<service-account>" with no wildcards`;
  }
  return undefined;
}

function checkMethodPattern(value: string): string | undefined {
  const error = checkPattern(value);
  if (error !== undefined) return error;
  // Methods are case-sensitive: a DENY on `delete` would never see `DELETE`.
  if (value !== value.toUpperCase()) return `HTTP methods are case-sensitive and upper-case; did you mean ${JSON.stringify(value.toUpperCase())}?`;
  return undefined;
}

function checkPathPattern(value: string): string | undefined {
  if (value.includes('{*}') || value.includes('{**}')) {
    return 'path templates ({*}, {**}) are not supported; use a prefix ("/api/*") or suffix ("*/info") match';
  }
  const pattern = parseStringPattern(value);
  if (typeof pattern === 'string') return pattern;
  if (value.includes('?') || value.includes('#')) return 'paths are matched without the query string or fragment, so this can never match';
  if ((pattern.kind === 'exact' || pattern.kind === 'prefix') && !pattern.value.startsWith('/')) {
    return 'must start with "/" (or "*" for a suffix match)';
  }
  return undefined;
}

function checkPortValue(value: string): string | undefined {
  if (/^[0-9]{1,5}$/.test(value) && Number(value) >= 1 && Number(value) <= 65535) return undefined;
  return 'must be a port number in 1..65535';
}
