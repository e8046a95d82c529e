import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import {
  compilePolicies,
  parseCiliumNetworkPolicy,
  parseIstioAuthorizationPolicy,
  type DecisionAction,
  type PolicyDocument,
  type WorkloadLabels,
} from '../../../src/policy/index.js';
import { parseTrustDomain } from '../../../src/spiffe/index.js';
import { assertProblem, cilium, configProblems, istio, request, TD, type RequestSpec } from './policy-fixtures.js';

const WORKLOAD: WorkloadLabels = { app: 'httpbin', 'io.cilium.k8s.policy.serviceaccount': 'httpbin' };

function engineFor(policies: readonly PolicyDocument[], labels: WorkloadLabels = WORKLOAD) {
  return compilePolicies(policies, { trustDomain: parseTrustDomain(TD), namespace: 'foo', workloadLabels: labels });
}

function decide(policy: Record<string, unknown>, req: RequestSpec = {}) {
  return engineFor([parseCiliumNetworkPolicy(policy)]).decide(request(req));
}

/** A policy selecting app=httpbin that allows `http` rules on port 8000 from any peer. */
function httpPolicy(http: readonly unknown[]): Record<string, unknown> {
  return cilium('l7', {
    endpointSelector: { matchLabels: { app: 'httpbin' } },
    ingress: [{ toPorts: [{ ports: [{ port: '8000', protocol: 'TCP' }], rules: { http } }] }],
  });
}

function fromEndpoints(...selectors: readonly unknown[]): Record<string, unknown> {
  return cilium('peers', { endpointSelector: {}, ingress: [{ fromEndpoints: selectors }] });
}

function assertDecision(decision: { allowed: boolean; action: DecisionAction; policy?: string; reason: string }, allowed: boolean, action: DecisionAction, policy?: string): void {
  assert.equal(decision.allowed, allowed, decision.reason);
  assert.equal(decision.action, action, decision.reason);
  assert.equal(decision.policy, policy, decision.reason);
}

describe('Cilium L7 HTTP rules', () => {
  const CASES: ReadonlyArray<readonly [string, readonly unknown[], RequestSpec, boolean]> = [
    ['method regex matches the whole method', [{ method: 'GET' }], { method: 'GET' }, true],
    ['method regex is anchored at the end', [{ method: 'GET' }], { method: 'GETX' }, false],
    ['method regex is anchored at the start', [{ method: 'ET' }], { method: 'GET' }, false],
    ['method alternation covers each whole method', [{ method: 'GET|HEAD' }], { method: 'HEAD' }, true],
    ['method alternation does not match a concatenation', [{ method: 'GET|HEAD' }], { method: 'GETHEAD' }, false],
    ['path literal does not match a longer path', [{ path: '/public' }], { path: '/public/secret' }, false],
    ['path regex with .* matches below the prefix', [{ path: '/api/v[0-9]+/.*' }], { path: '/api/v2/users' }, true],
    ['path regex is anchored', [{ path: '/api/.*' }], { path: '/x/api/users' }, false],
    ['method and path are ANDed', [{ method: 'GET', path: '/public' }], { method: 'POST', path: '/public' }, false],
    ['http rules are ORed', [{ method: 'POST' }, { path: '/' }], { method: 'GET', path: '/' }, true],
    ['host regex matches', [{ host: 'httpbin\\.foo(:[0-9]+)?' }], { host: 'httpbin.foo:8000' }, true],
    ['host regex: unknown host does not satisfy an allow', [{ host: '.*' }], { host: null }, false],
    ['an empty http rule allows every request', [{}], { method: 'DELETE' }, true],
    ['header presence: present', [{ headers: ['X-My-Header'] }], { headers: { 'x-my-header': '' } }, true],
    ['header presence: absent', [{ headers: ['X-My-Header'] }], { headers: {} }, false],
    ['header "Name: value": exact value', [{ headers: ['X-My-Header: true'] }], { headers: { 'X-My-Header': 'true' } }, true],
    ['header "Name: value": other value', [{ headers: ['X-My-Header: true'] }], { headers: { 'X-My-Header': 'false' } }, false],
    ['header "Name value" without colon', [{ headers: ['X-My-Header true'] }], { headers: { 'X-My-Header': 'true' } }, true],
    ['headerMatches with a value', [{ headerMatches: [{ name: 'X-Tenant', value: 'acme' }] }], { headers: { 'x-tenant': 'acme' } }, true],
    ['headerMatches with a wrong value', [{ headerMatches: [{ name: 'X-Tenant', value: 'acme' }] }], { headers: { 'x-tenant': 'evil' } }, false],
    ['headerMatches without value checks presence', [{ headerMatches: [{ name: 'X-Tenant' }] }], { headers: { 'x-tenant': 'any' } }, true],
    ['headers: none from the transport do not satisfy an allow', [{ headers: ['X-My-Header'] }], { headers: null }, false],
    ['wrong port denies even a matching request', [{ method: 'GET' }], { port: 9000 }, false],
    ['unknown port does not satisfy an allow', [{ method: 'GET' }], { port: null }, false],
  ];
  for (const [name, http, req, allowed] of CASES) {
    it(name, () => {
      const decision = decide(httpPolicy(http), req);
      if (allowed) assertDecision(decision, true, 'ALLOW', 'foo/l7');
      else assertDecision(decision, false, 'DEFAULT_DENY');
    });
  }

  it('matches a pathological regex against a long input in linear time', () => {
    // (a+)+$ backtracks exponentially in JS RegExp; RE2 answers in one pass.
    const decision = decide(httpPolicy([{ path: '/(a+)+$' }]), { path: `/${'a'.repeat(50_000)}!` });
    assertDecision(decision, false, 'DEFAULT_DENY');
    const match = decide(httpPolicy([{ path: '/(a+)+$' }]), { path: `/${'a'.repeat(50_000)}` });
    assertDecision(match, true, 'ALLOW', 'foo/l7');
  });
});

