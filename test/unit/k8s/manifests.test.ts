/**
 * The manifests under k8s/ are code too: they must parse, validate against the Kubernetes
 * schemas, carry no misspelt fields (the schemas allow unknown keys, the API server would drop
 * them silently), keep the CA's security posture, and grant exactly what src/k8s uses.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as clientNode from '@kubernetes/client-node';
import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1Container,
  V1Deployment,
  V1MutatingWebhook,
  V1PodDisruptionBudget,
  V1PodSpec,
  V1PolicyRule,
  V1Role,
  V1RoleBinding,
  V1Service,
  V1ServiceAccount,
} from '@kubernetes/client-node';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { unknownFields } from '../../helpers/kube-schema.js';

import { DEFAULT_PLUGIN_SECRET_NAME, DEFAULT_SELF_SIGNED_SECRET_NAME } from '../../../src/k8s/authority-secret.js';
import { DEFAULT_JWT_KEY_SECRET_NAME } from '../../../src/k8s/jwt-key-secret.js';
import { DEFAULT_LEASE_NAME } from '../../../src/k8s/leader-election.js';
import { DEFAULT_ROOT_CONFIGMAP_NAME, ROOT_CERT_KEY } from '../../../src/k8s/root-publisher.js';
import { DEFAULT_WEBHOOK_CONFIGURATION_NAME } from '../../../src/k8s/webhook-ca-bundle.js';
import { DEFAULT_INJECTION_SETTINGS, injectPod } from '../../../src/inject/pod-injection.js';

const K8S_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../../k8s');
const CA_NAMESPACE = 'meshca';

type ModelClass = new (data: never) => { validate(): void };

/** Schema classes by `apiVersion/kind`. A manifest of any other kind fails the test until it is added. */
const MODELS: Readonly<Record<string, ModelClass>> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': MutatingWebhookConfiguration,
};

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration']);

interface Manifest {
  readonly file: string;
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace: string | undefined;
  readonly object: Record<string, unknown>;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => (entry.isDirectory() ? yamlFiles(join(dir, entry.name)) : /\.ya?ml$/.test(entry.name) ? [join(dir, entry.name)] : []))
    .sort();
}

function loadAll(): { manifests: Manifest[]; kustomizations: Map<string, Record<string, unknown>> } {
  const manifests: Manifest[] = [];
  const kustomizations = new Map<string, Record<string, unknown>>();
  for (const path of yamlFiles(K8S_DIR)) {
    const file = relative(K8S_DIR, path);
    const docs = parseAllDocuments(readFileSync(path, 'utf8'));
    assert.ok(Array.isArray(docs), `${file}: not a YAML stream`);
    for (const doc of docs) {
      assert.deepEqual(doc.errors.map((e) => e.message), [], `${file}: YAML errors`);
      assert.deepEqual(doc.warnings.map((e) => e.message), [], `${file}: YAML warnings`);
      const object = doc.toJS() as Record<string, unknown> | null;
      if (object === null) continue;
      if (object['kind'] === 'Kustomization') {
        kustomizations.set(file, object);
        continue;
      }
      const metadata = (object['metadata'] ?? {}) as { name?: string; namespace?: string };
      manifests.push({
        file,
        apiVersion: String(object['apiVersion']),
        kind: String(object['kind']),
        name: String(metadata.name),
        namespace: metadata.namespace,
        object,
      });
    }
  }
  return { manifests, kustomizations };
}

const { manifests, kustomizations } = loadAll();

function find<T>(kind: string, name: string, where?: (m: Manifest) => boolean): T {
  const found = manifests.filter((m) => m.kind === kind && m.name === name && (where?.(m) ?? true));
  assert.equal(found.length, 1, `exactly one ${kind} ${name}`);
  return found[0]!.object as T;
}

const inBase = (m: Manifest): boolean => m.file.startsWith('base/');
const inExamples = (m: Manifest): boolean => m.file.startsWith('examples/');

// --- a small RBAC evaluator, to check grants against what src/k8s actually does ----------------

interface Request {
  readonly apiGroup: string;
  readonly resource: string;
  readonly verb: string;
  readonly namespace?: string;
  readonly name?: string;
}

function ruleAllows(rule: V1PolicyRule, request: Request): boolean {
  return (
    (rule.apiGroups ?? []).includes(request.apiGroup) &&
    (rule.resources ?? []).includes(request.resource) &&
    rule.verbs.includes(request.verb) &&
    (rule.resourceNames === undefined || rule.resourceNames.length === 0 || (request.name !== undefined && rule.resourceNames.includes(request.name)))
  );
}

function rulesOf(kind: 'Role' | 'ClusterRole', name: string, namespace?: string): readonly V1PolicyRule[] {
  return find<V1Role | V1ClusterRole>(kind, name, (m) => inBase(m) && (namespace === undefined || m.namespace === namespace)).rules ?? [];
}

