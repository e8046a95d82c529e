import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Deployment } from 'kubernetes-models/apps/v1';
import { Service } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';

import { meshca, runMeshca } from '../helpers/cli.js';

const APP = `# helloworld, before injection
apiVersion: v1
kind: Service
metadata:
  name: helloworld
  namespace: default
spec:
  selector:
    app: helloworld
  ports:
    - name: http
      port: 5000
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: helloworld
  namespace: default
spec:
  selector:
    matchLabels:
      app: helloworld
  template:
    metadata:
      labels:
        app: helloworld
      annotations:
        sidecar.meshca.io/policy-configmap: helloworld-authz
    spec:
      serviceAccountName: helloworld
      containers:
        - name: helloworld
          image: docker.io/istio/examples-helloworld-v1
          ports:
            - containerPort: 5000
---
`;

describe('meshca inject -f', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-inject-'));
    await writeFile(join(dir, 'app.yaml'), APP);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  test('writes the manifest back with the sidecar and the Service retargeted, and says what it did on stderr', async () => {
    const res = await meshca(['inject', '-f', join(dir, 'app.yaml'), '--sidecar-image', 'registry.example/meshca:0.1.0']);
    assert.equal(res.code, 0, res.stderr);
    const docs = parseAllDocuments(res.stdout).map((d) => d.toJS() as Record<string, unknown>);
    assert.equal(docs.length, 2);
    const service = new Service(docs[0] as never);
    service.validate();
    assert.equal(service.spec?.ports?.[0]?.targetPort, 'meshca-mtls');
    const deployment = new Deployment(docs[1] as never);
    deployment.validate();
    const sidecar = deployment.spec?.template.spec?.initContainers?.[0];
    assert.equal(sidecar?.name, 'meshca-sidecar');
    assert.equal(sidecar?.image, 'registry.example/meshca:0.1.0');
    assert.deepEqual(res.stderr.trim().split('\n'), [
      'meshca inject: Deployment default/helloworld: sidecar injected, fronting port 5000',
      "meshca inject: Service default/helloworld port 5000: targetPort 5000 -> meshca-mtls (the sidecar's mTLS port)",
    ]);

    // Idempotent, and reads stdin with -f -.
    const again = await runMeshca(['inject', '-f', '-', '--sidecar-image', 'registry.example/meshca:0.1.0'], { input: res.stdout });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, res.stdout);
    assert.equal(again.stderr.trim(), 'meshca inject: Deployment default/helloworld: not injected (already injected)');
  });

  // Each failure: exit 2 (usage and configuration, as for every meshca command), nothing on stdout (no half-injected manifest to apply), the cause on stderr.
  const failures: readonly { name: string; args: (d: string) => string[]; input?: string; stderr: RegExp }[] = [
    { name: 'a missing file', args: (d) => ['inject', '-f', join(d, 'nope.yaml')], stderr: /-f .*nope\.yaml: no such file/ },
    { name: 'YAML that does not parse', args: () => ['inject', '-f', '-'], input: 'kind: [unclosed\n', stderr: /-f -: document 1: / },
    {
      name: 'a pod that cannot be injected',
      args: () => ['inject', '-f', '-'],
      input: 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: two\n  namespace: default\nspec:\n  containers:\n    - name: a\n      image: x\n      ports: [{containerPort: 1}, {containerPort: 2}]\n',
      stderr: /Pod default\/two: the containers declare ports 1, 2; say which one .*sidecar\.meshca\.io\/app-port/,
    },
    { name: 'a bad pull policy', args: (d) => ['inject', '-f', join(d, 'app.yaml'), '--sidecar-image-pull-policy', 'Sometimes'], stderr: /--sidecar-image-pull-policy must be one of Always, IfNotPresent, Never/ },
    { name: 'no -f', args: () => ['inject'], stderr: /-f, --filename <file>' not specified/ },
  ];
  for (const f of failures) {
    test(`exits 2 with the cause for ${f.name}`, async () => {
      const res = await runMeshca(f.args(dir), f.input === undefined ? {} : { input: f.input });
      assert.equal(res.code, 2, res.stderr);
      assert.equal(res.stdout, '');
      assert.match(res.stderr, f.stderr);
      assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace');
    });
  }
});
