/**
 * The kustomizations as `kubectl kustomize` renders them (what `kubectl apply -k` sends), and
 * the CA's configuration as `meshca ca serve` parses it from the rendered Deployment's args and
 * env: an overlay that renders but configures something else fails here.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';

import type { V1ClusterRole, V1Deployment } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';

import { systemClock } from '../../../src/clock.js';
import { buildCaServeCommand } from '../../../src/cmd/ca-serve-command.js';
import { parseCaServeConfig, type CaServeConfig } from '../../../src/config/ca-serve-config.js';

const K8S_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../../k8s');
const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
const skip = kubectl.error === undefined ? false : 'kubectl is not installed (Debian: apt-get install kubectl)';

function render(dir: string): Record<string, unknown>[] {
  const out = spawnSync('kubectl', ['kustomize', join(K8S_DIR, dir)], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(out.status, 0, out.stderr);
  return parseAllDocuments(out.stdout).map((d) => d.toJS() as Record<string, unknown>);
}

function find<T>(docs: Record<string, unknown>[], kind: string, name: string): T {
  const found = docs.filter((d) => d['kind'] === kind && (d['metadata'] as { name?: string }).name === name);
  assert.equal(found.length, 1, `one ${kind} ${name}`);
  return found[0] as T;
}

/** What `meshca ca serve` would run with, from the container's args and literal env (downward API values filled in). */
function caConfigOf(deployment: V1Deployment): CaServeConfig {
  const container = deployment.spec!.template.spec!.containers.find((c) => c.name === 'meshca')!;
  const env: Record<string, string> = { POD_NAME: 'meshca-0', POD_NAMESPACE: 'meshca' };
  for (const e of container.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const sink = new Writable({ write: (_c, _e, done) => done() });
    const ca = buildCaServeCommand({ stdout: sink, stderr: sink, clock: systemClock, env: process.env, stdin: [] });
    let config: CaServeConfig | undefined;
    ca.exitOverride().action((_o: unknown, command: { opts(): Record<string, unknown> }) => {
      config = parseCaServeConfig(command.opts());
    });
    const [group, serve, ...rest] = container.args ?? [];
    assert.deepEqual([group, serve], ['ca', 'serve']);
    ca.parse(rest, { from: 'user' });
    assert.ok(config);
    return config;
  } finally {
    for (const key of Object.keys(env)) if (saved[key] === undefined) delete process.env[key];
    Object.assign(process.env, saved);
  }
}

describe('kubectl kustomize', { skip }, () => {
  it('base renders, and the CA it configures: Kubernetes mode, TokenReview, the injector, meshca names', () => {
    const docs = render('base');
    const config = caConfigOf(find<V1Deployment>(docs, 'Deployment', 'meshca'));
    assert.equal(config.auth, 'tokenreview');
    assert.deepEqual(config.kubernetes, { namespace: 'meshca', podName: 'meshca-0' });
    assert.equal(config.rootConfigMap, 'meshca-root-cert');
    assert.equal(config.clusterId, 'Kubernetes');
    assert.deepEqual(config.servingDnsNames, ['meshca.meshca.svc', 'meshca.meshca.svc.cluster.local']);
    assert.equal(config.sidecarInjector?.rootConfigMap, 'meshca-root-cert');
    assert.equal(config.sidecarInjector?.caAddress, 'meshca.meshca.svc:15012');
    assert.ok(find(docs, 'MutatingWebhookConfiguration', 'meshca-sidecar-injector'));
  });

  it("istio renders a CA in Istio's names: istio-ca-root-cert (and RBAC for it), istiod.istio-system.svc in the serving certificate", () => {
    const docs = render('istio');
    const config = caConfigOf(find<V1Deployment>(docs, 'Deployment', 'meshca'));
    assert.equal(config.rootConfigMap, 'istio-ca-root-cert');
    assert.ok(config.servingDnsNames.includes('istiod.istio-system.svc'));
    assert.ok(config.servingDnsNames.includes('meshca.meshca.svc'));
    assert.equal(config.sidecarInjector?.rootConfigMap, 'istio-ca-root-cert', 'injected pods mount the ConfigMap the CA publishes');
    const role = find<V1ClusterRole>(docs, 'ClusterRole', 'meshca');
    const configMapRules = (role.rules ?? []).filter((r) => r.resources?.includes('configmaps') && r.resourceNames);
    assert.deepEqual(configMapRules.map((r) => [r.resourceNames, r.verbs]), [[['istio-ca-root-cert'], ['get', 'update']]]);
  });

  it('examples render', () => {
    const docs = render('examples');
    assert.ok(docs.some((d) => d['kind'] === 'Deployment'));
  });
});
