import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import {
  compilePolicies,
  parseIstioAuthorizationPolicy,
  type DecisionAction,
  type WorkloadLabels,
} from '../../../src/policy/index.js';
import { parseStringPattern } from '../../../src/policy/string-match.js';
import { parseTrustDomain } from '../../../src/spiffe/index.js';
import { assertProblem, configProblems, istio, request, TD, type RequestSpec } from './policy-fixtures.js';

interface Row {
  readonly name: string;
  /** Unparsed AuthorizationPolicy objects; `allow(spec)` etc. build the common ones. */
  readonly policies: readonly Record<string, unknown>[];
  readonly request?: RequestSpec;
  readonly workloadLabels?: WorkloadLabels;
  readonly allowed: boolean;
  readonly action: DecisionAction;
  /** `<namespace>/<name>` of the deciding policy, when one decides. */
  readonly policy?: string;
  readonly audit?: string;
}

/** ALLOW policy `foo/p` with one rule. */
const allowRule = (rule: unknown): Record<string, unknown> => istio('p', { action: 'ALLOW', rules: [rule] });
const from = (source: unknown): unknown => ({ from: [{ source }] });
const to = (operation: unknown): unknown => ({ to: [{ operation }] });
const when = (key: string, values?: readonly string[], notValues?: readonly string[]): unknown => ({
  when: [{ key, ...(values === undefined ? {} : { values }), ...(notValues === undefined ? {} : { notValues }) }],
});

const ALLOWED = { allowed: true, action: 'ALLOW', policy: 'foo/p' } as const;
const NOT_ALLOWED = { allowed: false, action: 'DEFAULT_DENY' } as const;