describe('Cilium fromEndpoints by identity', () => {
  const CASES: ReadonlyArray<readonly [string, readonly unknown[], string | null, boolean]> = [
    ['service account in the policy namespace', [{ matchLabels: { 'io.cilium.k8s.policy.serviceaccount': 'luke' } }], `spiffe://${TD}/ns/foo/sa/luke`, true],
    ['same service account name in another namespace', [{ matchLabels: { 'io.cilium.k8s.policy.serviceaccount': 'luke' } }], `spiffe://${TD}/ns/bar/sa/luke`, false],
    ['other service account', [{ matchLabels: { 'io.cilium.k8s.policy.serviceaccount': 'luke' } }], `spiffe://${TD}/ns/foo/sa/vader`, false],
    ['namespace label with k8s: prefix', [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'bar' } }], `spiffe://${TD}/ns/bar/sa/any`, true],
    ['namespace label excludes the policy namespace', [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'bar' } }], `spiffe://${TD}/ns/foo/sa/any`, false],
    ['namespace and service account together', [{ matchLabels: { 'io.kubernetes.pod.namespace': 'bar', 'io.cilium.k8s.policy.serviceaccount': 'luke' } }], `spiffe://${TD}/ns/bar/sa/luke`, true],
    ['matchExpressions In', [{ matchExpressions: [{ key: 'io.kubernetes.pod.namespace', operator: 'In', values: ['bar', 'baz'] }] }], `spiffe://${TD}/ns/baz/sa/x`, true],
    ['matchExpressions NotIn (namespace named, so no implicit one)', [{ matchExpressions: [{ key: 'io.kubernetes.pod.namespace', operator: 'NotIn', values: ['bar'] }] }], `spiffe://${TD}/ns/qux/sa/x`, true],
    ['empty selector: every peer in the policy namespace', [{}], `spiffe://${TD}/ns/foo/sa/anyone`, true],
    ['empty selector: not other namespaces', [{}], `spiffe://${TD}/ns/bar/sa/anyone`, false],
    ['empty selector: not requests without identity', [{}], null, false],
    ['selectors are ORed', [{ matchLabels: { 'io.cilium.k8s.policy.serviceaccount': 'x' } }, { matchLabels: { 'io.cilium.k8s.policy.serviceaccount': 'luke' } }], `spiffe://${TD}/ns/foo/sa/luke`, true],
    ['foreign trust domain never has Kubernetes labels', [{}], 'spiffe://other.example/ns/foo/sa/luke', false],
    ['non-Kubernetes ID never has Kubernetes labels', [{}], `spiffe://${TD}/batch/job`, false],
  ];
  for (const [name, selectors, peer, allowed] of CASES) {
    it(name, () => {
      const decision = decide(fromEndpoints(...selectors), { peer });
      if (allowed) assertDecision(decision, true, 'ALLOW', 'foo/peers');
      else assertDecision(decision, false, 'DEFAULT_DENY');
    });
  }

  it('a rule without fromEndpoints allows any peer, even without identity, on its ports', () => {
    const policy = cilium('l4', { endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: 8000 }] }] }] });
    assertDecision(decide(policy, { peer: null }), true, 'ALLOW', 'foo/l4');
    assertDecision(decide(policy, { peer: null, port: 8001 }), false, 'DEFAULT_DENY');
  });

  it('a rule {} allows everything', () => {
    assertDecision(decide(cilium('all', { endpointSelector: {}, ingress: [{}] }), { peer: null }), true, 'ALLOW', 'foo/all');
  });

  it('port ranges, protocols: endPort is inclusive and UDP never matches HTTP', () => {
    const policy = cilium('ranges', {
      endpointSelector: {},
      ingress: [{ toPorts: [{ ports: [{ port: 8000, endPort: 8010, protocol: 'TCP' }, { port: '9000', protocol: 'UDP' }] }] }],
    });
    assertDecision(decide(policy, { port: 8010 }), true, 'ALLOW', 'foo/ranges');
    assertDecision(decide(policy, { port: 8011 }), false, 'DEFAULT_DENY');
    assertDecision(decide(policy, { port: 9000 }), false, 'DEFAULT_DENY');
  });
});

