/** Builders shared by the policy tests: policy objects as users write them, and requests. */
import { strict as assert } from 'node:assert';
import { ConfigError } from '../../../src/errors.js';
import type { RequestAttributes } from '../../../src/policy/index.js';
import { mustParseSpiffeId } from '../../../src/spiffe/index.js';

export const TD = 'cluster.local';

/** An AuthorizationPolicy object (not yet parsed) in namespace `foo` unless told otherwise. */
export function istio(name: string, spec: unknown, namespace = 'foo'): Record<string, unknown> {
  return { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace }, spec };
}

export function cilium(name: string, spec: unknown, namespace = 'foo'): Record<string, unknown> {
  return { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace }, spec };
}

export interface RequestSpec {
  /** A SPIFFE ID, or null for a request without a client identity. Default: default/sleep. */
  readonly peer?: string | null;
  readonly method?: string;
  readonly path?: string;
  /** null: the transport supplied no host. */
  readonly host?: string | null;
  readonly port?: number | null;
  /** null: the transport supplied no headers. */
  readonly headers?: Readonly<Record<string, string>> | null;
}

export const SLEEP = `spiffe://${TD}/ns/default/sa/sleep`;

export function request(spec: RequestSpec = {}): RequestAttributes {
  const headers = spec.headers === null ? undefined : lowerKeys(spec.headers ?? {});
  return {
    ...(spec.peer === null ? {} : { peer: mustParseSpiffeId(spec.peer ?? SLEEP) }),
    method: spec.method ?? 'GET',
    path: spec.path ?? '/',
    ...(spec.host === null ? {} : { host: spec.host ?? 'httpbin.foo' }),
    ...(spec.port === null ? {} : { port: spec.port ?? 8000 }),
    ...(headers === undefined ? {} : { headers: (name: string) => headers.get(name) }),
  };
}

function lowerKeys(headers: Readonly<Record<string, string>>): Map<string, string> {
  return new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

/** Asserts `fn` throws a ConfigError and returns its problems for further checks. */
export function configProblems(fn: () => unknown): readonly string[] {
  let problems: readonly string[] = [];
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_CONFIG_INVALID');
    problems = err.problems;
    return true;
  });
  return problems;
}

/** Asserts one problem contains every fragment. */
export function assertProblem(problems: readonly string[], ...fragments: readonly string[]): void {
  assert.ok(
    problems.some((p) => fragments.every((f) => p.includes(f))),
    `no problem contains ${fragments.map((f) => JSON.stringify(f)).join(' and ')}:\n  ${problems.join('\n  ')}`,
  );
}
