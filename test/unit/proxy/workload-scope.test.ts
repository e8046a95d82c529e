import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../src/errors.js';
import { parsePolicyYaml } from '../../../src/files/policy-file.js';
import { compilePolicies } from '../../../src/policy/index.js';
import { CILIUM_SERVICE_ACCOUNT_LABEL, requireApplicablePolicy, workloadScopeOf, type WorkloadScopeFlags } from '../../../src/proxy/workload-scope.js';
import { mustParseSpiffeId, parseTrustDomain } from '../../../src/spiffe/index.js';

const NAMESPACE_LABEL = 'io.kubernetes.pod.namespace';
const trustDomain = parseTrustDomain('cluster.local');
const SELF = 'spiffe://cluster.local/ns/foo/sa/httpbin';
const self = mustParseSpiffeId(SELF);

/** Asserts `fn` throws a ConfigError with `rule` and returns its problems. */
function configProblems(fn: () => unknown, rule: string): readonly string[] {
  let problems: readonly string[] = [];
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_CONFIG_INVALID');
    assert.equal(err.rule, rule, err.message);
    problems = err.problems;
    return true;
  });
  return problems;
}

describe('workloadScopeOf', () => {
  it('derives namespace, service account and their labels from the SVID, each also in its k8s: form', () => {
    const scope = workloadScopeOf(self, trustDomain);
    assert.equal(scope.namespace, 'foo');
    assert.equal(scope.serviceAccount, 'httpbin');
    assert.deepEqual({ ...scope.labels }, {
      [CILIUM_SERVICE_ACCOUNT_LABEL]: 'httpbin',
      [NAMESPACE_LABEL]: 'foo',
      [`k8s:${CILIUM_SERVICE_ACCOUNT_LABEL}`]: 'httpbin',
      [`k8s:${NAMESPACE_LABEL}`]: 'foo',
    });
    assert.equal(CILIUM_SERVICE_ACCOUNT_LABEL, 'io.cilium.k8s.policy.serviceaccount');
    assert.ok(Object.isFrozen(scope) && Object.isFrozen(scope.labels));
  });

  const accepted: readonly { readonly name: string; readonly flags: WorkloadScopeFlags; readonly labels: Readonly<Record<string, string>> }[] = [
    {
      name: 'adds given pod labels in both their bare and k8s: forms',
      flags: { labels: { app: 'helloworld', version: 'v1' } },
      labels: { app: 'helloworld', version: 'v1', 'k8s:app': 'helloworld', 'k8s:version': 'v1' },
    },
    {
      name: 'accepts a given label in its k8s: form and adds its bare form',
      flags: { labels: { 'k8s:app': 'helloworld' } },
      labels: { app: 'helloworld', 'k8s:app': 'helloworld' },
    },
    {
      name: 'accepts given labels that repeat the derived ones',
      flags: { labels: { app: 'helloworld', [CILIUM_SERVICE_ACCOUNT_LABEL]: 'httpbin', [NAMESPACE_LABEL]: 'foo' } },
      labels: { app: 'helloworld', 'k8s:app': 'helloworld' },
    },
    {
      name: 'accepts given labels that repeat the derived ones in their k8s: form',
      flags: { labels: { [`k8s:${CILIUM_SERVICE_ACCOUNT_LABEL}`]: 'httpbin', [`k8s:${NAMESPACE_LABEL}`]: 'foo' } },
      labels: {},
    },
    { name: 'accepts a --namespace that agrees with the SVID', flags: { namespace: 'foo' }, labels: {} },
  ];
  for (const c of accepted) {
    it(c.name, () => {
      const scope = workloadScopeOf(self, trustDomain, c.flags);
      assert.equal(scope.namespace, 'foo');
      assert.equal(scope.serviceAccount, 'httpbin');
      assert.deepEqual({ ...scope.labels }, {
        ...c.labels,
        [CILIUM_SERVICE_ACCOUNT_LABEL]: 'httpbin',
        [NAMESPACE_LABEL]: 'foo',
        [`k8s:${CILIUM_SERVICE_ACCOUNT_LABEL}`]: 'httpbin',
        [`k8s:${NAMESPACE_LABEL}`]: 'foo',
      });
    });
  }

  const contradictions: readonly { readonly name: string; readonly flags: WorkloadScopeFlags; readonly named: readonly string[] }[] = [
    {
      name: 'refuses a given service-account label that contradicts the SVID',
      flags: { labels: { app: 'helloworld', [CILIUM_SERVICE_ACCOUNT_LABEL]: 'admin' } },
      named: [`${CILIUM_SERVICE_ACCOUNT_LABEL}=admin`],
    },
    {
      name: 'refuses a given namespace label that contradicts the SVID',
      flags: { labels: { [NAMESPACE_LABEL]: 'kube-system' } },
      named: [`${NAMESPACE_LABEL}=kube-system`],
    },
    {
      name: 'refuses a contradicting derived label given in its k8s: form',
      flags: { labels: { [`k8s:${NAMESPACE_LABEL}`]: 'kube-system' } },
      named: [`k8s:${NAMESPACE_LABEL}=kube-system`],
    },
    {
      name: 'refuses a --namespace that contradicts the SVID',
      flags: { namespace: 'bar' },
      named: ['--namespace bar'],
    },
    {
      name: 'names every contradiction at once',
      flags: { namespace: 'bar', labels: { [CILIUM_SERVICE_ACCOUNT_LABEL]: 'admin', [`k8s:${NAMESPACE_LABEL}`]: 'bar' } },
      named: ['--namespace bar', `${CILIUM_SERVICE_ACCOUNT_LABEL}=admin`, `k8s:${NAMESPACE_LABEL}=bar`],
    },
  ];
  for (const c of contradictions) {
    it(c.name, () => {
      const problems = configProblems(() => workloadScopeOf(self, trustDomain, c.flags), 'workload-scope');
      assert.equal(problems.length, c.named.length, problems.join('\n'));
      c.named.forEach((fragment, i) => {
        assert.ok(problems[i]!.includes(fragment), `problem ${i} should name ${fragment}: ${problems[i]}`);
        assert.ok(problems[i]!.includes(SELF), problems[i]);
      });
    });
  }

  const unusable: readonly { readonly name: string; readonly id: string }[] = [
    { name: 'refuses an SVID of another trust domain', id: 'spiffe://other.example/ns/foo/sa/httpbin' },
    { name: 'refuses an SVID without the /ns/<ns>/sa/<sa> form', id: 'spiffe://cluster.local/workload' },
    { name: 'refuses an SVID with segments after the service account', id: 'spiffe://cluster.local/ns/foo/sa/httpbin/extra' },
    { name: 'refuses an SVID with the segments in the wrong order', id: 'spiffe://cluster.local/sa/httpbin/ns/foo' },
  ];
  for (const c of unusable) {
    it(c.name, () => {
      const problems = configProblems(() => workloadScopeOf(mustParseSpiffeId(c.id), trustDomain, { labels: { app: 'helloworld' } }), 'workload-scope');
      assert.equal(problems.length, 1);
      assert.ok(problems[0]!.includes(c.id), problems[0]);
    });
  }
});