describe('Cilium policy scope and order', () => {
  it('ignores a policy whose endpointSelector does not select the workload', () => {
    const policy = parseCiliumNetworkPolicy(cilium('other', { endpointSelector: { matchLabels: { app: 'productpage' } }, ingress: [{}] }));
    const engine = engineFor([policy]);
    assertDecision(engine.decide(request()), true, 'DEFAULT_ALLOW');
    assert.deepEqual(engine.ignoredPolicies.map((p) => p.policy), ['foo/other']);
  });

  it('selects by service account label on the workload, with matchExpressions', () => {
    const policy = cilium('sa', {
      endpointSelector: { matchExpressions: [{ key: 'k8s:io.cilium.k8s.policy.serviceaccount', operator: 'In', values: ['httpbin'] }] },
      ingress: [{ fromEndpoints: [{ matchLabels: { 'io.cilium.k8s.policy.serviceaccount': 'luke' } }] }],
    });
    assertDecision(decide(policy), false, 'DEFAULT_DENY');
  });

  it('matches an endpointSelector on the namespace label against the workload namespace', () => {
    const policy = cilium('ns', { endpointSelector: { matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'foo' } }, ingress: [{ fromEndpoints: [{}] }] });
    assertDecision(decide(policy, { peer: `spiffe://${TD}/ns/bar/sa/x` }), false, 'DEFAULT_DENY');
  });

  it('ignores a policy from another namespace', () => {
    const engine = engineFor([parseCiliumNetworkPolicy(cilium('deny', { endpointSelector: {}, ingress: [{ fromEndpoints: [{}] }] }, 'bar'))]);
    assertDecision(engine.decide(request()), true, 'DEFAULT_ALLOW');
  });

  it('enableDefaultDeny.ingress: false adds allows without denying the rest', () => {
    const policy = cilium('opt-in', {
      endpointSelector: {},
      enableDefaultDeny: { ingress: false },
      ingress: [{ toPorts: [{ ports: [{ port: 9000 }] }] }],
    });
    assertDecision(decide(policy), true, 'DEFAULT_ALLOW');
    assertDecision(decide(policy, { port: 9000 }), true, 'ALLOW', 'foo/opt-in');
  });

  it('ingressDeny wins over a matching ingress rule', () => {
    const policy = cilium('both', {
      endpointSelector: {},
      ingress: [{}],
      ingressDeny: [{ fromEndpoints: [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'default' } }], toPorts: [{ ports: [{ port: 8000 }] }] }],
    });
    const decision = decide(policy);
    assertDecision(decision, false, 'DENY', 'foo/both');
    assert.match(decision.reason, /ingressDeny\[0\]/);
    assertDecision(decide(policy, { port: 8080 }), true, 'ALLOW', 'foo/both');
  });

  it('ingressDeny on a port the transport did not supply still denies', () => {
    const policy = cilium('deny-port', { endpointSelector: {}, ingressDeny: [{ toPorts: [{ ports: [{ port: 8000 }] }] }] });
    assertDecision(decide(policy, { port: null }), false, 'DENY', 'foo/deny-port');
  });

  it('combines with Istio policies: an Istio DENY beats a Cilium allow', () => {
    const engine = engineFor([
      parseCiliumNetworkPolicy(cilium('allow', { endpointSelector: {}, ingress: [{}] })),
      parseIstioAuthorizationPolicy(istio('no-delete', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }] })),
    ]);
    assertDecision(engine.decide(request({ method: 'DELETE' })), false, 'DENY', 'foo/no-delete');
    const allowed = engine.decide(request({ method: 'GET' }));
    assertDecision(allowed, true, 'ALLOW', 'foo/allow');
    assert.equal(allowed.kind, 'CiliumNetworkPolicy');
  });
});