/** Whether the meshca service account may make `request`, through the bindings in k8s/base. */
function meshcaMay(request: Request): boolean {
  const isMeshca = (s: { kind: string; name: string; namespace?: string }) => s.kind === 'ServiceAccount' && s.name === 'meshca' && s.namespace === CA_NAMESPACE;
  const base = manifests.filter(inBase);
  const clusterRules = base
    .filter((m) => m.kind === 'ClusterRoleBinding')
    .map((m) => m.object as unknown as V1ClusterRoleBinding)
    .filter((b) => (b.subjects ?? []).some(isMeshca) && b.roleRef.kind === 'ClusterRole' && !b.roleRef.name.startsWith('system:'))
    .flatMap((b) => rulesOf('ClusterRole', b.roleRef.name));
  const namespacedRules = base
    .filter((m) => m.kind === 'RoleBinding' && m.namespace === request.namespace)
    .map((m) => m.object as unknown as V1RoleBinding)
    .filter((b) => (b.subjects ?? []).some(isMeshca))
    .flatMap((b) => (b.roleRef.kind === 'Role' ? rulesOf('Role', b.roleRef.name, request.namespace) : rulesOf('ClusterRole', b.roleRef.name)));
  return [...clusterRules, ...namespacedRules].some((rule) => ruleAllows(rule, request));
}

// --- helpers over pod specs ----------------------------------------------------------------------

function podSpec(deployment: V1Deployment): V1PodSpec {
  const spec = deployment.spec?.template.spec;
  assert.ok(spec, `${deployment.metadata?.name}: pod template has a spec`);
  return spec;
}

function allContainers(spec: V1PodSpec): V1Container[] {
  return [...(spec.initContainers ?? []), ...spec.containers];
}

function argAfter(container: V1Container, flag: string): string | undefined {
  const args = [...(container.command ?? []), ...(container.args ?? [])];
  const index = args.indexOf(flag);
  return index < 0 ? undefined : args[index + 1];
}