// Each field x each match type, then evaluation order. The request default is GET / on
// httpbin.foo:8000 from spiffe://cluster.local/ns/default/sa/sleep (see policy-fixtures.ts).
const ROWS: readonly Row[] = [
  // source.principals
  { name: 'principals exact: match', policies: [allowRule(from({ principals: [`${TD}/ns/default/sa/sleep`] }))], ...ALLOWED },
  { name: 'principals exact: other SA', policies: [allowRule(from({ principals: [`${TD}/ns/default/sa/other`] }))], ...NOT_ALLOWED },
  { name: 'principals prefix: match', policies: [allowRule(from({ principals: [`${TD}/ns/default/*`] }))], ...ALLOWED },
  { name: 'principals prefix: other namespace', policies: [allowRule(from({ principals: [`${TD}/ns/prod/*`] }))], ...NOT_ALLOWED },
  { name: 'principals suffix: match', policies: [allowRule(from({ principals: ['*/sa/sleep'] }))], ...ALLOWED },
  { name: 'principals suffix: mismatch', policies: [allowRule(from({ principals: ['*/sa/curl'] }))], ...NOT_ALLOWED },
  { name: 'principals presence: authenticated', policies: [allowRule(from({ principals: ['*'] }))], ...ALLOWED },
  { name: 'principals presence: no peer identity', policies: [allowRule(from({ principals: ['*'] }))], request: { peer: null }, ...NOT_ALLOWED },
  { name: 'principals exact: no peer identity', policies: [allowRule(from({ principals: [`${TD}/ns/default/sa/sleep`] }))], request: { peer: null }, ...NOT_ALLOWED },
  { name: 'principals name the trust domain: foreign peer matches its own principal', policies: [allowRule(from({ principals: ['other.example/ns/default/sa/sleep'] }))], request: { peer: 'spiffe://other.example/ns/default/sa/sleep' }, ...ALLOWED },
  { name: 'principals of one of several values', policies: [allowRule(from({ principals: [`${TD}/ns/x/sa/y`, `${TD}/ns/default/sa/sleep`] }))], ...ALLOWED },
  // source.notPrincipals
  { name: 'notPrincipals exact: listed peer', policies: [allowRule(from({ notPrincipals: [`${TD}/ns/default/sa/sleep`] }))], ...NOT_ALLOWED },
  { name: 'notPrincipals exact: other peer', policies: [allowRule(from({ notPrincipals: [`${TD}/ns/default/sa/other`] }))], ...ALLOWED },
  { name: 'notPrincipals prefix: listed namespace', policies: [allowRule(from({ notPrincipals: [`${TD}/ns/default/*`] }))], ...NOT_ALLOWED },
  { name: 'notPrincipals suffix: other SA', policies: [allowRule(from({ notPrincipals: ['*/sa/curl'] }))], ...ALLOWED },
  { name: 'notPrincipals presence: no peer identity matches (Istio)', policies: [allowRule(from({ notPrincipals: ['*'] }))], request: { peer: null }, ...ALLOWED },
  { name: 'notPrincipals presence: authenticated peer', policies: [allowRule(from({ notPrincipals: ['*'] }))], ...NOT_ALLOWED },
  // source.namespaces
  { name: 'namespaces exact: match', policies: [allowRule(from({ namespaces: ['default'] }))], ...ALLOWED },
  { name: 'namespaces exact: mismatch', policies: [allowRule(from({ namespaces: ['prod'] }))], ...NOT_ALLOWED },
  { name: 'namespaces prefix: match', policies: [allowRule(from({ namespaces: ['def*'] }))], ...ALLOWED },
  { name: 'namespaces suffix: match', policies: [allowRule(from({ namespaces: ['*ault'] }))], ...ALLOWED },
  { name: 'namespaces suffix: mismatch', policies: [allowRule(from({ namespaces: ['*prod'] }))], ...NOT_ALLOWED },
  { name: 'namespaces presence: authenticated', policies: [allowRule(from({ namespaces: ['*'] }))], ...ALLOWED },
  { name: 'namespaces presence: no peer identity', policies: [allowRule(from({ namespaces: ['*'] }))], request: { peer: null }, ...NOT_ALLOWED },
  { name: 'namespaces: only the local trust domain has namespaces', policies: [allowRule(from({ namespaces: ['default'] }))], request: { peer: 'spiffe://other.example/ns/default/sa/sleep' }, ...NOT_ALLOWED },
  { name: 'namespaces: a non-Kubernetes ID has no namespace', policies: [allowRule(from({ namespaces: ['*'] }))], request: { peer: `spiffe://${TD}/batch/job` }, ...NOT_ALLOWED },
  // source.notNamespaces
  { name: 'notNamespaces exact: listed', policies: [allowRule(from({ notNamespaces: ['default'] }))], ...NOT_ALLOWED },
  { name: 'notNamespaces exact: not listed', policies: [allowRule(from({ notNamespaces: ['prod'] }))], ...ALLOWED },
  { name: 'notNamespaces prefix: listed', policies: [allowRule(from({ notNamespaces: ['de*'] }))], ...NOT_ALLOWED },
  // source.serviceAccounts
  { name: 'serviceAccounts: match', policies: [allowRule(from({ serviceAccounts: ['default/sleep'] }))], ...ALLOWED },
  { name: 'serviceAccounts: mismatch', policies: [allowRule(from({ serviceAccounts: ['default/curl'] }))], ...NOT_ALLOWED },
  { name: 'notServiceAccounts: listed', policies: [allowRule(from({ notServiceAccounts: ['default/sleep'] }))], ...NOT_ALLOWED },
  // source fields are ANDed
  { name: 'source fields ANDed: namespace matches, principal does not', policies: [allowRule(from({ namespaces: ['default'], principals: ['*/sa/curl'] }))], ...NOT_ALLOWED },
  // operation.methods
  { name: 'methods exact: match', policies: [allowRule(to({ methods: ['GET', 'HEAD'] }))], ...ALLOWED },
  { name: 'methods exact: mismatch', policies: [allowRule(to({ methods: ['POST'] }))], ...NOT_ALLOWED },
  { name: 'methods prefix: match', policies: [allowRule(to({ methods: ['G*'] }))], ...ALLOWED },
  { name: 'methods suffix: match', policies: [allowRule(to({ methods: ['*ET'] }))], ...ALLOWED },
  { name: 'methods presence: match', policies: [allowRule(to({ methods: ['*'] }))], ...ALLOWED },
  { name: 'notMethods exact: listed', policies: [allowRule(to({ notMethods: ['GET'] }))], ...NOT_ALLOWED },
  { name: 'notMethods exact: not listed', policies: [allowRule(to({ notMethods: ['DELETE'] }))], ...ALLOWED },
  // operation.paths
  { name: 'paths exact: match', policies: [allowRule(to({ paths: ['/info'] }))], request: { path: '/info' }, ...ALLOWED },
  { name: 'paths exact: longer path', policies: [allowRule(to({ paths: ['/info'] }))], request: { path: '/info/x' }, ...NOT_ALLOWED },
  { name: 'paths prefix: match', policies: [allowRule(to({ paths: ['/api/*'] }))], request: { path: '/api/v1/users' }, ...ALLOWED },
  { name: 'paths prefix: matches the prefix itself', policies: [allowRule(to({ paths: ['/info*'] }))], request: { path: '/info' }, ...ALLOWED },
  { name: 'paths prefix: mismatch', policies: [allowRule(to({ paths: ['/api/*'] }))], request: { path: '/apix' }, ...NOT_ALLOWED },
  { name: 'paths suffix: match', policies: [allowRule(to({ paths: ['*/info'] }))], request: { path: '/v1/info' }, ...ALLOWED },
  { name: 'paths presence: match', policies: [allowRule(to({ paths: ['*'] }))], ...ALLOWED },
  { name: 'notPaths prefix: listed', policies: [allowRule(to({ notPaths: ['/admin*'] }))], request: { path: '/admin/users' }, ...NOT_ALLOWED },
  { name: 'notPaths prefix: not listed', policies: [allowRule(to({ notPaths: ['/admin*'] }))], request: { path: '/public' }, ...ALLOWED },
  // operation.ports
  { name: 'ports: match', policies: [allowRule(to({ ports: ['8000'] }))], ...ALLOWED },
  { name: 'ports: mismatch', policies: [allowRule(to({ ports: ['9000'] }))], ...NOT_ALLOWED },
  { name: 'ports: unknown port never satisfies an ALLOW', policies: [allowRule(to({ ports: ['8000'] }))], request: { port: null }, ...NOT_ALLOWED },
  { name: 'notPorts: listed', policies: [allowRule(to({ notPorts: ['8000'] }))], ...NOT_ALLOWED },
  { name: 'notPorts: not listed', policies: [allowRule(to({ notPorts: ['9000'] }))], ...ALLOWED },
  // operation.hosts (case-insensitive)
  { name: 'hosts exact: match ignoring case', policies: [allowRule(to({ hosts: ['HTTPBIN.foo'] }))], request: { host: 'httpbin.FOO' }, ...ALLOWED },
  { name: 'hosts exact: host with port is another value', policies: [allowRule(to({ hosts: ['httpbin.foo'] }))], request: { host: 'httpbin.foo:8000' }, ...NOT_ALLOWED },
  { name: 'hosts prefix: match', policies: [allowRule(to({ hosts: ['httpbin.*'] }))], ...ALLOWED },
  { name: 'hosts suffix: match', policies: [allowRule(to({ hosts: ['*.foo'] }))], ...ALLOWED },
  { name: 'hosts suffix: mismatch', policies: [allowRule(to({ hosts: ['*.example.com'] }))], ...NOT_ALLOWED },
  { name: 'hosts presence: match', policies: [allowRule(to({ hosts: ['*'] }))], ...ALLOWED },
  { name: 'hosts: unknown host never satisfies an ALLOW', policies: [allowRule(to({ hosts: ['*'] }))], request: { host: null }, ...NOT_ALLOWED },
  { name: 'notHosts: listed', policies: [allowRule(to({ notHosts: ['httpbin.foo'] }))], ...NOT_ALLOWED },
  { name: 'notHosts: not listed', policies: [allowRule(to({ notHosts: ['admin.foo'] }))], ...ALLOWED },
  // operation fields are ANDed, `to` items ORed, `from` items ORed
  { name: 'operation fields ANDed: method matches, path does not', policies: [allowRule(to({ methods: ['GET'], paths: ['/data'] }))], ...NOT_ALLOWED },
  { name: 'to items ORed: second operation matches', policies: [allowRule({ to: [{ operation: { methods: ['POST'] } }, { operation: { paths: ['/'] } }] })], ...ALLOWED },
  { name: 'from items ORed: second source matches', policies: [allowRule({ from: [{ source: { principals: ['*/sa/x'] } }, { source: { namespaces: ['default'] } }] })], ...ALLOWED },
  { name: 'rule ANDs from and to: from matches, to does not', policies: [allowRule({ ...(from({ namespaces: ['default'] }) as object), ...(to({ methods: ['POST'] }) as object) })], ...NOT_ALLOWED },
  // when
  { name: 'when source.principal: match', policies: [allowRule(when('source.principal', [`${TD}/ns/default/*`]))], ...ALLOWED },
  { name: 'when source.principal notValues: listed', policies: [allowRule(when('source.principal', undefined, ['*/sa/sleep']))], ...NOT_ALLOWED },
  { name: 'when source.namespace: match', policies: [allowRule(when('source.namespace', ['default']))], ...ALLOWED },
  { name: 'when source.namespace: mismatch', policies: [allowRule(when('source.namespace', ['prod']))], ...NOT_ALLOWED },
  { name: 'when source.namespace notValues: not listed', policies: [allowRule(when('source.namespace', undefined, ['prod']))], ...ALLOWED },
  { name: 'when request.headers exact: match', policies: [allowRule(when('request.headers[x-foo]', ['bar']))], request: { headers: { 'x-foo': 'bar' } }, ...ALLOWED },
  { name: 'when request.headers: header name is case-insensitive', policies: [allowRule(when('request.headers[X-Foo]', ['bar']))], request: { headers: { 'X-FOO': 'bar' } }, ...ALLOWED },
  { name: 'when request.headers: value is case-sensitive', policies: [allowRule(when('request.headers[x-foo]', ['bar']))], request: { headers: { 'x-foo': 'BAR' } }, ...NOT_ALLOWED },
  { name: 'when request.headers prefix: match', policies: [allowRule(when('request.headers[user-agent]', ['Mozilla/*']))], request: { headers: { 'user-agent': 'Mozilla/5.0' } }, ...ALLOWED },
  { name: 'when request.headers suffix: match', policies: [allowRule(when('request.headers[x-foo]', ['*-prod']))], request: { headers: { 'x-foo': 'eu-prod' } }, ...ALLOWED },
  { name: 'when request.headers presence: present', policies: [allowRule(when('request.headers[x-foo]', ['*']))], request: { headers: { 'x-foo': 'anything' } }, ...ALLOWED },
  { name: 'when request.headers presence: absent', policies: [allowRule(when('request.headers[x-foo]', ['*']))], request: { headers: {} }, ...NOT_ALLOWED },
  { name: 'when request.headers notValues: absent header matches', policies: [allowRule(when('request.headers[x-foo]', undefined, ['bar']))], request: { headers: {} }, ...ALLOWED },
  { name: 'when request.headers notValues: listed', policies: [allowRule(when('request.headers[x-foo]', undefined, ['bar']))], request: { headers: { 'x-foo': 'bar' } }, ...NOT_ALLOWED },
  { name: 'when request.headers: no headers from the transport never satisfies an ALLOW', policies: [allowRule(when('request.headers[x-foo]', undefined, ['bar']))], request: { headers: null }, ...NOT_ALLOWED },
  { name: 'when destination.port: match', policies: [allowRule(when('destination.port', ['80', '8000']))], ...ALLOWED },
  { name: 'when destination.port: mismatch', policies: [allowRule(when('destination.port', ['80']))], ...NOT_ALLOWED },
  { name: 'when destination.port notValues: listed', policies: [allowRule(when('destination.port', undefined, ['8000']))], ...NOT_ALLOWED },
  {
    name: 'when conditions are ANDed: one fails',
    policies: [allowRule({ when: [{ key: 'source.namespace', values: ['default'] }, { key: 'destination.port', values: ['80'] }] })],
    ...NOT_ALLOWED,
  },
  // evaluation order and scoping
  { name: 'no policies: allow', policies: [], allowed: true, action: 'DEFAULT_ALLOW' },
  { name: 'DENY matches before a matching ALLOW', policies: [istio('allow-all', { rules: [{}] }), istio('deny-get', { action: 'DENY', rules: [to({ methods: ['GET'] })] })], allowed: false, action: 'DENY', policy: 'foo/deny-get' },
  { name: 'DENY not matching and no ALLOW policy: allow', policies: [istio('deny-post', { action: 'DENY', rules: [to({ methods: ['POST'] })] })], allowed: true, action: 'DEFAULT_ALLOW' },
  { name: 'ALLOW policy applies but does not match: deny', policies: [istio('p', { rules: [to({ methods: ['POST'] })] })], ...NOT_ALLOWED },
  { name: 'any matching ALLOW policy allows', policies: [istio('a', { rules: [to({ methods: ['POST'] })] }), istio('b', { rules: [to({ methods: ['GET'] })] })], allowed: true, action: 'ALLOW', policy: 'foo/b' },
  { name: 'action defaults to ALLOW', policies: [istio('p', { rules: [to({ methods: ['GET'] })] })], ...ALLOWED },
  { name: 'empty spec is allow-nothing: deny all', policies: [istio('allow-nothing', {})], ...NOT_ALLOWED },
  { name: 'ALLOW with empty rules list: deny all', policies: [istio('allow-nothing', { rules: [] })], ...NOT_ALLOWED },
  { name: 'empty rule {} matches everything', policies: [istio('allow-all', { rules: [{}] })], request: { peer: null, method: 'DELETE' }, allowed: true, action: 'ALLOW', policy: 'foo/allow-all' },
  { name: 'DENY with empty rule {} denies everything', policies: [istio('deny-all', { action: 'DENY', rules: [{}] })], allowed: false, action: 'DENY', policy: 'foo/deny-all' },
  { name: 'DENY notPrincipals "*" rejects requests without identity (require mTLS)', policies: [istio('require-mtls', { action: 'DENY', rules: [from({ notPrincipals: ['*'] })] })], request: { peer: null }, allowed: false, action: 'DENY', policy: 'foo/require-mtls' },
  { name: 'DENY notPrincipals "*" lets authenticated peers through', policies: [istio('require-mtls', { action: 'DENY', rules: [from({ notPrincipals: ['*'] })] })], allowed: true, action: 'DEFAULT_ALLOW' },
  { name: 'DENY on a host the transport did not supply still denies', policies: [istio('deny-admin', { action: 'DENY', rules: [to({ hosts: ['admin.foo'] })] })], request: { host: null }, allowed: false, action: 'DENY', policy: 'foo/deny-admin' },
  { name: 'AUDIT alone does not change the decision', policies: [istio('audit-get', { action: 'AUDIT', rules: [to({ methods: ['GET'] })] })], allowed: true, action: 'DEFAULT_ALLOW', audit: 'foo/audit-get' },
  { name: 'AUDIT does not allow what ALLOW policies do not', policies: [istio('audit-all', { action: 'AUDIT', rules: [{}] }), istio('p', {})], allowed: false, action: 'DEFAULT_DENY', audit: 'foo/audit-all' },
  { name: 'AUDIT not matching leaves no mark', policies: [istio('audit-post', { action: 'AUDIT', rules: [to({ methods: ['POST'] })] })], allowed: true, action: 'DEFAULT_ALLOW' },
  { name: 'selector matching the workload applies the policy', policies: [istio('p', { selector: { matchLabels: { app: 'httpbin' } } })], workloadLabels: { app: 'httpbin', version: 'v1' }, ...NOT_ALLOWED },
  { name: 'selector not matching the workload: policy ignored', policies: [istio('p', { selector: { matchLabels: { app: 'productpage' } } })], workloadLabels: { app: 'httpbin' }, allowed: true, action: 'DEFAULT_ALLOW' },
  { name: 'root namespace policy applies to every namespace', policies: [istio('mesh-deny', { action: 'DENY', rules: [{}] }, 'istio-system')], allowed: false, action: 'DENY', policy: 'istio-system/mesh-deny' },
  { name: 'root namespace policy with a selector applies to matching workloads anywhere', policies: [istio('v1-only', { selector: { matchLabels: { version: 'v1' } } }, 'istio-system')], workloadLabels: { version: 'v1' }, ...NOT_ALLOWED },
  { name: 'policy from another namespace: ignored', policies: [istio('bar-deny', { action: 'DENY', rules: [{}] }, 'bar')], allowed: true, action: 'DEFAULT_ALLOW' },
];

