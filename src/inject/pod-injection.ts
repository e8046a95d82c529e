/**
 * Adds the meshca sidecar to a pod spec, as `istioctl kube-inject` and Istio's injection webhook
 * add istio-proxy: one transform shared by `meshca inject -f` and the admission webhook, so what a
 * user previews is what the cluster runs.
 *
 * The sidecar is a native sidecar (an init container with `restartPolicy: Always`, Kubernetes
 * 1.29+), first among the init containers so the others already have an identity, held back by
 * its startup probe until the first SVID is in. It authenticates with a projected token for the
 * `istio-ca` audience and trusts the root from the published ConfigMap; the API-server token is
 * neither needed nor touched.
 *
 * Pure: objects in, objects out. Unknown fields are kept as they are; the input is not mutated.
 */
import { isDns1123Subdomain } from '../authn/authenticator.js';
import { ConfigError } from '../errors.js';
import { parseSpiffeId } from '../spiffe/spiffe-id.js';
import { parseTrustDomain } from '../spiffe/trust-domain.js';

/** Pod annotations (and, for `inject`, labels) that steer injection; Istio's `sidecar.istio.io/*` in meshca's name. */
export const INJECT_ANNOTATION = 'sidecar.meshca.io/inject';
export const STATUS_ANNOTATION = 'sidecar.meshca.io/status';
export const APP_PORT_ANNOTATION = 'sidecar.meshca.io/app-port';
export const POLICY_ANNOTATION = 'sidecar.meshca.io/policy-configmap';
export const OUTBOUND_UPSTREAM_ANNOTATION = 'sidecar.meshca.io/outbound-upstream';
export const OUTBOUND_SPIFFE_ID_ANNOTATION = 'sidecar.meshca.io/outbound-spiffe-id';
export const OUTBOUND_TRUST_DOMAIN_ANNOTATION = 'sidecar.meshca.io/outbound-trust-domain';

export const SIDECAR_CONTAINER_NAME = 'meshca-sidecar';
/** Istio's port numbers: 15006 inbound, 15001 outbound, 15021 health. */
export const INBOUND_PORT = 15006;
export const OUTBOUND_PORT = 15001;
export const HEALTH_PORT = 15021;
/** The sidecar's named port; a Service's `targetPort` names it to reach the pod through mTLS and policy. */
export const MTLS_PORT_NAME = 'meshca-mtls';
const HEALTH_PORT_NAME = 'meshca-health';
const NONROOT = 65532;

const MOUNTS = {
  token: { volume: 'meshca-istio-token', path: '/var/run/secrets/tokens' },
  root: { volume: 'meshca-root-cert', path: '/var/run/secrets/meshca' },
  credentials: { volume: 'meshca-credentials', path: '/var/run/secrets/workload-spiffe-credentials' },
  socket: { volume: 'meshca-workload-socket', path: '/var/run/secrets/workload-spiffe-uds' },
  policy: { volume: 'meshca-policy', path: '/etc/meshca/policy' },
} as const;
const TOKEN_FILE = 'istio-token';
const ROOT_FILE = 'root-cert.pem';
const POLICY_FILE = 'policy.yaml';
const SOCKET_FILE = 'socket';

export interface InjectionSettings {
  /** The meshca image; its entrypoint is `meshca`. */
  readonly image: string;
  readonly imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** The CA's gRPC address as pods resolve it, e.g. `meshca.meshca.svc:15012`. */
  readonly caAddress: string;
  /** The ConfigMap the CA publishes the root in (`meshca-root-cert`; Istio: `istio-ca-root-cert`). */
  readonly rootConfigMap: string;
  /** Audience of the projected token the CA accepts. */
  readonly tokenAudience: string;
  readonly tokenExpirationSeconds: number;
  /** V8 flags that keep the sidecar near its measured footprint (bench/footprint.json). */
  readonly nodeOptions: string;
  readonly resources: { readonly requests: Readonly<Record<string, string>>; readonly limits: Readonly<Record<string, string>> };
  /** Recorded in the status annotation. */
  readonly version: string;
}

