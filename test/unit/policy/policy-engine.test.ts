import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ConfigError } from '../../../src/errors.js';
import { parsePolicyYaml } from '../../../src/files/policy-file.js';
import {
  compilePolicies,
  parseCiliumNetworkPolicy,
  parseIstioAuthorizationPolicy,
  type PolicyDocument,
  type RequestAttributes,
} from '../../../src/policy/index.js';
import { mustParseSpiffeId, parseTrustDomain, spiffeIdFromSegments } from '../../../src/spiffe/index.js';
import { cilium, configProblems, istio, request, SLEEP, TD } from './policy-fixtures.js';

const trustDomain = parseTrustDomain(TD);

// Every kind of matcher the engine compiles, so the property below reaches all of them.
const EVERYTHING = parsePolicyYaml(
  `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: foo}
spec:
  action: DENY
  rules:
  - from: [{source: {notPrincipals: ["*"]}}]
  - to: [{operation: {hosts: ["admin.*"], notPorts: ["8000"]}}]
    when: [{key: "request.headers[x-debug]", values: ["*"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: foo}
spec:
  rules:
  - from: [{source: {namespaces: ["default", "team-*"]}}, {source: {serviceAccounts: ["bar/api"]}}]
    to: [{operation: {methods: ["GET", "*T"], paths: ["/api/*", "*/health", "/"], notHosts: ["*.internal"]}}]
    when:
    - {key: destination.port, values: ["8000", "9000"]}
    - {key: source.principal, notValues: ["*/sa/blocked"]}
    - {key: "request.headers[x-tenant]", notValues: ["evil*"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: foo}
spec:
  action: AUDIT
  rules: [{to: [{operation: {paths: ["/api/*"]}}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l7, namespace: foo}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{matchLabels: {io.cilium.k8s.policy.serviceaccount: sleep, io.kubernetes.pod.namespace: default}}]
    toPorts:
    - ports: [{port: "8080", endPort: 8090}]
      rules:
        http:
        - {method: "GET|HEAD", path: "/v[0-9]+/(a+)+$", host: ".*\\\\.foo", headers: ["X-Trace", "X-Mode: fast"]}
  ingressDeny:
  - toPorts: [{ports: [{port: 22}]}]
`,
  'everything.yaml',
).policies;

function engineOf(policies: readonly PolicyDocument[] = EVERYTHING) {
  return compilePolicies(policies, { trustDomain, namespace: 'foo' });
}

