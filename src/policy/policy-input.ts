/**
 * Helpers for reading untyped policy objects (parsed YAML or JSON) into typed values while
 * collecting every problem with its location, so an operator fixes a file in one pass.
 *
 * Problems carry a structured path (`['spec', 'rules', 0, 'to']`); callers format it as
 * `spec.rules[0].to` or map it back to a line of the source file.
 */
import { ConfigError } from '../errors.js';

export type PathSegment = string | number;
export type ProblemPath = readonly PathSegment[];

export interface PolicyProblem {
  readonly path: ProblemPath;
  readonly message: string;
}

/** The outcome of reading one object: a value, or the problems that prevent one. */
export type ReadResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly problems: readonly PolicyProblem[] };

export class ProblemCollector {
  readonly problems: PolicyProblem[] = [];

  add(path: ProblemPath, message: string): void {
    this.problems.push({ path: [...path], message });
  }

  get empty(): boolean {
    return this.problems.length === 0;
  }
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `['spec', 'rules', 0, 'x-y']` → `spec.rules[0]["x-y"]`. */
export function formatProblemPath(path: ProblemPath): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (IDENTIFIER.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out === '' ? '(document)' : out;
}

export function formatProblem(problem: PolicyProblem): string {
  return `${formatProblemPath(problem.path)}: ${problem.message}`;
}

/** Throws the collected problems as one ConfigError, each prefixed with `subject`. */
export function throwProblems(subject: string, problems: readonly PolicyProblem[]): never {
  throw new ConfigError(problems.map((p) => `${subject}: ${formatProblem(p)}`));
}

export function isRecord(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `${typeof value} ${String(value)}`;
}

/** Reads an object-valued field; `undefined` (and a problem) when it is something else. */
export function readRecord(
  value: unknown,
  path: ProblemPath,
  problems: ProblemCollector,
): Readonly<Record<string, unknown>> | undefined {
  if (isRecord(value)) return value;
  problems.add(path, `must be an object, found ${describeValue(value)}`);
  return undefined;
}

/** Reads a list field; `undefined` (and a problem) when it is not a list. */
export function readList(value: unknown, path: ProblemPath, problems: ProblemCollector): readonly unknown[] | undefined {
  if (Array.isArray(value)) return value;
  problems.add(path, `must be a list, found ${describeValue(value)}`);
  return undefined;
}

/** A non-empty string; `undefined` (and a problem) otherwise. */
export function readString(value: unknown, path: ProblemPath, problems: ProblemCollector): string | undefined {
  if (typeof value === 'string' && value.length > 0) return value;
  problems.add(path, value === '' ? 'must not be empty' : `must be a non-empty string, found ${describeValue(value)}`);
  return undefined;
}

/**
 * A list of non-empty strings. Every bad element is reported; the result holds the good ones,
 * which is only used when no problem was reported at all.
 */
export function readStringList(value: unknown, path: ProblemPath, problems: ProblemCollector): readonly string[] {
  const list = readList(value, path, problems);
  if (list === undefined) return [];
  const out: string[] = [];
  list.forEach((item, i) => {
    const s = readString(item, [...path, i], problems);
    if (s !== undefined) out.push(s);
  });
  return out;
}

/** A TCP port, written as a number or a decimal string (YAML users write both). */
export function readPort(value: unknown, path: ProblemPath, problems: ProblemCollector, min = 1): number | undefined {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text === 'string' && /^[0-9]{1,5}$/.test(text)) {
    const port = Number(text);
    if (port >= min && port <= 65535) return port;
  }
  problems.add(path, `must be a port number in ${min}..65535, found ${describeValue(value)}`);
  return undefined;
}

/**
 * Reports every key of `obj` that is neither in `known` nor in `rejected`. A key in `rejected`
 * is reported with its explanation: those are real fields of the upstream API that meshca
 * cannot enforce, and ignoring them would silently change what the policy means.
 */
export function checkKeys(
  obj: Readonly<Record<string, unknown>>,
  path: ProblemPath,
  problems: ProblemCollector,
  known: readonly string[],
  rejected: Readonly<Record<string, string>> = {},
): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const reason = Object.hasOwn(rejected, key) ? rejected[key] : undefined;
    if (reason !== undefined) {
      problems.add([...path, key], reason);
      continue;
    }
    const suggestion = suggestKey(key, [...known, ...Object.keys(rejected)]);
    problems.add([...path, key], `unknown field${suggestion === undefined ? '' : ` (did you mean "${suggestion}"?)`}`);
  }
}

function suggestKey(key: string, candidates: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    if (candidate.toLowerCase() === lower) return candidate;
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A Kubernetes namespace name (RFC 1123 label). */
export function isNamespaceName(s: string): boolean {
  return s.length <= 63 && DNS_LABEL.test(s);
}

/** A Kubernetes object name (RFC 1123 subdomain). */
export function isObjectName(s: string): boolean {
  return s.length <= 253 && DNS_SUBDOMAIN.test(s);
}

export interface ObjectMeta {
  readonly name: string;
  readonly namespace: string;
}

export interface ReadMetadataOptions {
  /** Namespace for objects whose metadata has none, as `kubectl apply -n` would supply. */
  readonly defaultNamespace?: string | undefined;
}

/** Reads `metadata.name` and `metadata.namespace`; other metadata is Kubernetes bookkeeping. */
export function readMetadata(
  value: unknown,
  problems: ProblemCollector,
  options: ReadMetadataOptions,
): ObjectMeta | undefined {
  if (value === undefined) {
    problems.add(['metadata'], 'is required (with name and namespace)');
    return undefined;
  }
  const meta = readRecord(value, ['metadata'], problems);
  if (meta === undefined) return undefined;
  let name: string | undefined;
  if (meta['name'] === undefined) problems.add(['metadata', 'name'], 'is required');
  else {
    name = readString(meta['name'], ['metadata', 'name'], problems);
    if (name !== undefined && !isObjectName(name)) {
      problems.add(['metadata', 'name'], `${JSON.stringify(name)} is not a valid Kubernetes object name (lowercase RFC 1123 subdomain)`);
      name = undefined;
    }
  }
  let namespace: string | undefined;
  if (meta['namespace'] === undefined) {
    namespace = options.defaultNamespace;
    if (namespace === undefined) {
      problems.add(['metadata', 'namespace'], 'is required: the namespace decides which workloads the policy applies to');
    }
  } else {
    namespace = readString(meta['namespace'], ['metadata', 'namespace'], problems);
    if (namespace !== undefined && !isNamespaceName(namespace)) {
      problems.add(['metadata', 'namespace'], `${JSON.stringify(namespace)} is not a valid Kubernetes namespace name (lowercase RFC 1123 label)`);
      namespace = undefined;
    }
  }
  return name === undefined || namespace === undefined ? undefined : { name, namespace };
}

/** `AuthorizationPolicy foo/bar`, using whatever metadata is readable. */
export function subjectOf(kind: string, obj: unknown): string {
  const meta = isRecord(obj) && isRecord(obj['metadata']) ? obj['metadata'] : {};
  const name = typeof meta['name'] === 'string' ? meta['name'] : undefined;
  const namespace = typeof meta['namespace'] === 'string' ? meta['namespace'] : undefined;
  if (name === undefined) return kind;
  return `${kind} ${namespace === undefined ? '' : `${namespace}/`}${name}`;
}

/** Freezes a parsed value and everything in it, so compiled engines can share it safely. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
