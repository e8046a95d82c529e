/**
 * The injection webhook's decision: an `admission.k8s.io/v1` AdmissionReview for a Pod CREATE in,
 * the AdmissionReview response out, with a JSONPatch (RFC 6902) that adds the sidecar.
 *
 * The patch uses `add` on whole fields (`add` replaces an object member that exists), so it is
 * exactly the difference `injectPod` computed, never a merge the API server could read otherwise.
 * A pod that cannot be injected (a bad annotation, a port taken) is denied with the reasons, not
 * admitted without its sidecar: in a namespace that asked for the mesh, an unmeshed pod is the
 * failure to prevent.
 */
import { ConfigError, RequestError } from '../errors.js';
import { injectPod, MTLS_PORT_NAME, INBOUND_PORT, type InjectionSettings, type KubeObject, type PodTemplate } from './pod-injection.js';

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly status?: { readonly code: number; readonly message: string };
  readonly patchType?: 'JSONPatch';
  /** base64 of the JSON patch. */
  readonly patch?: string;
  readonly warnings?: readonly string[];
}

export interface AdmissionReviewResponse {
  readonly apiVersion: 'admission.k8s.io/v1';
  readonly kind: 'AdmissionReview';
  readonly response: AdmissionResponse;
}

export interface JsonPatchOperation {
  readonly op: 'add';
  readonly path: string;
  readonly value: unknown;
}

/** Reads the request; throws `RequestError` (400) when it is not an AdmissionReview v1 request. */
export function parseAdmissionReview(body: unknown): { uid: string; namespace: string | undefined; operation: string; pod: PodTemplate | undefined; kind: string } {
  if (!isObject(body) || body['apiVersion'] !== 'admission.k8s.io/v1' || body['kind'] !== 'AdmissionReview' || !isObject(body['request'])) {
    throw new RequestError('the body must be an admission.k8s.io/v1 AdmissionReview with a request', { rule: 'admission-review' });
  }
  const request = body['request'];
  const uid = request['uid'];
  if (typeof uid !== 'string' || uid === '') throw new RequestError('request.uid must be a non-empty string', { rule: 'admission-review-uid' });
  const kind = isObject(request['kind']) ? String(request['kind']['kind'] ?? '') : '';
  const object = request['object'];
  const pod = kind === 'Pod' && isObject(object) && isObject(object['spec']) ? ({ metadata: isObject(object['metadata']) ? object['metadata'] : {}, spec: object['spec'] } as unknown as PodTemplate) : undefined;
  if (pod) checkPodShape(pod);
  return { uid, namespace: typeof request['namespace'] === 'string' ? request['namespace'] : undefined, operation: String(request['operation'] ?? ''), pod, kind };
}

export function reviewPodAdmission(body: unknown, settings: InjectionSettings): AdmissionReviewResponse {
  const request = parseAdmissionReview(body);
  const answer = (response: Omit<AdmissionResponse, 'uid'>): AdmissionReviewResponse => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: request.uid, ...response } });
  // The webhook is registered for pod CREATE only; anything else passes unchanged.
  if (request.kind !== 'Pod' || request.operation !== 'CREATE' || request.pod === undefined) return answer({ allowed: true });
  const meta = request.pod.metadata;
  const where = `Pod ${request.namespace ?? meta.namespace ?? ''}/${meta.name ?? meta.generateName ?? '?'}`;
  let result;
  try {
    result = injectPod(request.pod, settings, where);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return answer({ allowed: false, status: { code: 400, message: `meshca sidecar injection: ${err.problems.join('; ')}` } });
  }
  if (result.kind === 'skipped') return answer({ allowed: true });
  const patch = patchBetween(request.pod, result.pod);
  return answer({
    allowed: true,
    patchType: 'JSONPatch',
    patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
    ...(result.appPort === undefined
      ? {}
      : { warnings: [`meshca: Services must use targetPort ${MTLS_PORT_NAME} (${INBOUND_PORT}) to reach this pod through its sidecar; port ${result.appPort} bypasses mTLS and policy unless a NetworkPolicy closes it`] }),
  });
}

/** `add` operations for each top-level metadata and spec field injection changed. */
export function patchBetween(before: PodTemplate, after: PodTemplate): JsonPatchOperation[] {
  const ops: JsonPatchOperation[] = [];
  if (before.metadata === undefined) ops.push({ op: 'add', path: '/metadata', value: {} });
  for (const key of ['annotations'] as const) {
    if (JSON.stringify(before.metadata?.[key]) !== JSON.stringify(after.metadata[key])) ops.push({ op: 'add', path: `/metadata/${key}`, value: after.metadata[key] });
  }
  for (const key of Object.keys(after.spec)) {
    if (JSON.stringify((before.spec as KubeObject)[key]) !== JSON.stringify((after.spec as KubeObject)[key])) ops.push({ op: 'add', path: `/spec/${key}`, value: (after.spec as KubeObject)[key] });
  }
  return ops;
}

/**
 * The fields injection reads, with the types the API server guarantees. The route is reachable by
 * anyone who can reach the port: a body that is not a real pod is a 400, never a crash.
 */
function checkPodShape(pod: PodTemplate): void {
  const bad = (what: string): never => {
    throw new RequestError(`request.object is not a valid Pod: ${what}`, { rule: 'admission-review-pod' });
  };
  const arrayOfObjects = (v: unknown, what: string): void => {
    if (v !== undefined && !(Array.isArray(v) && v.every(isObject))) bad(`${what} must be a list of objects`);
  };
  if (!Array.isArray(pod.spec.containers)) bad('spec.containers must be a list');
  for (const [field, list] of [['containers', pod.spec.containers], ['initContainers', pod.spec.initContainers]] as const) {
    arrayOfObjects(list, `spec.${field}`);
    for (const c of list ?? []) {
      if (typeof c.name !== 'string') bad(`spec.${field}[].name must be a string`);
      arrayOfObjects(c.ports, `spec.${field}[].ports`);
      for (const port of c.ports ?? []) if (typeof port.containerPort !== 'number') bad(`spec.${field}[].ports[].containerPort must be a number`);
      arrayOfObjects(c.env, `spec.${field}[].env`);
      arrayOfObjects(c.volumeMounts, `spec.${field}[].volumeMounts`);
    }
  }
  arrayOfObjects(pod.spec.volumes, 'spec.volumes');
  if (pod.spec.securityContext !== undefined && !isObject(pod.spec.securityContext)) bad('spec.securityContext must be an object');
  for (const field of ['labels', 'annotations'] as const) {
    const map = pod.metadata[field];
    if (map !== undefined && !(isObject(map) && Object.values(map).every((v) => typeof v === 'string'))) bad(`metadata.${field} must map strings to strings`);
  }
}

function isObject(v: unknown): v is KubeObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