const segment = fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,12}$/);
const peerArb = fc.oneof(
  fc.constant(undefined),
  fc.constant(mustParseSpiffeId(SLEEP)),
  fc.tuple(fc.constantFrom(TD, 'other.example'), segment, segment).map(([td, ns, sa]) => spiffeIdFromSegments(parseTrustDomain(td), 'ns', ns, 'sa', sa)),
  fc.tuple(fc.constantFrom(TD, 'other.example'), fc.array(segment, { maxLength: 5 })).map(([td, segs]) => spiffeIdFromSegments(parseTrustDomain(td), ...segs)),
);
const headerValues = fc.dictionary(fc.constantFrom('x-debug', 'x-tenant', 'x-trace', 'x-mode', 'host', ''), fc.string({ maxLength: 20 }));
const requestArb: fc.Arbitrary<RequestAttributes> = fc.record(
  {
    peer: peerArb,
    method: fc.oneof(fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', ''), fc.string({ maxLength: 10 })),
    path: fc.oneof(fc.constantFrom('/', '/api/x', '/v1/aaaa', '/health'), fc.string({ maxLength: 60 }), fc.string({ unit: 'binary', maxLength: 20 })),
    host: fc.option(fc.oneof(fc.constantFrom('admin.foo', 'httpbin.foo', 'X.INTERNAL'), fc.string({ maxLength: 20 })), { nil: undefined }),
    port: fc.option(fc.oneof(fc.constantFrom(22, 8000, 8085, 8090, 9000), fc.integer({ min: -1, max: 70000 }), fc.constant(Number.NaN)), { nil: undefined }),
    headers: fc.option(headerValues.map((h) => (name: string) => h[name]), { nil: undefined }),
  },
  { requiredKeys: ['method', 'path'] },
);

describe('PolicyEngine.decide', () => {
  it('never throws and always returns a well-formed decision for arbitrary requests', () => {
    const engine = engineOf();
    fc.assert(
      fc.property(requestArb, (req) => {
        const decision = engine.decide(req);
        assert.equal(typeof decision.allowed, 'boolean');
        assert.ok(['ALLOW', 'DENY', 'DEFAULT_ALLOW', 'DEFAULT_DENY'].includes(decision.action));
        assert.equal(decision.allowed, decision.action === 'ALLOW' || decision.action === 'DEFAULT_ALLOW');
        assert.equal(typeof decision.reason, 'string');
        // Same answer through a precomputed peer context.
        assert.deepEqual(engine.decideFor(engine.peer(req.peer), req), decision);
      }),
      { numRuns: 500 },
    );
  });

  it('denies every request without identity under the require-mTLS rule', () => {
    const engine = engineOf();
    fc.assert(
      fc.property(requestArb, (req) => {
        const decision = engine.decide({ ...req, peer: undefined });
        assert.equal(decision.action, 'DENY');
        assert.equal(decision.policy, 'foo/deny');
      }),
      { numRuns: 200 },
    );
  });

  it('returns the same frozen decision object for repeated requests (no per-request allocation)', () => {
    const engine = engineOf();
    const first = engine.decide(request({ path: '/', port: 8000, headers: {} }));
    const second = engine.decide(request({ path: '/', port: 8000, headers: {} }));
    assert.equal(first.action, 'ALLOW');
    assert.equal(first, second);
    assert.ok(Object.isFrozen(first));
  });

  it('marks audited requests without changing the decision', () => {
    const decision = engineOf().decide(request({ path: '/api/users', port: 8000, headers: {} }));
    assert.equal(decision.action, 'ALLOW');
    assert.deepEqual(decision.audit, { policy: 'foo/audit', kind: 'AuthorizationPolicy', rule: 0 });
  });
});

describe('PolicyEngine path index', () => {
  // Paths from a tiny alphabet so that exact, prefix and suffix patterns collide often.
  const pathArb = fc.array(fc.constantFrom('/', 'a', 'b', '/api', '/v1', '/users', '-1'), { maxLength: 5 }).map((parts) => `/${parts.join('')}`);
  const patternArb = fc.oneof(
    pathArb,
    pathArb.map((p) => `${p}*`),
    pathArb.map((p) => `*${p.slice(1)}`).filter((p) => p !== '*'),
    fc.constant('*'),
  );
  const operationArb = fc.record(
    { paths: fc.array(patternArb, { minLength: 1, maxLength: 3 }), methods: fc.constantFrom(['GET'], ['POST'], ['GET', 'POST']) },
    { requiredKeys: [] },
  ).filter((op) => Object.keys(op).length > 0);
  // Some rules name a service account, so each peer's candidates are a subset of the rules.
  const fromArb = fc.constantFrom([{ source: { serviceAccounts: ['default/sleep'] } }], [{ source: { serviceAccounts: ['default/other'] } }]);
  const ruleArb = fc.record(
    { from: fromArb, to: fc.array(fc.record({ operation: operationArb }), { minLength: 1, maxLength: 2 }) },
    { requiredKeys: [] },
  );
  const peers = [SLEEP, `spiffe://${TD}/ns/default/sa/other`];

  it('finds the same first matching rule as evaluating each rule on its own', () => {
    // Requests mostly made from the rules' own patterns, so that many of them match something.
    const scenario = fc.array(ruleArb, { minLength: 8, maxLength: 24 }).chain((rules) => {
      const stems = rules.flatMap((r) => (r.to ?? []).flatMap((t) => t.operation.paths ?? [])).map((p) => p.replaceAll('*', ''));
      const fromRules = stems.length === 0 ? pathArb : fc.tuple(fc.constantFrom(...stems), fc.constantFrom('', '', 'a', '/users')).map(([stem, tail]) => `${stem}${tail}`);
      const pathFor = fc.oneof(fromRules, fromRules, pathArb).map((p) => (p.startsWith('/') ? p : `/${p}`));
      return fc.tuple(fc.constant(rules), fc.array(fc.tuple(pathFor, fc.constantFrom('GET', 'POST'), fc.constantFrom(...peers)), { minLength: 1, maxLength: 10 }));
    });
    fc.assert(
      fc.property(scenario, ([rules, requests]) => {
        const engine = engineOf([parseIstioAuthorizationPolicy(istio('many', { rules }))]);
        const single = rules.map((rule) => engineOf([parseIstioAuthorizationPolicy(istio('one', { rules: [rule] }))]));
        for (const [path, method, peer] of requests) {
          const req = request({ path, method, peer });
          const expected = single.findIndex((e) => e.decide(req).allowed);
          const decision = engine.decide(req);
          assert.equal(decision.rule, expected === -1 ? undefined : expected, `${peer} ${method} ${path}`);
          assert.equal(decision.allowed, expected !== -1);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('PolicyEngine.peer', () => {
  it('derives principal, namespace and service account from the SPIFFE ID', () => {
    const peer = engineOf().peer(mustParseSpiffeId(SLEEP));
    assert.equal(peer.principal, `${TD}/ns/default/sa/sleep`);
    assert.equal(peer.namespace, 'default');
    assert.equal(peer.serviceAccount, 'sleep');
  });

  it('gives foreign and non-Kubernetes IDs a principal but no namespace', () => {
    const engine = engineOf();
    const foreign = engine.peer(mustParseSpiffeId('spiffe://other.example/ns/default/sa/sleep'));
    assert.equal(foreign.principal, 'other.example/ns/default/sa/sleep');
    assert.equal(foreign.namespace, '');
    assert.equal(engine.peer(mustParseSpiffeId(`spiffe://${TD}/batch`)).serviceAccount, '');
    assert.equal(engine.peer(undefined).principal, '');
  });

  it('caches the context per identity', () => {
    const engine = engineOf();
    assert.equal(engine.peer(mustParseSpiffeId(SLEEP)), engine.peer(mustParseSpiffeId(SLEEP)));
  });

  it('rejects a peer context from another engine with TypeError', () => {
    const peer = engineOf().peer(mustParseSpiffeId(SLEEP));
    assert.throws(() => engineOf().decideFor(peer, request()), TypeError);
    assert.throws(() => engineOf().decideFor({ id: undefined, principal: '', namespace: '', serviceAccount: '' }, request()), TypeError);
  });
});

describe('compilePolicies', () => {
  it('reports applied and ignored policies with the reason', () => {
    const engine = compilePolicies(
      [
        parseIstioAuthorizationPolicy(istio('here', {})),
        parseIstioAuthorizationPolicy(istio('there', {}, 'bar')),
        parseIstioAuthorizationPolicy(istio('v2', { selector: { matchLabels: { version: 'v2' } } })),
        parseIstioAuthorizationPolicy(istio('mesh', { action: 'DENY', rules: [{}] }, 'mesh-root')),
      ],
      { trustDomain, namespace: 'foo', workloadLabels: { version: 'v1' }, rootNamespace: 'mesh-root' },
    );
    assert.deepEqual(
      engine.appliedPolicies.map((p) => `${p.action} ${p.policy}`),
      ['DENY mesh-root/mesh', 'ALLOW foo/here'],
    );
    assert.deepEqual(
      engine.ignoredPolicies.map((p) => p.policy),
      ['bar/there', 'foo/v2'],
    );
    assert.match(engine.ignoredPolicies[1]!.reason, /spec\.selector does not match/);
  });

  it('applies policies of every namespace when no namespace is given', () => {
    const engine = compilePolicies([parseIstioAuthorizationPolicy(istio('p', {}, 'bar'))], { trustDomain });
    assert.equal(engine.decide(request()).action, 'DEFAULT_DENY');
  });

  it('refuses a selector it cannot evaluate because no workload labels were given', () => {
    const problems = configProblems(() =>
      compilePolicies([parseIstioAuthorizationPolicy(istio('p', { selector: { matchLabels: { app: 'x' } } }))], { trustDomain, namespace: 'foo' }),
    );
    assert.match(problems[0]!, /AuthorizationPolicy foo\/p: spec\.selector .* no workloadLabels/);
  });

  it('refuses the same policy twice', () => {
    const policy = parseIstioAuthorizationPolicy(istio('p', {}));
    assert.throws(() => compilePolicies([policy, policy], { trustDomain }), ConfigError);
  });

  it('rejects misuse with TypeError', () => {
    assert.throws(() => compilePolicies([], { trustDomain: TD as never }), TypeError);
    assert.throws(() => compilePolicies([istio('raw', {}) as never], { trustDomain }), TypeError);
    assert.throws(() => compilePolicies({} as never, { trustDomain }), TypeError);
  });

  it('rejects an invalid namespace option with ConfigError', () => {
    configProblems(() => compilePolicies([], { trustDomain, namespace: 'Not_A_Namespace' }));
  });
});

describe('PolicyEngine: Cilium path and the query string', () => {
  // Cilium hands `path` to Envoy as a full safe-regex match on `:path`, which includes the query.
  const engine = compilePolicies(
    [parseCiliumNetworkPolicy(cilium('l7', { endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: '8000' }], rules: { http: [{ method: 'GET', path: '/hello' }, { path: '/search\\?q=[a-z]+' }] } }] }] }))],
    { trustDomain, namespace: 'foo', workloadLabels: {} },
  );
  const decide = (path: string, query: string | undefined) => engine.decide({ ...request({ path }), ...(query === undefined ? {} : { query }) }).allowed;

  it('`path: /hello` matches /hello only without a query string', () => {
    assert.equal(decide('/hello', undefined), true);
    assert.equal(decide('/hello', ''), true);
    assert.equal(decide('/hello', '?q=1'), false);
  });

  it('a regex that names the query matches it in full', () => {
    assert.equal(decide('/search', '?q=abc'), true);
    assert.equal(decide('/search', '?q=abc&admin=1'), false);
    assert.equal(decide('/search', undefined), false);
  });

  it('Istio paths never see the query string', () => {
    const istioEngine = compilePolicies([parseIstioAuthorizationPolicy(istio('p', { rules: [{ to: [{ operation: { paths: ['/hello'] } }] }] }))], { trustDomain, namespace: 'foo' });
    assert.equal(istioEngine.decide({ ...request({ path: '/hello' }), query: '?q=1' }).allowed, true);
  });
});
