import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Pod } from 'kubernetes-models/v1';

import { RequestError } from '../../../src/errors.js';
import { reviewPodAdmission } from '../../../src/inject/admission-review.js';
import { DEFAULT_INJECTION_SETTINGS, injectPod, type PodTemplate } from '../../../src/inject/pod-injection.js';
import { admittedPod, review } from '../../helpers/admission-review.js';
import { applyJsonPatch } from '../../helpers/json-patch.js';
import { unknownFields } from '../../helpers/kube-schema.js';

const settings = { ...DEFAULT_INJECTION_SETTINGS, version: '0.1.0' };

describe('reviewPodAdmission (the injection webhook)', () => {
  it('answers with the request uid and a JSONPatch that turns the pod into exactly what injectPod makes, valid against the Pod schema', () => {
    const pod = admittedPod();
    const answer = reviewPodAdmission(review(pod), settings);
    assert.equal(answer.apiVersion, 'admission.k8s.io/v1');
    assert.equal(answer.kind, 'AdmissionReview');
    assert.equal(answer.response.uid, '705ab4f5-6393-11e8-b7cc-42010a800002');
    assert.equal(answer.response.allowed, true);
    assert.equal(answer.response.patchType, 'JSONPatch');
    const patch = JSON.parse(Buffer.from(answer.response.patch!, 'base64').toString('utf8')) as unknown[];
    const patched = applyJsonPatch(pod, patch) as Record<string, unknown> & PodTemplate;
    const expected = injectPod({ metadata: pod['metadata'] as PodTemplate['metadata'], spec: pod['spec'] as PodTemplate['spec'] }, settings, 'x');
    assert.equal(expected.kind, 'injected');
    assert.deepEqual({ metadata: patched.metadata, spec: patched.spec }, (expected as { pod: PodTemplate }).pod);
    // What the API server would store: the schema holds, no field it would drop, status untouched.
    new Pod({ ...patched, metadata: { ...patched.metadata, name: 'helloworld-7d9f8b6c5-abcde' } } as never).validate();
    const problems: string[] = [];
    unknownFields(patched, 'V1Pod', 'pod', problems);
    assert.deepEqual(problems, []);
    assert.deepEqual(patched['status'], {});
    // The API-server token the kubelet mounts stays the app's; the sidecar does not mount it.
    const sidecar = patched.spec.initContainers?.[0];
    assert.equal(sidecar?.name, 'meshca-sidecar');
    assert.ok(!JSON.stringify(sidecar).includes('kube-api-access'));
    assert.match(answer.response.warnings?.[0] ?? '', /targetPort meshca-mtls \(15006\).*port 5000 bypasses/);
  });

  it('patches only the fields injection changed, with add operations (which replace an existing member)', () => {
    const answer = reviewPodAdmission(review(admittedPod()), settings);
    const patch = JSON.parse(Buffer.from(answer.response.patch!, 'base64').toString('utf8')) as { op: string; path: string }[];
    assert.deepEqual(patch.map((op) => `${op.op} ${op.path}`), ['add /metadata/annotations', 'add /spec/volumes', 'add /spec/containers', 'add /spec/securityContext', 'add /spec/initContainers']);
  });

  it('admits an injected pod, an opted-out pod and anything that is not a pod CREATE unchanged', () => {
    const injected = applyJsonPatch(admittedPod(), JSON.parse(Buffer.from(reviewPodAdmission(review(admittedPod()), settings).response.patch!, 'base64').toString('utf8')) as unknown[]);
    const unchanged = (body: unknown) => {
      const answer = reviewPodAdmission(body, settings);
      assert.deepEqual(answer.response, { uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true });
    };
    unchanged(review(injected));
    unchanged(review(admittedPod({ annotations: { 'sidecar.meshca.io/inject': 'false' } })));
    unchanged(review(admittedPod(), { operation: 'UPDATE' }));
    unchanged(review({ kind: 'Service', apiVersion: 'v1', metadata: { name: 'x' }, spec: {} }, { kind: { group: '', version: 'v1', kind: 'Service' } }));
  });

  it('denies a pod it cannot inject, saying why, rather than admitting it without its sidecar', () => {
    const answer = reviewPodAdmission(review(admittedPod({ ports: [{ containerPort: 5000 }, { containerPort: 9090 }] })), settings);
    assert.equal(answer.response.allowed, false);
    assert.equal(answer.response.patch, undefined);
    assert.equal(answer.response.status?.code, 400);
    assert.match(answer.response.status?.message ?? '', /^meshca sidecar injection: Pod default\/helloworld-7d9f8b6c5-: the containers declare ports 5000, 9090; say which one .*sidecar\.meshca\.io\/app-port/);
  });

  const malformed: readonly [string, unknown][] = [
    ['not an object', 'hello'],
    ['another apiVersion', { ...review(admittedPod()), apiVersion: 'admission.k8s.io/v1beta1' }],
    ['no request', { kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1' }],
    ['no uid', review(admittedPod(), { uid: '' })],
    ['containers not a list', review({ kind: 'Pod', apiVersion: 'v1', metadata: {}, spec: { containers: {} } })],
    ['ports not a list', review({ kind: 'Pod', apiVersion: 'v1', metadata: {}, spec: { containers: [{ name: 'a', ports: { containerPort: 1 } }] } })],
    ['a port that is not a number', review({ kind: 'Pod', apiVersion: 'v1', metadata: {}, spec: { containers: [{ name: 'a', ports: [{ containerPort: '80' }] }] } })],
    ['volumes of strings', review({ kind: 'Pod', apiVersion: 'v1', metadata: {}, spec: { containers: [{ name: 'a' }], volumes: ['x'] } })],
    ['annotations that are not strings', review({ kind: 'Pod', apiVersion: 'v1', metadata: { annotations: { a: 1 } }, spec: { containers: [{ name: 'a' }] } })],
  ];
  for (const [name, body] of malformed) {
    it(`refuses a body that is not an AdmissionReview v1 request (${name}) with ERR_REQUEST_INVALID`, () => {
      assert.throws(() => reviewPodAdmission(body, settings), (err: unknown) => err instanceof RequestError && err.code === 'ERR_REQUEST_INVALID');
    });
  }
});