describe('Istio AuthorizationPolicy conformance', () => {
  for (const row of ROWS) {
    it(row.name, () => {
      const engine = compilePolicies(
        row.policies.map((p) => parseIstioAuthorizationPolicy(p)),
        { trustDomain: parseTrustDomain(TD), namespace: 'foo', ...(row.workloadLabels === undefined ? {} : { workloadLabels: row.workloadLabels }) },
      );
      const decision = engine.decide(request(row.request));
      assert.equal(decision.allowed, row.allowed, decision.reason);
      assert.equal(decision.action, row.action, decision.reason);
      assert.equal(decision.policy, row.policy, decision.reason);
      assert.equal(decision.audit?.policy, row.audit);
      if (row.policy !== undefined) assert.equal(decision.kind, 'AuthorizationPolicy');
    });
  }

  it('reports the index of the deciding rule', () => {
    const engine = compilePolicies(
      [parseIstioAuthorizationPolicy(istio('p', { rules: [to({ methods: ['POST'] }), to({ methods: ['PUT'] }), to({ methods: ['GET'] })] }))],
      { trustDomain: parseTrustDomain(TD) },
    );
    const decision = engine.decide(request());
    assert.equal(decision.rule, 2);
    assert.match(decision.reason, /foo\/p rule 2/);
  });
});