export const DEFAULT_INJECTION_SETTINGS: InjectionSettings = Object.freeze({
  image: 'meshca:latest',
  imagePullPolicy: 'IfNotPresent',
  caAddress: 'meshca.meshca.svc:15012',
  rootConfigMap: 'meshca-root-cert',
  tokenAudience: 'istio-ca',
  tokenExpirationSeconds: 3600,
  nodeOptions: '--max-semi-space-size=1 --max-old-space-size=64 --v8-pool-size=1',
  resources: Object.freeze({ requests: Object.freeze({ cpu: '20m', memory: '96Mi' }), limits: Object.freeze({ cpu: '500m', memory: '192Mi' }) }),
  version: '0.0.0',
});

/** Kubernetes objects as JSON: the fields injection reads are typed, the rest is carried through. */
export type KubeObject = Record<string, unknown>;
export interface PodMetadata {
  readonly name?: string;
  readonly generateName?: string;
  readonly namespace?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly [key: string]: unknown;
}
interface ContainerPort {
  readonly name?: string;
  readonly containerPort: number;
  readonly protocol?: string;
}
interface Container {
  readonly name: string;
  readonly ports?: readonly ContainerPort[];
  readonly env?: readonly KubeObject[];
  readonly volumeMounts?: readonly KubeObject[];
  readonly [key: string]: unknown;
}
export interface PodSpec {
  readonly containers: readonly Container[];
  readonly initContainers?: readonly Container[];
  readonly volumes?: readonly (KubeObject & { name: string })[];
  readonly securityContext?: KubeObject;
  readonly hostNetwork?: boolean;
  readonly [key: string]: unknown;
}
export interface PodTemplate {
  readonly metadata: PodMetadata;
  readonly spec: PodSpec;
}

export type PodInjectionResult =
  | { readonly kind: 'injected'; readonly pod: PodTemplate; readonly appPort: number | undefined; readonly appPortName: string | undefined }
  | { readonly kind: 'skipped'; readonly reason: string };

/**
 * What injection does to one pod. `where` names the pod in messages ("Deployment default/helloworld").
 * Throws `ConfigError` listing every problem (a bad annotation, a port or volume the sidecar needs
 * already taken) rather than injecting a sidecar that cannot start or protects nothing.
 */
