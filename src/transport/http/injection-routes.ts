import type { FastifyPluginAsync } from 'fastify';
import { reviewPodAdmission } from '../../inject/admission-review.js';
import type { InjectionSettings } from '../../inject/pod-injection.js';

/**
 * Etcd stores objects up to 1.5 MiB: any pod the API server can hold fits, and nothing
 * larger is parsed for whoever can reach the port (the route is unauthenticated, as the API
 * server presents no client certificate by default; it computes a patch and changes nothing).
 */
const ADMISSION_BODY_LIMIT_BYTES = 2 * 1024 * 1024;

/**
 * The sidecar injection webhook (`POST /inject`, as istiod serves it): AdmissionReview v1 in,
 * AdmissionReview v1 out. A body that is not an AdmissionReview is 400 ERR_REQUEST_INVALID; a
 * pod that cannot be injected is an AdmissionReview that denies it, with the reasons.
 */
export const injectionRoutes: FastifyPluginAsync<{ settings: InjectionSettings }> = async (app, { settings }) => {
  app.post('/inject', { bodyLimit: ADMISSION_BODY_LIMIT_BYTES }, async (request, reply) => {
    const review = reviewPodAdmission(request.body, settings);
    const { uid, allowed, patch } = review.response;
    request.log.info({ uid, allowed, injected: patch !== undefined, namespace: (request.body as { request?: { namespace?: string } }).request?.namespace }, 'admission review');
    return reply.header('content-type', 'application/json').send(review);
  });
};