describe('Istio string patterns', () => {
  const CASES: ReadonlyArray<readonly [string, string]> = [
    ['abc', 'exact'],
    ['abc*', 'prefix'],
    ['*abc', 'suffix'],
    ['*', 'presence'],
  ];
  for (const [raw, kind] of CASES) {
    it(`parses ${JSON.stringify(raw)} as ${kind}`, () => {
      const pattern = parseStringPattern(raw);
      assert.ok(typeof pattern !== 'string', String(pattern));
      assert.equal(pattern.kind, kind);
    });
  }
  for (const raw of ['', 'a*b', '**', '*a*']) {
    it(`rejects ${JSON.stringify(raw)}`, () => {
      assert.equal(typeof parseStringPattern(raw), 'string');
    });
  }
});

// One case per validation rule: [name, spec (or whole object), fragments of the expected problem].
const INVALID: ReadonlyArray<readonly [string, unknown, readonly string[]]> = [
  ['rejects an unknown apiVersion', { ...istio('p', {}), apiVersion: 'security.istio.io/v1alpha1' }, ['apiVersion', 'security.istio.io/v1']],
  ['rejects a missing name', { ...istio('p', {}), metadata: { namespace: 'foo' } }, ['metadata.name', 'required']],
  ['rejects a missing namespace', { ...istio('p', {}), metadata: { name: 'p' } }, ['metadata.namespace', 'required']],
  ['rejects an invalid namespace name', istio('p', {}, 'Foo_Bar'), ['metadata.namespace', 'not a valid']],
  ['rejects action CUSTOM', istio('p', { action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] }), ['spec.action', 'CUSTOM']],
  ['rejects provider without CUSTOM', istio('p', { provider: { name: 'ext' } }), ['spec.provider', 'CUSTOM']],
  ['rejects a lower-case action with a hint', istio('p', { action: 'deny', rules: [{}] }), ['spec.action', 'upper-case: DENY']],
  ['rejects targetRefs', istio('p', { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'gw' }] }), ['spec.targetRefs', 'Gateway']],
  ['rejects a DENY policy without rules', istio('p', { action: 'DENY' }), ['spec.rules', 'never matches']],
  ['rejects the dry-run annotation', { ...istio('p', {}), metadata: { name: 'p', namespace: 'foo', annotations: { 'istio.io/dry-run': 'true' } } }, ['istio.io/dry-run', 'not supported']],
  ['rejects requestPrincipals', istio('p', { rules: [from({ requestPrincipals: ['*'] })] }), ['spec.rules[0].from[0].source.requestPrincipals', 'JWT']],
  ['rejects notRequestPrincipals', istio('p', { rules: [from({ notRequestPrincipals: ['*'] })] }), ['source.notRequestPrincipals', 'JWT']],
  ['rejects ipBlocks', istio('p', { rules: [from({ ipBlocks: ['10.0.0.0/8'] })] }), ['source.ipBlocks', 'IP-based']],
  ['rejects remoteIpBlocks', istio('p', { rules: [from({ remoteIpBlocks: ['10.0.0.0/8'] })] }), ['source.remoteIpBlocks', 'IP-based']],
  ['rejects a misspelt source field with a suggestion', istio('p', { rules: [from({ principal: ['x'] })] }), ['source.principal', 'did you mean "principals"']],
  ['rejects an empty from', istio('p', { rules: [{ from: [] }] }), ['spec.rules[0].from', 'must not be empty']],
  ['rejects a from item without source', istio('p', { rules: [{ from: [{}] }] }), ['spec.rules[0].from[0].source', 'required']],
  ['rejects an empty source', istio('p', { rules: [from({})] }), ['spec.rules[0].from[0].source', 'must not be empty']],
  ['rejects an empty to', istio('p', { rules: [{ to: [] }] }), ['spec.rules[0].to', 'must not be empty']],
  ['rejects an empty operation', istio('p', { rules: [to({})] }), ['spec.rules[0].to[0].operation', 'must not be empty']],
  ['rejects an empty value list', istio('p', { rules: [to({ methods: [] })] }), ['operation.methods', 'must not be empty']],
  ['rejects an empty string value', istio('p', { rules: [to({ methods: ['GET', ''] })] }), ['operation.methods[1]', 'must not be empty']],
  ['rejects a wildcard in the middle', istio('p', { rules: [to({ paths: ['/api/*/users'] })] }), ['operation.paths[0]', '"*" is only allowed']],
  ['rejects a principal written with spiffe://', istio('p', { rules: [from({ principals: ['spiffe://cluster.local/ns/a/sa/b'] })] }), ['source.principals[0]', 'without the scheme']],
  ['rejects a lower-case method', istio('p', { rules: [to({ methods: ['get'] })] }), ['operation.methods[0]', 'did you mean "GET"']],
  ['rejects a path template', istio('p', { rules: [to({ paths: ['/users/{*}/orders'] })] }), ['operation.paths[0]', 'path templates']],
  ['rejects a path with a query string', istio('p', { rules: [to({ paths: ['/search?q=1'] })] }), ['operation.paths[0]', 'query string']],
  ['rejects a path without a leading slash', istio('p', { rules: [to({ paths: ['api/*'] })] }), ['operation.paths[0]', 'must start with "/"']],
  ['rejects a port out of range', istio('p', { rules: [to({ ports: ['70000'] })] }), ['operation.ports[0]', '1..65535']],
  ['rejects a port that is not a number', istio('p', { rules: [to({ notPorts: ['http'] })] }), ['operation.notPorts[0]', '1..65535']],
  ['rejects serviceAccounts combined with namespaces', istio('p', { rules: [from({ serviceAccounts: ['default/sleep'], namespaces: ['default'] })] }), ['spec.rules[0].from[0].source', 'cannot be combined']],
  ['rejects a wildcard service account', istio('p', { rules: [from({ serviceAccounts: ['default/*'] })] }), ['source.serviceAccounts[0]', 'no wildcards']],
  ['rejects a condition without key', istio('p', { rules: [{ when: [{ values: ['x'] }] }] }), ['spec.rules[0].when[0].key', 'non-empty string']],
  ['rejects a condition without values', istio('p', { rules: [{ when: [{ key: 'source.namespace' }] }] }), ['spec.rules[0].when[0]', 'at least one of values or notValues']],
  ['rejects a JWT claim condition', istio('p', { rules: [{ when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] }] }), ['when[0].key', 'JWT']],
  ['rejects a source.ip condition', istio('p', { rules: [{ when: [{ key: 'source.ip', values: ['10.0.0.1'] }] }] }), ['when[0].key', 'IP-based']],
  ['rejects an unknown condition key', istio('p', { rules: [{ when: [{ key: 'source.user', values: ['x'] }] }] }), ['when[0].key', 'unsupported key']],
  ['rejects a non-numeric destination.port', istio('p', { rules: [{ when: [{ key: 'destination.port', values: ['http'] }] }] }), ['when[0].values[0]', 'port number']],
  ['rejects a null rule', istio('p', { rules: [null] }), ['spec.rules[0]', 'must not be null']],
  ['rejects a non-string label value', istio('p', { selector: { matchLabels: { version: 1 } } }), ['spec.selector.matchLabels.version', 'must be strings']],
  ['rejects matchExpressions (Istio selectors have only matchLabels)', istio('p', { selector: { matchExpressions: [] } }), ['spec.selector.matchExpressions', 'unknown field']],
];

