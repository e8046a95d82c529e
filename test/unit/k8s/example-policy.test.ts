import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { parsePolicyYaml } from '../../../src/files/policy-file.js';
import { compilePolicies } from '../../../src/policy/index.js';
import { mustParseSpiffeId } from '../../../src/spiffe/spiffe-id.js';
import { parseTrustDomain } from '../../../src/spiffe/trust-domain.js';

describe('k8s/examples: the policy the helloworld proxy sidecar enforces', () => {
  test('parses with meshca and allows only sleep to GET /hello, as helloworld-policy.yaml says', async () => {
    const docs = parseAllDocuments(await readFile(new URL('../../../k8s/examples/helloworld.yaml', import.meta.url), 'utf8')).map((d) => d.toJS() as { kind: string; metadata: { name: string }; data?: Record<string, string> });
    const configMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'helloworld-authz');
    assert.ok(configMap?.data?.['policy.yaml'], 'the proxy policy ConfigMap exists');
    const standalone = await readFile(new URL('../../../k8s/examples/helloworld-policy.yaml', import.meta.url), 'utf8');
    assert.deepEqual(parseAllDocuments(configMap.data['policy.yaml']).map((d) => d.toJS()), parseAllDocuments(standalone).map((d) => d.toJS()), 'same document in both places');

    const engine = compilePolicies(parsePolicyYaml(configMap.data['policy.yaml'], 'helloworld-authz').policies, {
      trustDomain: parseTrustDomain('cluster.local'),
      namespace: 'default',
      workloadLabels: { app: 'helloworld' },
    });
    const sleep = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
    const other = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/productpage');
    assert.equal(engine.decide({ peer: sleep, method: 'GET', path: '/hello' }).allowed, true);
    assert.equal(engine.decide({ peer: sleep, method: 'GET', path: '/hello3' }).allowed, false);
    assert.equal(engine.decide({ peer: sleep, method: 'POST', path: '/hello' }).allowed, false);
    assert.equal(engine.decide({ peer: other, method: 'GET', path: '/hello' }).allowed, false);
  });
});