const POLICIES = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: bar}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-app, namespace: foo}
spec:
  selector: {matchLabels: {app: reviews}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mine, namespace: foo}
spec:
  selector: {matchLabels: {app: helloworld}}
`;

function engineFor(text: string, labels: Readonly<Record<string, string>>) {
  const scope = workloadScopeOf(self, trustDomain, { labels });
  const loaded = parsePolicyYaml(text, 'policy.yaml', { defaultNamespace: scope.namespace });
  return compilePolicies(loaded.policies, { trustDomain, namespace: scope.namespace, workloadLabels: scope.labels });
}

describe('requireApplicablePolicy', () => {
  const passing: readonly { readonly name: string; readonly text: string; readonly labels: Readonly<Record<string, string>>; readonly meshWide: boolean }[] = [
    { name: 'passes when a policy applies to the workload', text: POLICIES, labels: { app: 'helloworld' }, meshWide: false },
    { name: 'passes with no applicable policy when the file is meant mesh-wide', text: POLICIES, labels: { app: 'ratings' }, meshWide: true },
    { name: 'passes an empty file meant mesh-wide', text: '', labels: {}, meshWide: true },
  ];
  for (const c of passing) {
    it(c.name, () => {
      const engine = engineFor(c.text, c.labels);
      assert.doesNotThrow(() => requireApplicablePolicy(engine, 'policy.yaml', self, c.meshWide));
    });
  }

  it('refuses a file none of whose policies applies, naming each ignored policy and why', () => {
    const engine = engineFor(POLICIES, { app: 'ratings' });
    assert.equal(engine.appliedPolicies.length, 0);
    const problems = configProblems(() => requireApplicablePolicy(engine, 'policy.yaml', self, false), 'policy-not-applicable');
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.ok(problems[0]!.includes('policy.yaml') && problems[0]!.includes(SELF), problems[0]);
    assert.ok(problems[0]!.includes('--mesh-wide-policy'), problems[0]);
    assert.ok(!problems[0]!.includes('holds no policy'), problems[0]);
    assert.equal(problems[1], 'AuthorizationPolicy bar/elsewhere: it is in namespace bar, the workload is in foo');
    assert.equal(problems[2], "AuthorizationPolicy foo/other-app: spec.selector does not match the workload's labels");
    assert.equal(problems[3], "AuthorizationPolicy foo/mine: spec.selector does not match the workload's labels");
  });

  it('refuses a file without any policy, saying it holds none', () => {
    const engine = engineFor('# nothing here\n', {});
    const problems = configProblems(() => requireApplicablePolicy(engine, 'empty.yaml', self, false), 'policy-not-applicable');
    assert.equal(problems.length, 1);
    assert.ok(problems[0]!.includes('empty.yaml') && problems[0]!.includes('(the file holds no policy)'), problems[0]);
  });

  it('judges by what the engine reports applied, whatever else it ignored', () => {
    const engine = { appliedPolicies: [{}], ignoredPolicies: [{ kind: 'CiliumNetworkPolicy', policy: 'foo/x', reason: 'r' }] };
    assert.doesNotThrow(() => requireApplicablePolicy(engine, 'policy.yaml', self, false));
  });
});

describe('workloadScopeOf: pod labels that contradict each other', () => {
  it('refuses a label given twice with two values (bare and k8s: forms)', () => {
    assert.throws(
      () => workloadScopeOf(mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/helloworld'), parseTrustDomain('cluster.local'), { labels: { app: 'a', 'k8s:app': 'b' } }),
      (err: unknown) => err instanceof ConfigError && err.problems.some((p) => /app twice, as a and b/.test(p)),
    );
  });
});