export function injectPod(pod: PodTemplate, settings: InjectionSettings, where: string): PodInjectionResult {
  const meta = pod.metadata ?? {};
  const annotations = meta.annotations ?? {};
  const labels = meta.labels ?? {};
  const spec = pod.spec;
  if (!spec || !Array.isArray(spec.containers)) throw new ConfigError([`${where}: no pod spec with containers`]);
  for (const source of [labels, annotations]) {
    const value = source[INJECT_ANNOTATION];
    if (value !== undefined && value !== 'true' && value !== 'false') {
      throw new ConfigError([`${where}: ${INJECT_ANNOTATION} must be "true" or "false", not ${JSON.stringify(value)}`]);
    }
    if (value === 'false') return { kind: 'skipped', reason: `${INJECT_ANNOTATION}: "false"` };
  }
  if (annotations[STATUS_ANNOTATION] !== undefined || [...(spec.initContainers ?? []), ...spec.containers].some((c) => c.name === SIDECAR_CONTAINER_NAME)) {
    return { kind: 'skipped', reason: 'already injected' };
  }
  // With the host's network the sidecar's ports would be the node's, shared by every such pod.
  if (spec.hostNetwork === true) return { kind: 'skipped', reason: 'hostNetwork pod' };

  const problems: string[] = [];
  const app = chooseAppPort(spec, annotations, where, problems);
  const outbound = parseOutbound(annotations, where, problems);
  const policyConfigMap = annotations[POLICY_ANNOTATION];
  if (policyConfigMap !== undefined && !isDns1123Subdomain(policyConfigMap)) problems.push(`${where}: ${POLICY_ANNOTATION} must name a ConfigMap, not ${JSON.stringify(policyConfigMap)}`);
  if (policyConfigMap !== undefined && app === undefined) problems.push(`${where}: ${POLICY_ANNOTATION} needs an app port for the inbound proxy to enforce it on (${APP_PORT_ANNOTATION})`);

  const used = new Set(spec.containers.flatMap((c) => (c.ports ?? []).map((p: ContainerPort) => p.containerPort)));
  for (const port of [HEALTH_PORT, ...(app ? [INBOUND_PORT] : []), ...(outbound ? [OUTBOUND_PORT] : [])]) {
    if (used.has(port)) problems.push(`${where}: port ${port} is the sidecar's, but a container already declares it`);
  }
  const volumes = [MOUNTS.token, MOUNTS.root, MOUNTS.credentials, MOUNTS.socket, ...(policyConfigMap ? [MOUNTS.policy] : [])];
  const volumeNames = new Set((spec.volumes ?? []).map((v) => v.name));
  for (const v of volumes) if (volumeNames.has(v.volume)) problems.push(`${where}: volume ${v.volume} is the sidecar's, but the pod already has one`);
  if (problems.length > 0) throw new ConfigError(problems);

  // With nothing to proxy, the pod still gets its identity (files, Workload API): `meshca agent`,
  // which `meshca sidecar` would refuse to stand in for.
  const args = [
    app || outbound ? 'sidecar' : 'agent',
    '--ca-address', settings.caAddress,
    '--ca-root', `${MOUNTS.root.path}/${ROOT_FILE}`,
    '--token-file', `${MOUNTS.token.path}/${TOKEN_FILE}`,
    '--out', MOUNTS.credentials.path,
    '--workload-api-socket', `${MOUNTS.socket.path}/${SOCKET_FILE}`,
    '--health-listen', `0.0.0.0:${HEALTH_PORT}`,
  ];
  if (app) {
    args.push('--inbound-listen', `0.0.0.0:${INBOUND_PORT}`, '--inbound-upstream', `http://127.0.0.1:${app.port}`);
    if (policyConfigMap) args.push('--policy', `${MOUNTS.policy.path}/${POLICY_FILE}`);
    // Labels are the pod's at admission: policy selectors match on them (a template change makes new pods).
    const workloadLabels = Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',');
    if (workloadLabels) args.push('--workload-labels', workloadLabels);
  }
  if (outbound) {
    args.push('--outbound-listen', `127.0.0.1:${OUTBOUND_PORT}`, '--outbound-upstream', outbound.upstream);
    args.push(...(outbound.spiffeId ? ['--outbound-spiffe-id', outbound.spiffeId] : ['--outbound-trust-domain', outbound.trustDomain!]));
  }

  const sidecar: KubeObject = {
    name: SIDECAR_CONTAINER_NAME,
    image: settings.image,
    imagePullPolicy: settings.imagePullPolicy,
    restartPolicy: 'Always',
    args,
    env: [
      // --namespace must agree with the SVID; the sidecar refuses to start otherwise.
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'NODE_OPTIONS', value: settings.nodeOptions },
    ],
    ports: [
      ...(app ? [{ name: MTLS_PORT_NAME, containerPort: INBOUND_PORT, protocol: 'TCP' }] : []),
      { name: HEALTH_PORT_NAME, containerPort: HEALTH_PORT, protocol: 'TCP' },
    ],
    // /ready is 503 until the SVID is in and every proxy listens: the app starts only then.
    // /healthz only says the process answers, so a CA outage never restarts the pod.
    startupProbe: { httpGet: { path: '/ready', port: HEALTH_PORT_NAME }, periodSeconds: 1, failureThreshold: 120 },
    readinessProbe: { httpGet: { path: '/ready', port: HEALTH_PORT_NAME }, periodSeconds: 5 },
    livenessProbe: { httpGet: { path: '/healthz', port: HEALTH_PORT_NAME }, periodSeconds: 10 },
    resources: { requests: { ...settings.resources.requests }, limits: { ...settings.resources.limits } },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: NONROOT,
      runAsGroup: NONROOT,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: MOUNTS.token.volume, mountPath: MOUNTS.token.path, readOnly: true },
      { name: MOUNTS.root.volume, mountPath: MOUNTS.root.path, readOnly: true },
      { name: MOUNTS.credentials.volume, mountPath: MOUNTS.credentials.path },
      { name: MOUNTS.socket.volume, mountPath: MOUNTS.socket.path },
      ...(policyConfigMap ? [{ name: MOUNTS.policy.volume, mountPath: MOUNTS.policy.path, readOnly: true }] : []),
    ],
  };

  const newVolumes: KubeObject[] = [
    // A short-lived token only the CA accepts; the kubelet refreshes it.
    { name: MOUNTS.token.volume, projected: { sources: [{ serviceAccountToken: { audience: settings.tokenAudience, expirationSeconds: settings.tokenExpirationSeconds, path: TOKEN_FILE } }] } },
    { name: MOUNTS.root.volume, configMap: { name: settings.rootConfigMap, items: [{ key: ROOT_FILE, path: ROOT_FILE }] } },
    // In memory: the private key never touches the node's disk.
    { name: MOUNTS.credentials.volume, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
    { name: MOUNTS.socket.volume, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
    ...(policyConfigMap ? [{ name: MOUNTS.policy.volume, configMap: { name: policyConfigMap, items: [{ key: POLICY_FILE, path: POLICY_FILE }] } }] : []),
  ];

  const containers = spec.containers.map((c) => withWorkloadAccess(c));
  // The projected token is mode 0600 for root unless the pod has an fsGroup: give it the sidecar's
  // group so the sidecar (65532) can read it. An fsGroup the pod already sets is kept.
  const securityContext = spec.securityContext?.['fsGroup'] === undefined ? { ...(spec.securityContext ?? {}), fsGroup: NONROOT } : spec.securityContext;
  const status = { version: settings.version, initContainers: [SIDECAR_CONTAINER_NAME], volumes: volumes.map((v) => v.volume) };
  // Annotation-driven scrape configs find the sidecar's metrics, as Istio's injector points them
  // at its agent; a pod that already says where its own metrics are keeps that.
  const scrape: Record<string, string> = Object.keys(annotations).some((k) => k.startsWith('prometheus.io/'))
    ? {}
    : { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(HEALTH_PORT), 'prometheus.io/path': '/metrics' };
  return {
    kind: 'injected',
    appPort: app?.port,
    appPortName: app?.name,
    pod: {
      metadata: { ...meta, annotations: { ...annotations, ...scrape, [STATUS_ANNOTATION]: JSON.stringify(status) } },
      spec: {
        ...spec,
        initContainers: [sidecar as unknown as Container, ...(spec.initContainers ?? [])],
        containers,
        volumes: [...(spec.volumes ?? []), ...(newVolumes as (KubeObject & { name: string })[])],
        securityContext,
      },
    },
  };
}

/** App containers read the SVID files and the Workload API socket; SPIFFE libraries find the socket by env. */
function withWorkloadAccess(c: Container): Container {
  const env = c.env ?? [];
  const hasSocketEnv = env.some((e) => e['name'] === 'SPIFFE_ENDPOINT_SOCKET');
  const mountPaths = new Set((c.volumeMounts ?? []).map((m) => m['mountPath']));
  const mounts = [
    { name: MOUNTS.credentials.volume, mountPath: MOUNTS.credentials.path, readOnly: true },
    { name: MOUNTS.socket.volume, mountPath: MOUNTS.socket.path, readOnly: true },
  ].filter((m) => !mountPaths.has(m.mountPath));
  return {
    ...c,
    env: hasSocketEnv ? env : [...env, { name: 'SPIFFE_ENDPOINT_SOCKET', value: `unix://${MOUNTS.socket.path}/${SOCKET_FILE}` }],
    volumeMounts: [...(c.volumeMounts ?? []), ...mounts],
  };
}

/**
 * The port the inbound proxy fronts: the annotation, else the pod's one TCP container port. Several
 * ports and no annotation is refused: guessing would leave the other ports outside the mesh unseen.
 */
function chooseAppPort(spec: PodSpec, annotations: Readonly<Record<string, string>>, where: string, problems: string[]): { port: number; name: string | undefined } | undefined {
  const declared = spec.containers.flatMap((c) => (c.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP'));
  const raw = annotations[APP_PORT_ANNOTATION];
  if (raw !== undefined) {
    if (raw === 'none') return undefined;
    const byName = declared.find((p) => p.name === raw);
    const port = byName?.containerPort ?? (/^[1-9][0-9]{0,4}$/.test(raw) ? Number(raw) : NaN);
    if (!(port >= 1 && port <= 65535)) {
      problems.push(`${where}: ${APP_PORT_ANNOTATION} must be a port number, a container port name or "none", not ${JSON.stringify(raw)}`);
      return undefined;
    }
    return { port, name: byName?.name ?? declared.find((p) => p.containerPort === port)?.name };
  }
  const ports = [...new Set(declared.map((p) => p.containerPort))];
  if (ports.length > 1) {
    problems.push(`${where}: the containers declare ports ${ports.join(', ')}; say which one the sidecar fronts with the annotation ${APP_PORT_ANNOTATION} (a number, a port name, or "none")`);
    return undefined;
  }
  const only = declared[0];
  return only === undefined ? undefined : { port: only.containerPort, name: only.name };
}

function parseOutbound(annotations: Readonly<Record<string, string>>, where: string, problems: string[]): { upstream: string; spiffeId?: string; trustDomain?: string } | undefined {
  const upstream = annotations[OUTBOUND_UPSTREAM_ANNOTATION];
  const spiffeId = annotations[OUTBOUND_SPIFFE_ID_ANNOTATION];
  const trustDomain = annotations[OUTBOUND_TRUST_DOMAIN_ANNOTATION];
  if (upstream === undefined) {
    if (spiffeId !== undefined || trustDomain !== undefined) problems.push(`${where}: ${spiffeId !== undefined ? OUTBOUND_SPIFFE_ID_ANNOTATION : OUTBOUND_TRUST_DOMAIN_ANNOTATION} needs ${OUTBOUND_UPSTREAM_ANNOTATION}`);
    return undefined;
  }
  let url: URL | undefined;
  try {
    url = new URL(upstream);
  } catch {
    url = undefined;
  }
  if (url?.protocol !== 'https:' || url.pathname !== '/' || url.search !== '' || url.username !== '') {
    problems.push(`${where}: ${OUTBOUND_UPSTREAM_ANNOTATION} must be an https:// origin (the mTLS service), not ${JSON.stringify(upstream)}`);
  }
  if ((spiffeId === undefined) === (trustDomain === undefined)) {
    problems.push(`${where}: ${OUTBOUND_UPSTREAM_ANNOTATION} needs exactly one of ${OUTBOUND_SPIFFE_ID_ANNOTATION} and ${OUTBOUND_TRUST_DOMAIN_ANNOTATION}: who the upstream must be`);
    return undefined;
  }
  try {
    if (spiffeId !== undefined) parseSpiffeId(spiffeId);
    else parseTrustDomain(trustDomain!);
  } catch (err) {
    problems.push(`${where}: ${spiffeId !== undefined ? OUTBOUND_SPIFFE_ID_ANNOTATION : OUTBOUND_TRUST_DOMAIN_ANNOTATION}: ${(err as Error).message}`);
    return undefined;
  }
  return { upstream, ...(spiffeId === undefined ? { trustDomain: trustDomain! } : { spiffeId }) };
}