const INVALID: ReadonlyArray<readonly [string, unknown, readonly string[]]> = [
  ['rejects an invalid method regex', httpPolicy([{ method: 'GET(' }]), ['spec.ingress[0].toPorts[0].rules.http[0].method', 'invalid regular expression']],
  ['rejects a backreference (not RE2)', httpPolicy([{ path: '/(a)\\1' }]), ['http[0].path', 'invalid regular expression']],
  ['rejects a lookahead (not RE2)', httpPolicy([{ path: '/(?=a)' }]), ['http[0].path', 'invalid regular expression']],
  ['rejects a regex longer than the limit', httpPolicy([{ path: `/${'a'.repeat(5000)}` }]), ['http[0].path', 'maximum']],
  ['rejects a peer label a certificate cannot prove', fromEndpoints({ matchLabels: { app: 'frontend' } }), ['spec.ingress[0].fromEndpoints[0].matchLabels.app', 'cannot be verified']],
  ['rejects a reserved: label source', fromEndpoints({ matchLabels: { 'reserved:host': '' } }), ['fromEndpoints[0].matchLabels', 'label source']],
  ['rejects an empty fromEndpoints', cilium('p', { endpointSelector: {}, ingress: [{ fromEndpoints: [] }] }), ['fromEndpoints', 'select no peer']],
  ['rejects fromCIDR', cilium('p', { endpointSelector: {}, ingress: [{ fromCIDR: ['10.0.0.0/8'] }] }), ['spec.ingress[0].fromCIDR', 'address']],
  ['rejects fromEntities', cilium('p', { endpointSelector: {}, ingress: [{ fromEntities: ['cluster'] }] }), ['spec.ingress[0].fromEntities', 'address']],
  ['rejects egress rules', cilium('p', { endpointSelector: {}, ingress: [{}], egress: [{}] }), ['spec.egress', 'outgoing']],
  ['rejects nodeSelector', cilium('p', { nodeSelector: {}, ingress: [{}] }), ['spec.nodeSelector', 'host policies']],
  ['rejects a missing endpointSelector', cilium('p', { ingress: [{}] }), ['spec.endpointSelector', 'required']],
  ['rejects a policy without ingress rules', cilium('p', { endpointSelector: {} }), ['spec', 'no ingress']],
  ['rejects L7 rules in ingressDeny', cilium('p', { endpointSelector: {}, ingressDeny: [{ toPorts: [{ ports: [{ port: 80 }], rules: { http: [{}] } }] }] }), ['ingressDeny[0].toPorts[0].rules.http', 'deny rules']],
  ['rejects named ports', cilium('p', { endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: 'http' }] }] }] }), ['ports[0].port', 'named port']],
  ['rejects toPorts without ports', cilium('p', { endpointSelector: {}, ingress: [{ toPorts: [{ rules: { http: [{}] } }] }] }), ['toPorts[0].ports', 'at least one port']],
  ['rejects an unknown protocol', cilium('p', { endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: 80, protocol: 'HTTP' }] }] }] }), ['ports[0].protocol', 'TCP, UDP, SCTP or ANY']],
  ['rejects kafka rules', cilium('p', { endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: 80 }], rules: { kafka: [{}] } }] }] }), ['rules.kafka', 'only HTTP']],
  ['rejects upper-case HTTP with a suggestion', cilium('p', { endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: 80 }], rules: { HTTP: [{}] } }] }] }), ['rules.HTTP', 'did you mean "http"']],
  ['rejects header values from secrets', httpPolicy([{ headerMatches: [{ name: 'x-token', secret: { name: 's' } }] }]), ['headerMatches[0].secret', 'secrets']],
  ['rejects mismatch actions', httpPolicy([{ headerMatches: [{ name: 'x-token', value: 'v', mismatch: 'LOG' }] }]), ['headerMatches[0].mismatch', 'mismatch']],
  ['rejects a malformed header', httpPolicy([{ headers: ['X-Key:true'] }]), ['http[0].headers[0]', 'not a valid header name']],
  ['rejects a wrong apiVersion', { ...cilium('p', { endpointSelector: {}, ingress: [{}] }), apiVersion: 'cilium.io/v1' }, ['apiVersion', 'cilium.io/v2']],
];

describe('parseCiliumNetworkPolicy', () => {
  it('parses the service-account example, adding the implicit namespace', () => {
    const policy = parseCiliumNetworkPolicy(
      cilium('k8s-svc-account', {
        endpointSelector: { matchLabels: { 'io.cilium.k8s.policy.serviceaccount': 'leia' } },
        ingress: [{ fromEndpoints: [{ matchLabels: { 'io.cilium.k8s.policy.serviceaccount': 'luke' } }] }],
      }),
    );
    assert.deepEqual(policy.ingress[0]?.fromEndpoints?.[0]?.requirements, [
      { key: 'io.cilium.k8s.policy.serviceaccount', operator: 'In', values: ['luke'] },
      { key: 'io.kubernetes.pod.namespace', operator: 'In', values: ['foo'] },
    ]);
    assert.equal(policy.defaultDenyIngress, true);
  });

  for (const [name, obj, fragments] of INVALID) {
    it(name, () => {
      assertProblem(configProblems(() => parseCiliumNetworkPolicy(obj)), ...fragments);
    });
  }
});