describe('parseIstioAuthorizationPolicy', () => {
  it('parses the reference example into typed rules', () => {
    const policy = parseIstioAuthorizationPolicy({
      apiVersion: 'security.istio.io/v1beta1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'httpbin', namespace: 'foo' },
      spec: {
        action: 'ALLOW',
        rules: [
          {
            from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }, { source: { namespaces: ['test'] } }],
            to: [{ operation: { methods: ['GET'], paths: ['/info*'] } }, { operation: { methods: ['POST'], paths: ['/data'] } }],
            when: [{ key: 'request.headers[X-Tenant]', values: ['acme'] }],
          },
        ],
      },
    });
    assert.equal(policy.apiVersion, 'security.istio.io/v1beta1');
    assert.equal(policy.action, 'ALLOW');
    assert.deepEqual(policy.rules[0]?.from?.[1], { namespaces: ['test'] });
    assert.deepEqual(policy.rules[0]?.when?.[0]?.attribute, { kind: 'request.headers', header: 'x-tenant' });
    assert.ok(Object.isFrozen(policy.rules[0]));
  });

  it('accepts ports written as YAML numbers', () => {
    const policy = parseIstioAuthorizationPolicy(istio('p', { rules: [to({ ports: [8080, '9090'] })] }));
    assert.deepEqual(policy.rules[0]?.to?.[0]?.ports, [8080, 9090]);
  });

  it('fills a missing namespace from defaultNamespace', () => {
    const policy = parseIstioAuthorizationPolicy({ ...istio('p', {}), metadata: { name: 'p' } }, { defaultNamespace: 'bar' });
    assert.equal(policy.namespace, 'bar');
  });

  for (const [name, obj, fragments] of INVALID) {
    it(name, () => {
      assertProblem(configProblems(() => parseIstioAuthorizationPolicy(obj)), ...fragments);
    });
  }

  it('lists every problem of a policy at once, naming it', () => {
    const problems = configProblems(() =>
      parseIstioAuthorizationPolicy(
        istio('broken', {
          action: 'ALLOW',
          rules: [{ from: [{ source: { ipBlocks: ['1.2.3.4'] } }], to: [{ operation: { methods: ['get'], paths: ['x'] } }] }],
          selectors: {},
        }),
      ),
    );
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.ok(problems.every((p) => p.startsWith('AuthorizationPolicy foo/broken: ')), problems.join('\n'));
    assertProblem(problems, 'spec.selectors', 'did you mean "selector"');
  });
});
