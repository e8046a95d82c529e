import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { DaemonSet, Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { Pod, Service } from 'kubernetes-models/v1';

import { Writable } from 'node:stream';

import { buildAgentCommand } from '../../../src/cmd/agent-command.js';
import { buildSidecarCommand, parseSidecarConfig } from '../../../src/cmd/sidecar-command.js';
import { parseAgentConfig } from '../../../src/config/agent-config.js';
import { systemClock } from '../../../src/clock.js';
import { ConfigError } from '../../../src/errors.js';
import { injectManifest } from '../../../src/inject/manifest-injection.js';
import { DEFAULT_INJECTION_SETTINGS, injectPod, type PodTemplate } from '../../../src/inject/pod-injection.js';
import { unknownFields } from '../../helpers/kube-schema.js';

const settings = { ...DEFAULT_INJECTION_SETTINGS, image: 'registry.example/meshca:0.1.0', version: '0.1.0' };

function helloworldPod(extra: { annotations?: Record<string, string>; labels?: Record<string, string>; ports?: { name?: string; containerPort: number; protocol?: string }[]; spec?: object } = {}): PodTemplate {
  return {
    metadata: { labels: { app: 'helloworld', version: 'v1', ...extra.labels }, ...(extra.annotations ? { annotations: extra.annotations } : {}) },
    spec: {
      serviceAccountName: 'helloworld',
      containers: [{ name: 'helloworld', image: 'docker.io/istio/examples-helloworld-v1', ports: extra.ports ?? [{ name: 'http', containerPort: 5000 }] }],
      ...extra.spec,
    },
  };
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

function sidecarOf(pod: PodTemplate): Record<string, unknown> & { args: string[] } {
  const sidecar = pod.spec.initContainers?.find((c) => c.name === 'meshca-sidecar');
  assert.ok(sidecar, 'no meshca-sidecar init container');
  return sidecar as unknown as Record<string, unknown> & { args: string[] };
}

function argAfter(args: readonly string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i < 0 ? undefined : args[i + 1];
}

function injected(pod: PodTemplate): PodTemplate {
  const result = injectPod(deepFreeze(pod), settings, 'Pod default/test');
  assert.equal(result.kind, 'injected', result.kind === 'skipped' ? result.reason : '');
  return (result as { pod: PodTemplate }).pod;
}

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${String(err)}`);
    assert.equal(err.code, 'ERR_CONFIG_INVALID');
    return err.problems;
  }
  assert.fail('no error');
}

function validatePod(pod: PodTemplate): void {
  const object = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'test', namespace: 'default', ...pod.metadata }, spec: pod.spec };
  new Pod(object as never).validate();
  const problems: string[] = [];
  unknownFields(object, 'V1Pod', 'pod', problems);
  assert.deepEqual(problems, []);
}

/** The option values `meshca <args[0]>` collects from the injected args and env, with its own parser. */
function parsedOptions(container: Record<string, unknown> & { args: string[] }, expected: 'sidecar' | 'agent'): unknown {
  const env: Record<string, string> = { POD_NAMESPACE: 'default' };
  for (const e of (container['env'] ?? []) as { name: string; value?: string }[]) if (e.value !== undefined) env[e.name] = e.value;
  const sink = new Writable({ write: (_c, _e, done) => done() });
  const io = { stdout: sink, stderr: sink, clock: systemClock, env, stdin: [] };
  const command = expected === 'sidecar' ? buildSidecarCommand(io) : buildAgentCommand(io);
  let values: unknown;
  command.exitOverride().action((opts: unknown) => {
    values = opts;
  });
  const [name, ...rest] = container.args;
  assert.equal(name, expected);
  command.parse(rest, { from: 'user' });
  return values;
}

const sidecarConfigFrom = (container: Record<string, unknown> & { args: string[] }) => parseSidecarConfig(parsedOptions(container, 'sidecar') as never);

describe('injectPod', () => {
  it('injects args and env that `meshca sidecar` itself accepts: inbound with policy, outbound, identity only', () => {
    const inbound = sidecarConfigFrom(sidecarOf(injected(helloworldPod({ annotations: { 'sidecar.meshca.io/policy-configmap': 'authz' } }))));
    assert.equal(inbound.inbound?.upstream.href, 'http://127.0.0.1:5000/');
    assert.equal(inbound.inbound?.policyPath, '/etc/meshca/policy/policy.yaml');
    assert.equal(inbound.inbound?.namespace, 'default');
    assert.deepEqual(inbound.inbound?.labels, { app: 'helloworld', version: 'v1' });
    assert.equal(inbound.outbound, undefined);
    const outbound = sidecarConfigFrom(
      sidecarOf(injected(helloworldPod({ ports: [], annotations: { 'sidecar.meshca.io/outbound-upstream': 'https://helloworld.default.svc:5000', 'sidecar.meshca.io/outbound-trust-domain': 'cluster.local' } }))),
    );
    assert.equal(outbound.outbound?.upstreamTrustDomain, 'cluster.local');
    assert.equal(outbound.inbound, undefined);
    // Nothing to proxy: `meshca agent` (identity as files and over the Workload API), which `sidecar` would refuse.
    const agent = parseAgentConfig(parsedOptions(sidecarOf(injected(helloworldPod({ ports: [] }))), 'agent') as never);
    assert.equal(agent.outDir, '/var/run/secrets/workload-spiffe-credentials');
    assert.equal(agent.healthListen?.port, 15021);
  });

  it('adds the sidecar as the first init container, a native sidecar that the Pod schema accepts with no unknown field', () => {
    const pod = injected(helloworldPod({ spec: { initContainers: [{ name: 'migrate', image: 'busybox' }] } }));
    validatePod(pod);
    assert.deepEqual(pod.spec.initContainers?.map((c) => c.name), ['meshca-sidecar', 'migrate']);
    const sidecar = sidecarOf(pod);
    assert.equal(sidecar['restartPolicy'], 'Always');
    assert.equal(sidecar['image'], 'registry.example/meshca:0.1.0');
    // args only: the image's entrypoint is meshca, also on distroless where there is no shell or PATH lookup.
    assert.equal(sidecar['command'], undefined);
    assert.equal(sidecar.args[0], 'sidecar');
    assert.equal(argAfter(sidecar.args, '--ca-address'), 'meshca.meshca.svc:15012');
    assert.equal(argAfter(sidecar.args, '--inbound-listen'), '0.0.0.0:15006');
    assert.equal(argAfter(sidecar.args, '--inbound-upstream'), 'http://127.0.0.1:5000');
    assert.equal(argAfter(sidecar.args, '--workload-labels'), 'app=helloworld,version=v1');
    assert.equal(argAfter(sidecar.args, '--policy'), undefined);
  });

  it('authenticates with a projected istio-ca token, trusts the published root, keeps the SVID in memory', () => {
    const pod = injected(helloworldPod());
    const volumes = Object.fromEntries((pod.spec.volumes ?? []).map((v) => [v.name, v]));
    assert.deepEqual(volumes['meshca-istio-token'], {
      name: 'meshca-istio-token',
      projected: { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 3600, path: 'istio-token' } }] },
    });
    assert.deepEqual(volumes['meshca-root-cert'], { name: 'meshca-root-cert', configMap: { name: 'meshca-root-cert', items: [{ key: 'root-cert.pem', path: 'root-cert.pem' }] } });
    assert.deepEqual(volumes['meshca-credentials'], { name: 'meshca-credentials', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } });
    const sidecar = sidecarOf(pod);
    assert.equal(argAfter(sidecar.args, '--token-file'), '/var/run/secrets/tokens/istio-token');
    assert.equal(argAfter(sidecar.args, '--ca-root'), '/var/run/secrets/meshca/root-cert.pem');
    assert.deepEqual(sidecar['volumeMounts'], [
      { name: 'meshca-istio-token', mountPath: '/var/run/secrets/tokens', readOnly: true },
      { name: 'meshca-root-cert', mountPath: '/var/run/secrets/meshca', readOnly: true },
      { name: 'meshca-credentials', mountPath: '/var/run/secrets/workload-spiffe-credentials' },
      { name: 'meshca-workload-socket', mountPath: '/var/run/secrets/workload-spiffe-uds' },
    ]);
    assert.deepEqual(sidecar['env'], [
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'NODE_OPTIONS', value: DEFAULT_INJECTION_SETTINGS.nodeOptions },
    ]);
  });

  it('runs the sidecar restricted: non-root 65532, read-only root, no capabilities, RuntimeDefault seccomp; probes on its health port', () => {
    const sidecar = sidecarOf(injected(helloworldPod()));
    assert.deepEqual(sidecar['securityContext'], {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    assert.deepEqual((sidecar['startupProbe'] as { httpGet: unknown }).httpGet, { path: '/ready', port: 'meshca-health' });
    assert.deepEqual((sidecar['livenessProbe'] as { httpGet: unknown }).httpGet, { path: '/healthz', port: 'meshca-health' });
    assert.deepEqual(sidecar['ports'], [
      { name: 'meshca-mtls', containerPort: 15006, protocol: 'TCP' },
      { name: 'meshca-health', containerPort: 15021, protocol: 'TCP' },
    ]);
  });

  it('gives app containers the SVID files and the Workload API socket, read-only, with SPIFFE_ENDPOINT_SOCKET', () => {
    const pod = injected(helloworldPod());
    const app = pod.spec.containers[0]!;
    assert.deepEqual(app.env, [{ name: 'SPIFFE_ENDPOINT_SOCKET', value: 'unix:///var/run/secrets/workload-spiffe-uds/socket' }]);
    assert.deepEqual(app.volumeMounts, [
      { name: 'meshca-credentials', mountPath: '/var/run/secrets/workload-spiffe-credentials', readOnly: true },
      { name: 'meshca-workload-socket', mountPath: '/var/run/secrets/workload-spiffe-uds', readOnly: true },
    ]);
  });

  it("sets fsGroup 65532 so the sidecar can read the projected token, and keeps the pod's own", () => {
    assert.equal(injected(helloworldPod()).spec.securityContext?.['fsGroup'], 65532);
    const own = injected(helloworldPod({ spec: { securityContext: { fsGroup: 2000, runAsNonRoot: true } } }));
    assert.deepEqual(own.spec.securityContext, { fsGroup: 2000, runAsNonRoot: true });
  });

  it("points annotation-driven Prometheus scrapes at the sidecar's metrics, unless the pod names its own", () => {
    const annotations = injected(helloworldPod()).metadata.annotations ?? {};
    assert.deepEqual([annotations['prometheus.io/scrape'], annotations['prometheus.io/port'], annotations['prometheus.io/path']], ['true', '15021', '/metrics']);
    const own = injected(helloworldPod({ annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090' } })).metadata.annotations ?? {};
    assert.equal(own['prometheus.io/port'], '9090');
    assert.equal(own['prometheus.io/path'], undefined);
  });

  it('is idempotent: an injected pod comes back unchanged', () => {
    const once = injected(helloworldPod());
    assert.deepEqual(injectPod(deepFreeze(once), settings, 'p'), { kind: 'skipped', reason: 'already injected' });
  });

  it('does not mutate its input', () => {
    const pod = helloworldPod();
    const before = JSON.stringify(pod);
    injectPod(pod, settings, 'p');
    assert.equal(JSON.stringify(pod), before);
  });

  it('opt-out by annotation or label sidecar.meshca.io/inject: "false"; hostNetwork pods are skipped', () => {
    assert.deepEqual(injectPod(helloworldPod({ annotations: { 'sidecar.meshca.io/inject': 'false' } }), settings, 'p'), { kind: 'skipped', reason: 'sidecar.meshca.io/inject: "false"' });
    assert.deepEqual(injectPod(helloworldPod({ labels: { 'sidecar.meshca.io/inject': 'false' } }), settings, 'p'), { kind: 'skipped', reason: 'sidecar.meshca.io/inject: "false"' });
    assert.equal(injectPod(helloworldPod({ spec: { hostNetwork: true } }), settings, 'p').kind, 'skipped');
    assert.deepEqual(problemsOf(() => injectPod(helloworldPod({ annotations: { 'sidecar.meshca.io/inject': 'no' } }), settings, 'Pod a/b')), [
      'Pod a/b: sidecar.meshca.io/inject must be "true" or "false", not "no"',
    ]);
  });

  it('the policy ConfigMap annotation mounts the policy and passes --policy', () => {
    const pod = injected(helloworldPod({ annotations: { 'sidecar.meshca.io/policy-configmap': 'helloworld-authz' } }));
    validatePod(pod);
    assert.equal(argAfter(sidecarOf(pod).args, '--policy'), '/etc/meshca/policy/policy.yaml');
    assert.deepEqual(
      pod.spec.volumes?.find((v) => v.name === 'meshca-policy'),
      { name: 'meshca-policy', configMap: { name: 'helloworld-authz', items: [{ key: 'policy.yaml', path: 'policy.yaml' }] } },
    );
  });

  it('outbound annotations add the outbound proxy on 127.0.0.1:15001, pinned to the upstream identity', () => {
    const pod = injected(
      helloworldPod({
        ports: [],
        annotations: {
          'sidecar.meshca.io/outbound-upstream': 'https://helloworld.default.svc:5000',
          'sidecar.meshca.io/outbound-spiffe-id': 'spiffe://cluster.local/ns/default/sa/helloworld',
        },
      }),
    );
    validatePod(pod);
    const { args } = sidecarOf(pod);
    assert.equal(argAfter(args, '--outbound-listen'), '127.0.0.1:15001');
    assert.equal(argAfter(args, '--outbound-upstream'), 'https://helloworld.default.svc:5000');
    assert.equal(argAfter(args, '--outbound-spiffe-id'), 'spiffe://cluster.local/ns/default/sa/helloworld');
    // No app port: no inbound proxy, no mTLS port.
    assert.equal(argAfter(args, '--inbound-listen'), undefined);
    assert.deepEqual((sidecarOf(pod)['ports'] as { name: string }[]).map((p) => p.name), ['meshca-health']);
  });

  it('chooses the app port: the one declared, or the annotation by number, name or "none"', () => {
    const twoPorts = [{ name: 'http', containerPort: 5000 }, { name: 'metrics', containerPort: 9090 }];
    assert.equal(argAfter(sidecarOf(injected(helloworldPod({ ports: twoPorts, annotations: { 'sidecar.meshca.io/app-port': '9090' } }))).args, '--inbound-upstream'), 'http://127.0.0.1:9090');
    assert.equal(argAfter(sidecarOf(injected(helloworldPod({ ports: twoPorts, annotations: { 'sidecar.meshca.io/app-port': 'http' } }))).args, '--inbound-upstream'), 'http://127.0.0.1:5000');
    assert.equal(argAfter(sidecarOf(injected(helloworldPod({ ports: twoPorts, annotations: { 'sidecar.meshca.io/app-port': 'none' } }))).args, '--inbound-listen'), undefined);
    // A UDP port is not something an HTTP proxy fronts.
    assert.equal(argAfter(sidecarOf(injected(helloworldPod({ ports: [{ containerPort: 53, protocol: 'UDP' }] }))).args, '--inbound-listen'), undefined);
  });

  // One row per way an injected sidecar would fail to start or protect nothing: refused, every problem listed.
  const refused: readonly { name: string; pod: PodTemplate; problems: readonly string[] }[] = [
    {
      name: 'several ports and no app-port annotation',
      pod: helloworldPod({ ports: [{ containerPort: 5000 }, { containerPort: 9090 }] }),
      problems: ['Pod default/test: the containers declare ports 5000, 9090; say which one the sidecar fronts with the annotation sidecar.meshca.io/app-port (a number, a port name, or "none")'],
    },
    {
      name: 'an app-port that is neither a number nor a declared name',
      pod: helloworldPod({ annotations: { 'sidecar.meshca.io/app-port': '70000' } }),
      problems: ['Pod default/test: sidecar.meshca.io/app-port must be a port number, a container port name or "none", not "70000"'],
    },
    {
      name: "a container on the sidecar's port",
      pod: helloworldPod({ ports: [{ containerPort: 15021 }] }),
      problems: ["Pod default/test: port 15021 is the sidecar's, but a container already declares it"],
    },
    {
      name: "a volume with the sidecar's name",
      pod: helloworldPod({ spec: { volumes: [{ name: 'meshca-credentials', emptyDir: {} }] } }),
      problems: ["Pod default/test: volume meshca-credentials is the sidecar's, but the pod already has one"],
    },
    {
      name: 'an outbound upstream that is not https',
      pod: helloworldPod({ annotations: { 'sidecar.meshca.io/outbound-upstream': 'http://helloworld:5000', 'sidecar.meshca.io/outbound-trust-domain': 'cluster.local' } }),
      problems: ['Pod default/test: sidecar.meshca.io/outbound-upstream must be an https:// origin (the mTLS service), not "http://helloworld:5000"'],
    },
    {
      name: 'an outbound upstream with no identity to pin',
      pod: helloworldPod({ annotations: { 'sidecar.meshca.io/outbound-upstream': 'https://helloworld:5000' } }),
      problems: ['Pod default/test: sidecar.meshca.io/outbound-upstream needs exactly one of sidecar.meshca.io/outbound-spiffe-id and sidecar.meshca.io/outbound-trust-domain: who the upstream must be'],
    },
    {
      name: 'an outbound SPIFFE ID that is not one',
      pod: helloworldPod({ annotations: { 'sidecar.meshca.io/outbound-upstream': 'https://helloworld:5000', 'sidecar.meshca.io/outbound-spiffe-id': 'spiffe://cluster.local/ns/../sa/x' } }),
      problems: [],
    },
    {
      name: 'a policy with no port to enforce it on',
      pod: helloworldPod({ ports: [], annotations: { 'sidecar.meshca.io/policy-configmap': 'authz' } }),
      problems: ['Pod default/test: sidecar.meshca.io/policy-configmap needs an app port for the inbound proxy to enforce it on (sidecar.meshca.io/app-port)'],
    },
  ];
  for (const row of refused) {
    it(`refuses ${row.name}`, () => {
      const problems = problemsOf(() => injectPod(row.pod, settings, 'Pod default/test'));
      if (row.problems.length > 0) assert.deepEqual(problems, row.problems);
      else assert.match(problems.join('\n'), /^Pod default\/test: sidecar\.meshca\.io\/outbound-spiffe-id: /);
    });
  }
});

describe('injectManifest (meshca inject -f)', () => {
  const template = helloworldPod();
  const workloads = [
    new Deployment({ metadata: { name: 'a', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'helloworld' } }, template: template as never } }),
    new StatefulSet({ metadata: { name: 'b', namespace: 'default' }, spec: { serviceName: 'b', selector: { matchLabels: { app: 'helloworld' } }, template: template as never } }),
    new DaemonSet({ metadata: { name: 'c', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'helloworld' } }, template: template as never } }),
    new Job({ metadata: { name: 'd', namespace: 'default' }, spec: { template: { ...template, spec: { ...template.spec, restartPolicy: 'Never' } } as never } }),
    new CronJob({ metadata: { name: 'e', namespace: 'default' }, spec: { schedule: '* * * * *', jobTemplate: { spec: { template: { ...template, spec: { ...template.spec, restartPolicy: 'Never' } } as never } } } }),
    new Pod({ metadata: { name: 'f', namespace: 'default', ...template.metadata }, spec: template.spec as never }),
  ].map((m) => JSON.parse(JSON.stringify(m.toJSON())) as Record<string, unknown>);

  it('injects Deployments, StatefulSets, DaemonSets, Jobs, CronJobs and Pods, each still valid against its schema', () => {
    const { documents, notes } = injectManifest(deepFreeze(workloads), settings);
    const models = [Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod];
    documents.forEach((doc, i) => {
      new models[i]!(doc as never).validate();
      const problems: string[] = [];
      unknownFields(doc, `V1${String((doc as { kind: string }).kind)}`, String(i), problems);
      assert.deepEqual(problems, []);
      assert.match(JSON.stringify(doc), /"name":"meshca-sidecar"/);
    });
    assert.equal(notes.length, 6);
  });

  it('injects inside a List, leaves other kinds alone, and is idempotent', () => {
    const configMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: { a: 'b' } };
    const list = { apiVersion: 'v1', kind: 'List', items: [workloads[0], configMap] };
    const once = injectManifest([list, null], settings).documents;
    assert.deepEqual((once[0] as { items: unknown[] }).items[1], configMap);
    assert.equal(once[1], null);
    assert.deepEqual(injectManifest(once, settings).documents, once);
  });

  it("points the Services that select an injected pod at the sidecar's mTLS port, whether targetPort is a number, a name or absent", () => {
    const service = (name: string, ports: object[], extra: { namespace?: string; selector?: Record<string, string> } = {}) =>
      new Service({ metadata: { name, namespace: extra.namespace ?? 'default' }, spec: { selector: extra.selector ?? { app: 'helloworld' }, ports: ports as never } }).toJSON();
    const docs = [
      service('by-number', [{ port: 80, targetPort: 5000 }]),
      service('by-name', [{ port: 80, targetPort: 'http' }]),
      service('implicit', [{ port: 5000 }]),
      service('other-port', [{ port: 9090 }]),
      service('other-namespace', [{ port: 5000 }], { namespace: 'prod' }),
      service('other-app', [{ port: 5000 }], { selector: { app: 'sleep' } }),
      workloads[0],
    ];
    const { documents, notes } = injectManifest(docs, settings);
    const targets = documents.slice(0, 6).map((d) => ((d as { spec: { ports: { targetPort?: unknown }[] } }).spec.ports[0]!.targetPort));
    assert.deepEqual(targets, ['meshca-mtls', 'meshca-mtls', 'meshca-mtls', undefined, undefined, undefined]);
    for (const d of documents.slice(0, 3)) new Service(d as never).validate();
    assert.ok(notes.includes("Service default/by-number port 80: targetPort 5000 -> meshca-mtls (the sidecar's mTLS port)"));
  });

  it('lists the problems of every workload at once and writes nothing', () => {
    const bad = (name: string) => ({ ...workloads[0], metadata: { name, namespace: 'default' }, spec: { ...(workloads[0]!['spec'] as object), template: helloworldPod({ ports: [{ containerPort: 1 }, { containerPort: 2 }] }) } });
    const problems = problemsOf(() => injectManifest([bad('x'), bad('y')], settings));
    assert.equal(problems.length, 2);
    assert.match(problems[0]!, /^Deployment default\/x: the containers declare ports 1, 2/);
    assert.match(problems[1]!, /^Deployment default\/y: /);
  });
});