function portNumber(container: V1Container, port: unknown): number | undefined {
  if (typeof port === 'number') return port;
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

function labelsMatch(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  return selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** The mount (volume name and path) under which `path` lives in `container`. */
function mountFor(container: V1Container, path: string): { name: string; mountPath: string } | undefined {
  return container.volumeMounts?.find((m) => path === m.mountPath || path.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
}

// --------------------------------------------------------------------------------------------------

describe('k8s manifests', () => {
  describe('parse and schema', () => {
    it('finds the base and example manifests', () => {
      assert.ok(manifests.filter(inBase).length >= 8);
      assert.ok(manifests.filter(inExamples).length >= 5);
    });

    it('every document validates against the schema of its apiVersion and kind', () => {
      for (const m of manifests) {
        if (m.apiVersion === 'security.istio.io/v1' || m.apiVersion === 'monitoring.coreos.com/v1') continue; // CRDs: checked structurally below
        const model = MODELS[`${m.apiVersion}/${m.kind}`];
        assert.ok(model, `${m.file}: no schema registered for ${m.apiVersion} ${m.kind}`);
        let problem: string | undefined;
        try {
          new model(m.object as never).validate();
        } catch (err) {
          // Keep only the message: the validator's error drags its whole ajv instance along.
          problem = (err as Error).message;
        }
        assert.equal(problem, undefined, `${m.file}: ${m.kind} ${m.name}`);
      }
    });

    it('no document carries a field the API does not know (a typo the server would silently drop)', () => {
      const problems: string[] = [];
      for (const m of manifests) {
        if (m.apiVersion === 'security.istio.io/v1' || m.apiVersion === 'monitoring.coreos.com/v1') continue;
        unknownFields(m.object, `V1${m.kind}`, `${m.file}:${m.kind}/${m.name}`, problems);
      }
      assert.deepEqual(problems, []);
    });

    it('the unknown-field check catches a misspelt field', () => {
      const problems: string[] = [];
      unknownFields({ spec: { template: { spec: { containers: [{ name: 'x', securityContext: { readOnlyRootFileSystem: true } }] } } } }, 'V1Deployment', 'probe', problems);
      assert.deepEqual(problems, ['probe.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem']);
    });

    it('names are unique per kind and namespace, and namespaced base objects live in the meshca namespace', () => {
      const seen = new Set<string>();
      for (const m of manifests) {
        const key = `${m.kind}/${m.namespace ?? ''}/${m.name}`;
        assert.ok(!seen.has(key), `duplicate ${key}`);
        seen.add(key);
        if (CLUSTER_SCOPED.has(m.kind)) assert.equal(m.namespace, undefined, `${m.file}: ${m.kind} is cluster-scoped`);
        else if (inBase(m)) assert.equal(m.namespace, CA_NAMESPACE, `${m.file}: ${m.kind} ${m.name}`);
        else assert.ok(m.namespace, `${m.file}: ${m.kind} ${m.name} names its namespace`);
      }
    });
  });

  describe('kustomize', () => {
    for (const dir of ['base', 'examples', 'monitoring']) {
      it(`${dir}/kustomization.yaml lists every manifest file of ${dir}/ and nothing else`, () => {
        const kustomization = kustomizations.get(`${dir}/kustomization.yaml`);
        assert.ok(kustomization, `${dir}/kustomization.yaml exists`);
        assert.equal(kustomization['apiVersion'], 'kustomize.config.k8s.io/v1beta1');
        const resources = kustomization['resources'];
        assert.ok(Array.isArray(resources) && resources.every((r) => typeof r === 'string'));
        const files = yamlFiles(join(K8S_DIR, dir))
          .map((p) => relative(join(K8S_DIR, dir), p))
          .filter((f) => f !== 'kustomization.yaml');
        assert.deepEqual([...resources].sort(), files.sort());
      });
    }
  });

  describe('the CA deployment', () => {
    const deployment = find<V1Deployment>('Deployment', 'meshca', inBase);
    const spec = podSpec(deployment);
    const ca = spec.containers.find((c) => c.name === 'meshca');
    const podLabels = deployment.spec?.template.metadata?.labels;

    it('runs at least two replicas, spread over nodes', () => {
      assert.ok((deployment.spec?.replicas ?? 1) >= 2);
      assert.ok(labelsMatch(deployment.spec?.selector.matchLabels, podLabels));
      const spread = spec.topologySpreadConstraints?.some((t) => t.topologyKey === 'kubernetes.io/hostname' && labelsMatch(t.labelSelector?.matchLabels, podLabels));
      const antiAffinity = spec.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.some(
        (t) => t.podAffinityTerm.topologyKey === 'kubernetes.io/hostname' && labelsMatch(t.podAffinityTerm.labelSelector?.matchLabels, podLabels),
      );
      assert.ok(spread && antiAffinity);
      assert.equal(deployment.spec?.strategy?.rollingUpdate?.maxUnavailable, 0);
    });

    it('is protected by a PodDisruptionBudget that keeps one replica', () => {
      const pdb = find<V1PodDisruptionBudget>('PodDisruptionBudget', 'meshca', inBase);
      assert.equal(pdb.spec?.minAvailable, 1);
      assert.ok(labelsMatch(pdb.spec?.selector?.matchLabels, podLabels));
    });

    it('runs the CA in Kubernetes mode with TokenReview and the documented listeners', () => {
      assert.ok(ca);
      assert.equal(ca.image, 'meshca:latest');
      assert.deepEqual(
        [...(ca.command ?? []), ...(ca.args ?? [])],
        [
          'ca', 'serve', '--auth', 'tokenreview', '--kubernetes',
          '--grpc-listen', '0.0.0.0:15012', '--http-listen', '0.0.0.0:15014',
          '--sidecar-injector', '--sidecar-image', 'meshca:latest',
        ],
      );
      assert.equal(spec.serviceAccountName, 'meshca');
      const fieldRef = (name: string) => ca.env?.find((e) => e.name === name)?.valueFrom?.fieldRef?.fieldPath;
      assert.equal(fieldRef('POD_NAME'), 'metadata.name');
      assert.equal(fieldRef('POD_NAMESPACE'), 'metadata.namespace');
    });

    it('has HTTPS readiness (/readyz) and liveness (/healthz) probes on 15014', () => {
      assert.ok(ca);
      for (const [probe, path] of [
        [ca.readinessProbe, '/readyz'],
        [ca.livenessProbe, '/healthz'],
      ] as const) {
        assert.equal(probe?.httpGet?.path, path);
        assert.equal(probe?.httpGet?.scheme, 'HTTPS');
        assert.equal(portNumber(ca, probe?.httpGet?.port), 15014);
      }
    });

    it('runs as non-root 65532 with a read-only root filesystem, no privilege escalation, no capabilities and the runtime seccomp profile', () => {
      assert.equal(spec.securityContext?.runAsNonRoot, true);
      assert.equal(spec.securityContext?.runAsUser, 65532);
      assert.equal(spec.securityContext?.seccompProfile?.type, 'RuntimeDefault');
      for (const c of allContainers(spec)) {
        const sc = c.securityContext;
        assert.equal(sc?.runAsNonRoot, true, c.name);
        assert.equal(sc?.runAsUser, 65532, c.name);
        assert.equal(sc?.readOnlyRootFilesystem, true, c.name);
        assert.equal(sc?.allowPrivilegeEscalation, false, c.name);
        assert.notEqual(sc?.privileged, true, c.name);
        assert.deepEqual(sc?.capabilities?.drop, ['ALL'], c.name);
        assert.equal(sc?.capabilities?.add, undefined, c.name);
        assert.equal(sc?.seccompProfile?.type, 'RuntimeDefault', c.name);
      }
      assert.notEqual(spec.hostNetwork, true);
      assert.notEqual(spec.hostPID, true);
    });

    it('has resource requests and limits and writable scratch space on emptyDirs only', () => {
      for (const c of allContainers(spec)) {
        for (const r of ['cpu', 'memory']) {
          assert.ok(c.resources?.requests?.[r], `${c.name} requests ${r}`);
          assert.ok(c.resources?.limits?.[r], `${c.name} limits ${r}`);
        }
        for (const mount of c.volumeMounts ?? []) {
          const volume = spec.volumes?.find((v) => v.name === mount.name);
          assert.ok(volume?.emptyDir, `${c.name}: ${mount.mountPath} is an emptyDir`);
        }
      }
      assert.ok(ca && mountFor(ca, '/tmp/x'), '/tmp is writable');
    });

    it('the Service exposes grpc 15012, https 15014 and http-monitoring 15016 of the CA pods', () => {
      const service = find<V1Service>('Service', 'meshca', inBase);
      assert.ok(labelsMatch(service.spec?.selector, podLabels));
      const ports = Object.fromEntries((service.spec?.ports ?? []).map((p) => [p.name, [p.port, ca ? portNumber(ca, p.targetPort) : undefined]]));
      assert.deepEqual(ports, { grpc: [15012, 15012], https: [15014, 15014], 'http-monitoring': [15016, 15016] });
    });

    it('the namespace enforces the restricted Pod Security level', () => {
      const ns = manifests.find((m) => m.kind === 'Namespace' && m.name === CA_NAMESPACE);
      const labels = (ns?.object['metadata'] as { labels?: Record<string, string> } | undefined)?.labels;
      assert.equal(labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
    });
  });

  describe('the sidecar injection webhook', () => {
    const webhookConfig = find<{ webhooks: V1MutatingWebhook[] }>('MutatingWebhookConfiguration', DEFAULT_WEBHOOK_CONFIGURATION_NAME);
    const webhook = webhookConfig.webhooks[0]!;
    const ca = podSpec(find<V1Deployment>('Deployment', 'meshca', inBase)).containers.find((c) => c.name === 'meshca');

    it("calls POST /inject on the CA Service's HTTPS port, which the CA serves with --sidecar-injector", () => {
      const service = find<V1Service>('Service', 'meshca', inBase);
      const https = service.spec?.ports?.find((p) => p.name === 'https');
      assert.deepEqual(webhook.clientConfig.service, { name: 'meshca', namespace: CA_NAMESPACE, path: '/inject', port: https?.port });
      assert.ok(ca?.args?.includes('--sidecar-injector'));
      // The CA fills caBundle in (the mesh root signs its serving certificate): none is shipped.
      assert.equal(webhook.clientConfig.caBundle, undefined);
      const servingNames = ca?.env?.find((e) => e.name === 'MESHCA_SERVING_DNS_NAMES')?.value ?? '';
      assert.ok(servingNames.split(',').includes('meshca.meshca.svc'), 'the name the API server dials is in the serving certificate');
    });

    it('admits pod CREATEs only, v1 reviews, no side effects, and fails closed', () => {
      assert.deepEqual(webhook.rules, [{ apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], operations: ['CREATE'], scope: 'Namespaced' }]);
      assert.deepEqual(webhook.admissionReviewVersions, ['v1']);
      assert.equal(webhook.sideEffects, 'None');
      assert.equal(webhook.failurePolicy, 'Fail');
      assert.ok((webhook.timeoutSeconds ?? 10) <= 10);
    });

    it('injects only namespaces labelled meshca-injection=enabled, never the CA or system namespaces, and honours the opt-out label', () => {
      const expressions = webhook.namespaceSelector?.matchExpressions ?? [];
      assert.deepEqual(expressions.find((e) => e.key === 'meshca-injection'), { key: 'meshca-injection', operator: 'In', values: ['enabled'] });
      const excluded = expressions.find((e) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'NotIn')?.values ?? [];
      for (const ns of [CA_NAMESPACE, 'kube-system']) assert.ok(excluded.includes(ns), `${ns} is excluded`);
      assert.deepEqual(webhook.objectSelector?.matchExpressions, [{ key: 'sidecar.meshca.io/inject', operator: 'NotIn', values: ['false'] }]);
    });
  });

  describe('monitoring', () => {
    it("the ServiceMonitor scrapes the Service's plain-HTTP http-monitoring port, which the CA serves with --monitoring-listen", () => {
      const monitor = find<{ spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] } }>('ServiceMonitor', 'meshca');
      const service = find<V1Service>('Service', 'meshca', inBase);
      assert.ok(labelsMatch(monitor.spec.selector.matchLabels, service.metadata?.labels));
      const port = service.spec?.ports?.find((p) => p.name === monitor.spec.endpoints[0]!.port);
      assert.ok(port, 'the endpoint names a Service port');
      const ca = podSpec(find<V1Deployment>('Deployment', 'meshca', inBase)).containers.find((c) => c.name === 'meshca')!;
      const listen = ca.env?.find((e) => e.name === 'MESHCA_MONITORING_LISTEN')?.value;
      assert.equal(listen, `0.0.0.0:${ca.ports?.find((p) => p.name === port.targetPort)?.containerPort}`);
      assert.equal(monitor.spec.endpoints[0]!.path, '/metrics');
    });

    const scrapeConfig = () => find<{ data: Record<string, string> }>('ConfigMap', 'meshca-prometheus-scrape-config').data['prometheus.yml']!;

    it("the plain Prometheus scrape config keeps exactly the CA's monitoring port and the injected sidecars' health port", () => {
      const jobs = (parseAllDocuments(scrapeConfig())[0]!.toJS() as { scrape_configs: { job_name: string; relabel_configs: { regex?: string; action?: string }[] }[] }).scrape_configs;
      const keep = (job: string) => jobs.find((j) => j.job_name === job)?.relabel_configs.find((r) => r.action === 'keep')?.regex;
      const ca = podSpec(find<V1Deployment>('Deployment', 'meshca', inBase)).containers.find((c) => c.name === 'meshca')!;
      assert.equal(keep('meshca-ca'), `meshca;${ca.ports?.find((p) => p.containerPort === 15016)?.name}`);
      const injected = injectPod({ metadata: {}, spec: { containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }] } }, DEFAULT_INJECTION_SETTINGS, 'p');
      assert.equal(injected.kind, 'injected');
      const sidecar = (injected as unknown as { pod: { spec: { initContainers: V1Container[] } } }).pod.spec.initContainers[0]!;
      assert.equal(keep('meshca-sidecars'), `${sidecar.name};${sidecar.ports?.find((p) => p.containerPort === 15021)?.name}`);
    });

    // Debian's prometheus is built without Kubernetes service discovery, so its promtool cannot
    // read kubernetes_sd_configs; an upstream promtool can.
    const promtool = spawnSync('promtool', ['--version']);
    it('the plain Prometheus scrape config passes promtool check config', { skip: promtool.error ? 'promtool is not installed' : false }, (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'meshca-promtool-'));
      try {
        writeFileSync(join(dir, 'prometheus.yml'), scrapeConfig());
        const out = spawnSync('promtool', ['check', 'config', join(dir, 'prometheus.yml')], { encoding: 'utf8' });
        if (/field kubernetes_sd_configs not found/.test(out.stdout + out.stderr)) {
          t.skip('this promtool has no Kubernetes service discovery (Debian builds it without)');
          return;
        }
        assert.equal(out.status, 0, out.stdout + out.stderr);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('RBAC', () => {
    const roles = manifests.filter((m) => m.kind === 'Role' || m.kind === 'ClusterRole');

    it('uses no wildcard verbs, resources or API groups', () => {
      for (const m of roles) {
        for (const rule of (m.object as unknown as V1Role).rules ?? []) {
          for (const value of [...rule.verbs, ...(rule.resources ?? []), ...(rule.apiGroups ?? []), ...(rule.resourceNames ?? [])]) {
            assert.ok(!value.includes('*'), `${m.file}: ${m.kind} ${m.name} has a wildcard`);
          }
          assert.equal(rule.nonResourceURLs, undefined);
        }
      }
    });

    it('grants no access to Secrets cluster-wide', () => {
      for (const m of manifests.filter((x) => x.kind === 'ClusterRole')) {
        assert.ok(!((m.object as unknown as V1ClusterRole).rules ?? []).some((r) => r.resources?.includes('secrets')), `${m.name} mentions secrets`);
      }
      assert.equal(meshcaMay({ apiGroup: '', resource: 'secrets', verb: 'get', namespace: 'default', name: DEFAULT_PLUGIN_SECRET_NAME }), false);
    });

    it('names its objects wherever RBAC can: only create and list go without resourceNames', () => {
      for (const m of roles) {
        for (const rule of (m.object as unknown as V1Role).rules ?? []) {
          if (rule.resourceNames === undefined) {
            assert.ok(rule.verbs.every((v) => v === 'create' || v === 'list'), `${m.kind} ${m.name}: ${rule.verbs.join(',')} on ${rule.resources?.join(',')} without resourceNames`);
          }
        }
      }
    });

    it('allows exactly what the CA does with the API', () => {
      const ns = CA_NAMESPACE;
      const allowed: Request[] = [
        { apiGroup: '', resource: 'secrets', verb: 'get', namespace: ns, name: DEFAULT_PLUGIN_SECRET_NAME },
        { apiGroup: '', resource: 'secrets', verb: 'get', namespace: ns, name: DEFAULT_SELF_SIGNED_SECRET_NAME },
        { apiGroup: '', resource: 'secrets', verb: 'get', namespace: ns, name: DEFAULT_JWT_KEY_SECRET_NAME },
        { apiGroup: '', resource: 'secrets', verb: 'create', namespace: ns },
        { apiGroup: '', resource: 'secrets', verb: 'update', namespace: ns, name: DEFAULT_SELF_SIGNED_SECRET_NAME },
        { apiGroup: 'coordination.k8s.io', resource: 'leases', verb: 'get', namespace: ns, name: DEFAULT_LEASE_NAME },
        { apiGroup: 'coordination.k8s.io', resource: 'leases', verb: 'update', namespace: ns, name: DEFAULT_LEASE_NAME },
        { apiGroup: 'coordination.k8s.io', resource: 'leases', verb: 'create', namespace: ns },
        { apiGroup: '', resource: 'namespaces', verb: 'list' },
        { apiGroup: '', resource: 'configmaps', verb: 'get', namespace: 'shop', name: DEFAULT_ROOT_CONFIGMAP_NAME },
        { apiGroup: '', resource: 'configmaps', verb: 'update', namespace: 'shop', name: DEFAULT_ROOT_CONFIGMAP_NAME },
        { apiGroup: '', resource: 'configmaps', verb: 'create', namespace: 'shop' },
        { apiGroup: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', verb: 'get', name: DEFAULT_WEBHOOK_CONFIGURATION_NAME },
        { apiGroup: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', verb: 'update', name: DEFAULT_WEBHOOK_CONFIGURATION_NAME },
      ];
      for (const request of allowed) assert.ok(meshcaMay(request), `meshca may ${JSON.stringify(request)}`);
      const denied: Request[] = [
        { apiGroup: '', resource: 'secrets', verb: 'get', namespace: ns, name: 'someone-elses-secret' },
        { apiGroup: '', resource: 'secrets', verb: 'update', namespace: ns, name: DEFAULT_PLUGIN_SECRET_NAME },
        { apiGroup: '', resource: 'secrets', verb: 'list', namespace: ns },
        { apiGroup: '', resource: 'secrets', verb: 'delete', namespace: ns, name: DEFAULT_SELF_SIGNED_SECRET_NAME },
        { apiGroup: 'coordination.k8s.io', resource: 'leases', verb: 'update', namespace: ns, name: 'kube-controller-manager' },
        { apiGroup: '', resource: 'configmaps', verb: 'get', namespace: 'shop', name: 'app-config' },
        { apiGroup: '', resource: 'configmaps', verb: 'delete', namespace: 'shop', name: DEFAULT_ROOT_CONFIGMAP_NAME },
        { apiGroup: '', resource: 'pods', verb: 'list', namespace: 'shop' },
        { apiGroup: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', verb: 'update', name: 'istio-sidecar-injector' },
        { apiGroup: 'admissionregistration.k8s.io', resource: 'validatingwebhookconfigurations', verb: 'update', name: DEFAULT_WEBHOOK_CONFIGURATION_NAME },
      ];
      for (const request of denied) assert.ok(!meshcaMay(request), `meshca may not ${JSON.stringify(request)}`);
    });

    it('binds system:auth-delegator for TokenReview', () => {
      const binding = manifests
        .filter((m) => m.kind === 'ClusterRoleBinding')
        .map((m) => m.object as unknown as V1ClusterRoleBinding)
        .find((b) => b.roleRef.name === 'system:auth-delegator');
      assert.ok(binding);
      assert.equal(binding.roleRef.kind, 'ClusterRole');
      assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'meshca', namespace: CA_NAMESPACE }]);
    });

    it('every binding refers to a role defined here (or a built-in system: role)', () => {
      for (const m of manifests.filter((x) => x.kind === 'RoleBinding' || x.kind === 'ClusterRoleBinding')) {
        const ref = (m.object as unknown as V1RoleBinding).roleRef;
        if (ref.name.startsWith('system:')) continue;
        assert.ok(manifests.some((r) => r.kind === ref.kind && r.name === ref.name && (ref.kind === 'ClusterRole' || r.namespace === m.namespace)), `${m.name} -> ${ref.kind} ${ref.name}`);
      }
    });
  });

  describe('example workloads', () => {
    const workloads = manifests.filter((m) => inExamples(m) && m.kind === 'Deployment').map((m) => m.object as unknown as V1Deployment);

    it('include helloworld (with a Service) and sleep', () => {
      assert.deepEqual(workloads.map((d) => d.metadata?.name).sort(), ['helloworld', 'sleep']);
      const service = find<V1Service>('Service', 'helloworld', inExamples);
      const hello = workloads.find((d) => d.metadata?.name === 'helloworld');
      assert.ok(hello && labelsMatch(service.spec?.selector, hello.spec?.template.metadata?.labels));
    });

    for (const name of ['helloworld', 'sleep']) {
      describe(name, () => {
        const deployment = workloads.find((d) => d.metadata?.name === name);
        assert.ok(deployment);
        const spec = podSpec(deployment);
        const agent = spec.initContainers?.find((c) => c.name === 'meshca-sidecar');
        const apps = spec.containers;

        it('runs under its own service account without the API-server token', () => {
          const sa = find<V1ServiceAccount>('ServiceAccount', spec.serviceAccountName ?? '', inExamples);
          assert.equal(sa.metadata?.namespace, deployment.metadata?.namespace);
          assert.equal(spec.automountServiceAccountToken, false);
        });

        it('gets a projected token for the istio-ca audience, mounted where the agent reads it', () => {
          assert.ok(agent);
          const tokenFile = argAfter(agent, '--token-file');
          assert.ok(tokenFile);
          const mount = mountFor(agent, tokenFile);
          assert.ok(mount, 'the token file is on a mount');
          const source = spec.volumes?.find((v) => v.name === mount.name)?.projected?.sources?.find((s) => s.serviceAccountToken);
          assert.equal(source?.serviceAccountToken?.audience, 'istio-ca');
          assert.equal(source?.serviceAccountToken?.expirationSeconds, 3600);
          assert.equal(`${mount.mountPath}/${source?.serviceAccountToken?.path}`, tokenFile);
        });

        it('runs one meshca process, `meshca sidecar`, as a native sidecar against the CA Service, trusting the published root', () => {
          assert.ok(agent);
          assert.equal(agent.restartPolicy, 'Always');
          // The image's entrypoint is meshca (also on distroless, where nothing is on a PATH).
          assert.equal(agent.command, undefined);
          assert.equal(agent.args?.[0], 'sidecar');
          assert.deepEqual(
            allContainers(spec).filter((c) => c.image?.startsWith('meshca')).map((c) => c.name),
            ['meshca-sidecar'],
            'no second meshca container',
          );
          assert.equal(argAfter(agent, '--ca-address'), 'meshca.meshca.svc:15012');
          const caRoot = argAfter(agent, '--ca-root');
          assert.ok(caRoot);
          const mount = mountFor(agent, caRoot);
          assert.ok(mount);
          const volume = spec.volumes?.find((v) => v.name === mount.name);
          assert.equal(volume?.configMap?.name, DEFAULT_ROOT_CONFIGMAP_NAME);
          assert.equal(`${mount.mountPath}/${ROOT_CERT_KEY}`, caRoot);
          assert.ok(agent.startupProbe?.httpGet, 'the app waits for the first SVID');
        });

        it('shares the credential files and the Workload API socket with the app on in-memory emptyDirs', () => {
          assert.ok(agent);
          for (const flag of ['--out', '--workload-api-socket']) {
            const path = argAfter(agent, flag);
            assert.ok(path, flag);
            const agentMount = mountFor(agent, flag === '--out' ? `${path}/key.pem` : path);
            assert.ok(agentMount, `${flag} is on a mount`);
            assert.notEqual((agent.volumeMounts ?? []).find((m) => m.name === agentMount.name)?.readOnly, true);
            const volume = spec.volumes?.find((v) => v.name === agentMount.name);
            assert.equal(volume?.emptyDir?.medium, 'Memory', `${flag} volume stays off disk`);
            assert.ok(apps.some((c) => c.volumeMounts?.some((m) => m.name === agentMount.name && m.readOnly === true)), `the app mounts ${flag} read-only`);
          }
        });

        it('runs every container as non-root without privilege escalation', () => {
          assert.equal(spec.securityContext?.runAsNonRoot, true);
          assert.equal(spec.securityContext?.seccompProfile?.type, 'RuntimeDefault');
          for (const c of allContainers(spec)) {
            assert.equal(c.securityContext?.allowPrivilegeEscalation, false, c.name);
            assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], c.name);
          }
        });
      });
    }

    it('the AuthorizationPolicy lets only sleep call GET /hello on helloworld', () => {
      const policy = find<Record<string, unknown>>('AuthorizationPolicy', 'helloworld', inExamples);
      assert.equal(policy['apiVersion'], 'security.istio.io/v1');
      const spec = policy['spec'] as {
        selector?: { matchLabels?: Record<string, string> };
        action?: string;
        rules?: { from?: { source?: Record<string, unknown> }[]; to?: { operation?: Record<string, unknown> }[]; when?: unknown[] }[];
      };
      assert.deepEqual(Object.keys(spec).sort(), ['action', 'rules', 'selector']);
      assert.equal(spec.action, 'ALLOW');
      const hello = workloads.find((d) => d.metadata?.name === 'helloworld');
      assert.ok(labelsMatch(spec.selector?.matchLabels, hello?.spec?.template.metadata?.labels));
      assert.equal((policy['metadata'] as { namespace?: string }).namespace, hello?.metadata?.namespace);

      const sleep = workloads.find((d) => d.metadata?.name === 'sleep');
      const sleepPrincipal = `cluster.local/ns/${sleep?.metadata?.namespace}/sa/${sleep?.spec?.template.spec?.serviceAccountName}`;
      assert.equal(spec.rules?.length, 1);
      const [rule] = spec.rules ?? [];
      const SOURCE_FIELDS = new Set(['principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks']);
      const OPERATION_FIELDS = new Set(['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths']);
      for (const f of rule?.from ?? []) for (const k of Object.keys(f.source ?? {})) assert.ok(SOURCE_FIELDS.has(k), `source.${k}`);
      for (const t of rule?.to ?? []) for (const k of Object.keys(t.operation ?? {})) assert.ok(OPERATION_FIELDS.has(k), `operation.${k}`);
      assert.deepEqual(rule?.from, [{ source: { principals: [sleepPrincipal] } }]);
      assert.deepEqual(rule?.to, [{ operation: { methods: ['GET'], paths: ['/hello'] } }]);
      assert.equal(rule?.when, undefined);
    });

    it('the sidecars serve /ready and /healthz on their --health-listen port, and probes use them', () => {
      for (const workload of workloads) {
        const sidecar = workload.spec?.template.spec?.initContainers?.find((c) => c.name === 'meshca-sidecar');
        assert.ok(sidecar, workload.metadata?.name);
        const args = sidecar.args ?? [];
        assert.equal(args[args.indexOf('--health-listen') + 1], '0.0.0.0:15021');
        for (const [probe, path] of [
          [sidecar.startupProbe, '/ready'],
          [sidecar.readinessProbe, '/ready'],
          [sidecar.livenessProbe, '/healthz'],
        ] as const) {
          assert.equal(probe?.httpGet?.path, path);
          assert.equal(portNumber(sidecar, probe?.httpGet?.port), 15021);
        }
      }
    });

    it('helloworld enforces its policy inbound; sleep calls helloworld outbound, accepting only its SPIFFE ID', () => {
      const [hello, sleep] = ['helloworld', 'sleep'].map((n) => workloads.find((d) => d.metadata?.name === n)?.spec?.template.spec?.initContainers?.find((c) => c.name === 'meshca-sidecar'));
      assert.ok(hello && sleep);
      assert.equal(argAfter(hello, '--inbound-upstream'), 'http://127.0.0.1:5000');
      assert.equal(portNumber(hello, 'mtls'), Number(argAfter(hello, '--inbound-listen')?.split(':')[1]));
      assert.ok(mountFor(hello, argAfter(hello, '--policy') ?? ''), 'the policy file is mounted');
      assert.equal(argAfter(sleep, '--outbound-upstream'), 'https://helloworld.default.svc:5000');
      assert.equal(argAfter(sleep, '--outbound-spiffe-id'), 'spiffe://cluster.local/ns/default/sa/helloworld');
      assert.match(argAfter(sleep, '--outbound-listen') ?? '', /^127\.0\.0\.1:/, 'the plain side listens on loopback only');
    });

    it("the sidecars' memory requests and limits sit above the RSS the bench measured, with the NODE_OPTIONS it measured", () => {
      // bench/footprint.json is written by `npm run bench -- sidecar`, which runs the sidecar with
      // this manifest's NODE_OPTIONS after ~80,000 proxied requests.
      const footprint = JSON.parse(readFileSync(join(K8S_DIR, '../bench/footprint.json'), 'utf8')) as { sidecarRssMb: number; sidecarNodeOptions: string };
      const mebibytes = (q: string | undefined): number => {
        const m = /^(\d+)(Mi|Gi)$/.exec(q ?? '');
        assert.ok(m, `memory quantity ${q} in Mi or Gi`);
        return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
      };
      const measuredMi = (footprint.sidecarRssMb * 1e6) / 2 ** 20;
      for (const workload of workloads) {
        const sidecar = workload.spec?.template.spec?.initContainers?.find((c) => c.name === 'meshca-sidecar');
        assert.ok(sidecar);
        const name = workload.metadata?.name;
        assert.equal(sidecar.env?.find((e) => e.name === 'NODE_OPTIONS')?.value, footprint.sidecarNodeOptions, `${name}: measured as shipped`);
        const request = mebibytes(String(sidecar.resources?.requests?.['memory']));
        const limit = mebibytes(String(sidecar.resources?.limits?.['memory']));
        assert.ok(request >= measuredMi, `${name}: request ${request}Mi below the measured ${measuredMi.toFixed(0)}Mi`);
        assert.ok(limit >= 2 * measuredMi, `${name}: limit ${limit}Mi leaves less than 2x headroom over ${measuredMi.toFixed(0)}Mi`);
      }
    });
  });
});
