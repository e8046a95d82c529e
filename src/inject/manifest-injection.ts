/**
 * `meshca inject -f`: the pod transform applied to every workload of a manifest, and the Services
 * of the same manifest pointed at the sidecar. Without an iptables redirect (meshca installs none)
 * a Service whose `targetPort` is the app's port would carry traffic past the sidecar, so a
 * Service that selects an injected pod and targets its app port is rewritten to the sidecar's
 * named port `meshca-mtls`. The webhook sees only pods; there, the same rule is the user's (see
 * k8s/README.md), and a NetworkPolicy closing the app port keeps the side door shut.
 */
import { ConfigError } from '../errors.js';
import { injectPod, MTLS_PORT_NAME, type InjectionSettings, type KubeObject, type PodTemplate } from './pod-injection.js';

export interface ManifestInjectionResult {
  /** The documents, injected ones replaced; others as they were. */
  readonly documents: readonly unknown[];
  /** One line per workload or Service changed or skipped, for stderr. */
  readonly notes: readonly string[];
}

interface InjectedWorkload {
  readonly namespace: string | undefined;
  readonly labels: Readonly<Record<string, string>>;
  readonly appPort: number;
  readonly appPortName: string | undefined;
}

/** Where the pod template sits in each workload kind. */
const TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export function injectManifest(documents: readonly unknown[], settings: InjectionSettings): ManifestInjectionResult {
  const notes: string[] = [];
  const problems: string[] = [];
  const injected: InjectedWorkload[] = [];
  const visit = (doc: unknown): unknown => {
    if (!isObject(doc)) return doc;
    const kind = doc['kind'];
    if (kind === 'List' && Array.isArray(doc['items'])) return { ...doc, items: doc['items'].map(visit) };
    const meta = isObject(doc['metadata']) ? doc['metadata'] : {};
    const where = `${String(kind)} ${meta['namespace'] === undefined ? '' : `${String(meta['namespace'])}/`}${String(meta['name'] ?? meta['generateName'] ?? '?')}`;
    const path = kind === 'Pod' ? [] : TEMPLATE_PATHS[String(kind)];
    if (path === undefined) return doc;
    const template = getPath(doc, path);
    if (!isObject(template)) return doc;
    const pod = template as unknown as PodTemplate;
    let result;
    try {
      result = injectPod({ metadata: (pod.metadata ?? {}), spec: pod.spec }, settings, where);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
      return doc;
    }
    if (result.kind === 'skipped') {
      notes.push(`${where}: not injected (${result.reason})`);
      return doc;
    }
    notes.push(`${where}: sidecar injected${result.appPort === undefined ? ' (no app port: outbound and identity only)' : `, fronting port ${result.appPort}`}`);
    if (result.appPort !== undefined) {
      injected.push({ namespace: stringOr(meta['namespace']), labels: result.pod.metadata.labels ?? {}, appPort: result.appPort, appPortName: result.appPortName });
    }
    return setPath(doc, path, kind === 'Pod' ? { ...doc, ...result.pod } : { ...template, ...result.pod });
  };
  const out = documents.map(visit);
  if (problems.length > 0) throw new ConfigError(problems);
  const retargeted = out.map((doc) => retargetServices(doc, injected, notes));
  return { documents: retargeted, notes };
}

function retargetServices(doc: unknown, workloads: readonly InjectedWorkload[], notes: string[]): unknown {
  if (!isObject(doc)) return doc;
  if (doc['kind'] === 'List' && Array.isArray(doc['items'])) return { ...doc, items: doc['items'].map((d) => retargetServices(d, workloads, notes)) };
  if (doc['kind'] !== 'Service' || !isObject(doc['spec'])) return doc;
  const meta = isObject(doc['metadata']) ? doc['metadata'] : {};
  const spec = doc['spec'];
  const selector = isObject(spec['selector']) ? (spec['selector'] as Record<string, string>) : undefined;
  if (selector === undefined || Object.keys(selector).length === 0 || !Array.isArray(spec['ports'])) return doc;
  const namespace = stringOr(meta['namespace']);
  const selected = workloads.filter((w) => w.namespace === namespace && Object.entries(selector).every(([k, v]) => w.labels[k] === v));
  if (selected.length === 0) return doc;
  let changed = false;
  const ports = (spec['ports'] as KubeObject[]).map((p) => {
    const target = p['targetPort'] ?? p['port'];
    const fronted = selected.some((w) => target === w.appPort || (typeof target === 'string' && target === w.appPortName));
    if (!fronted) return p;
    changed = true;
    notes.push(`Service ${namespace === undefined ? '' : `${namespace}/`}${String(meta['name'])} port ${String(p['port'])}: targetPort ${String(target)} -> ${MTLS_PORT_NAME} (the sidecar's mTLS port)`);
    return { ...p, targetPort: MTLS_PORT_NAME };
  });
  return changed ? { ...doc, spec: { ...spec, ports } } : doc;
}

function isObject(v: unknown): v is KubeObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringOr(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function getPath(obj: KubeObject, path: readonly string[]): unknown {
  let cur: unknown = obj;
  for (const key of path) cur = isObject(cur) ? cur[key] : undefined;
  return cur;
}

function setPath(obj: KubeObject, path: readonly string[], value: unknown): KubeObject {
  if (path.length === 0) return value as KubeObject;
  const [head, ...rest] = path as [string, ...string[]];
  return { ...obj, [head]: setPath(isObject(obj[head]) ? (obj[head] as KubeObject) : {}, rest, value) };
}
