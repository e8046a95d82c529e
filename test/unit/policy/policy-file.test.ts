import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError } from '../../../src/errors.js';
import { loadPolicyFile, parsePolicyYaml } from '../../../src/files/policy-file.js';
import { compilePolicies } from '../../../src/policy/index.js';
import { parseTrustDomain } from '../../../src/spiffe/index.js';
import { assertProblem, configProblems, request, TD } from './policy-fixtures.js';

// Written the way Istio users write them: a leading `---`, comments, flow and block lists,
// a namespace-wide allow-nothing, then the exceptions.
const ISTIO_YAML = `---
# Lock the namespace down first.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
  namespace: foo
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-viewer
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    to:
    - operation:
        methods: ["GET", "HEAD"]
        paths: ["/status/*", "/headers"]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: deny-admin
  namespace: foo
spec:
  action: DENY
  rules:
  - to:
    - operation:
        paths:
        - /admin*
        ports:
        - "8000"
---
`;

describe('parsePolicyYaml', () => {
  it('loads every document of a multi-document Istio file, in order', () => {
    const loaded = parsePolicyYaml(ISTIO_YAML, 'policies.yaml');
    assert.equal(loaded.source, 'policies.yaml');
    assert.deepEqual(
      loaded.policies.map((p) => `${p.kind} ${p.namespace}/${p.name}`),
      ['AuthorizationPolicy foo/allow-nothing', 'AuthorizationPolicy foo/httpbin-viewer', 'AuthorizationPolicy foo/deny-admin'],
    );
  });

  it('gives an engine that enforces the file', () => {
    const engine = compilePolicies(parsePolicyYaml(ISTIO_YAML, 'policies.yaml').policies, {
      trustDomain: parseTrustDomain(TD),
      namespace: 'foo',
      workloadLabels: { app: 'httpbin' },
    });
    assert.equal(engine.decide(request({ path: '/status/200' })).action, 'ALLOW');
    assert.equal(engine.decide(request({ path: '/admin/status/x' })).action, 'DENY');
    assert.equal(engine.decide(request({ path: '/status/200', method: 'POST' })).action, 'DEFAULT_DENY');
  });

  it('accepts a List, as kubectl get -o yaml prints it', () => {
    const loaded = parsePolicyYaml(
      `apiVersion: v1
kind: List
items:
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: a, namespace: foo}
  spec: {}
- apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: b, namespace: foo}
  spec:
    endpointSelector: {}
    ingress:
    - fromEndpoints:
      - matchLabels:
          io.cilium.k8s.policy.serviceaccount: sleep
`,
      'list.yaml',
    );
    assert.deepEqual(loaded.policies.map((p) => p.kind), ['AuthorizationPolicy', 'CiliumNetworkPolicy']);
  });

  it('takes a missing namespace from defaultNamespace, as kubectl apply -n does', () => {
    const loaded = parsePolicyYaml('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: a\n', 'a.yaml', {
      defaultNamespace: 'bar',
    });
    assert.equal(loaded.policies[0]?.namespace, 'bar');
  });

  it('returns no policies for an empty file or one with only comments', () => {
    assert.equal(parsePolicyYaml('', 'empty.yaml').policies.length, 0);
    assert.equal(parsePolicyYaml('# nothing yet\n---\n', 'comments.yaml').policies.length, 0);
  });

  it('lists every problem of every document with file, line, document and path', () => {
    const problems = configProblems(() =>
      parsePolicyYaml(
        `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bad-one
  namespace: foo
spec:
  action: ALLOW
  rules:
  - from:
    - source:
        ipBlocks: ["10.0.0.0/8"]
    to:
    - operation:
        methods: ["GET", "get"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bad-two
spec:
  action: CUSTOM
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: not-a-policy
`,
        'bad.yaml',
      ),
    );
    assert.equal(problems.length, 5, problems.join('\n'));
    assertProblem(problems, 'bad.yaml:11 (document 1, AuthorizationPolicy foo/bad-one) spec.rules[0].from[0].source.ipBlocks:');
    assertProblem(problems, 'bad.yaml:14 (document 1, AuthorizationPolicy foo/bad-one) spec.rules[0].to[0].operation.methods[1]:', '"GET"');
    assertProblem(problems, 'bad.yaml:', '(document 2, AuthorizationPolicy bad-two) metadata.namespace: is required');
    assertProblem(problems, 'bad.yaml:21 (document 2, AuthorizationPolicy bad-two) spec.action:', 'CUSTOM');
    assertProblem(problems, 'bad.yaml:24 (document 3, document) kind:', '"Deployment" is not a supported kind');
  });

  it('locates problems inside List items', () => {
    const problems = configProblems(() =>
      parsePolicyYaml('kind: List\nitems:\n- apiVersion: security.istio.io/v1\n  kind: AuthorizationPolicy\n  metadata: {name: a, namespace: foo}\n  spec:\n    action: NOPE\n', 'l.yaml'),
    );
    assertProblem(problems, 'l.yaml:7', 'items[0].spec.action');
  });

  it('reports YAML syntax errors with their line', () => {
    const problems = configProblems(() => parsePolicyYaml('kind: AuthorizationPolicy\nspec:\n  rules: [\n', 'broken.yaml'));
    assertProblem(problems, 'broken.yaml:', '(document 1) invalid YAML');
  });

  it('reports duplicate keys, which YAML parsers would otherwise resolve silently', () => {
    const problems = configProblems(() =>
      parsePolicyYaml('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nspec:\n  action: ALLOW\n  action: DENY\n', 'dup.yaml'),
    );
    assertProblem(problems, 'dup.yaml:5', 'invalid YAML');
  });

  it('reports a policy defined twice', () => {
    const doc = 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec: {}\n';
    const problems = configProblems(() => parsePolicyYaml(`${doc}---\n${doc}`, 'twice.yaml'));
    assertProblem(problems, 'twice.yaml:6 (document 2) AuthorizationPolicy foo/a is defined again (first in document 1)');
  });

  it('reports unquoted numeric label values', () => {
    const problems = configProblems(() =>
      parsePolicyYaml('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec:\n  selector:\n    matchLabels:\n      version: 1\n', 'n.yaml'),
    );
    assertProblem(problems, 'n.yaml:7', 'spec.selector.matchLabels.version', 'quote them');
  });
});

describe('loadPolicyFile', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-policy-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads and parses a file', async () => {
    const path = join(dir, 'policies.yaml');
    await writeFile(path, ISTIO_YAML);
    const loaded = await loadPolicyFile(path);
    assert.equal(loaded.source, path);
    assert.equal(loaded.policies.length, 3);
  });

  it('throws ConfigError naming a missing file', async () => {
    const path = join(dir, 'missing.yaml');
    await assert.rejects(loadPolicyFile(path), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'ERR_CONFIG_INVALID');
      assert.ok(err.problems[0]?.includes(`${path}: cannot read policy file: no such file`), err.message);
      return true;
    });
  });

  it('throws ConfigError naming the file for bad content', async () => {
    const path = join(dir, 'bad.yaml');
    await writeFile(path, 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a, namespace: foo}\nspec:\n  endpointSelector: {}\n  egress: [{}]\n');
    await assert.rejects(loadPolicyFile(path), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assertProblem(err.problems, `${path}:6 (document 1, CiliumNetworkPolicy foo/a) spec.egress:`);
      return true;
    });
  });
});
