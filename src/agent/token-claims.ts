/**
 * What the agent reads from its own service-account token, without verifying it. The CA verifies
 * the token and decides the identity; the agent only needs to know which identity to expect, so
 * that it can refuse a certificate issued for anyone else.
 */
import { AuthnError } from '../errors.js';
import { checkTokenShape, parseServiceAccountUsername } from '../authn/authenticator.js';
import { workloadIdFor } from '../policy/workload-id.js';
import type { SpiffeId } from '../spiffe/spiffe-id.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';

export interface ServiceAccountTokenClaims {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** From `exp`, when present. */
  readonly expiresAt?: Date;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Decodes the payload of a Kubernetes service-account token and returns its namespace and
 * service account (the `kubernetes.io` claims, which must agree with `sub`). The signature is
 * NOT checked. Throws `AuthnError` (rule `token-empty`, `token-too-large`, `token-malformed`,
 * `claims-missing`, `subject-mismatch` or a username rule). Messages never contain the token.
 */
export function readServiceAccountTokenClaims(token: string): ServiceAccountTokenClaims {
  checkTokenShape(token);
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
  } catch (err) {
    throw new AuthnError('token payload is not base64url JSON', { rule: 'token-malformed', cause: err });
  }
  if (!isRecord(payload)) throw new AuthnError('token payload is not a JSON object', { rule: 'token-malformed' });
  const k8s = payload['kubernetes.io'];
  const serviceAccount = isRecord(k8s) && isRecord(k8s['serviceaccount']) ? k8s['serviceaccount']['name'] : undefined;
  const namespace = isRecord(k8s) ? k8s['namespace'] : undefined;
  if (typeof namespace !== 'string' || typeof serviceAccount !== 'string') {
    throw new AuthnError('token has no "kubernetes.io" namespace and serviceaccount.name claims; is it a projected service-account token?', {
      rule: 'claims-missing',
    });
  }
  const sub = payload['sub'];
  if (typeof sub !== 'string') throw new AuthnError('token has no "sub" claim', { rule: 'claims-missing' });
  // Also validates both names as Kubernetes does, so they are safe in a SPIFFE ID path.
  const subject = parseServiceAccountUsername(sub);
  if (subject.namespace !== namespace || subject.serviceAccount !== serviceAccount) {
    throw new AuthnError('token "sub" does not match its "kubernetes.io" claims', { rule: 'subject-mismatch' });
  }
  const exp = payload['exp'];
  return {
    namespace,
    serviceAccount,
    ...(typeof exp === 'number' && Number.isFinite(exp) ? { expiresAt: new Date(exp * 1000) } : {}),
  };
}

/**
 * The SPIFFE ID the CA will issue for this token, `spiffe://<td>/ns/<ns>/sa/<sa>` (the same
 * mapping the CA uses, `policy/workload-id.ts`).
 */
export function expectedSpiffeIdForToken(token: string, trustDomain: TrustDomain): SpiffeId {
  return workloadIdFor(trustDomain, readServiceAccountTokenClaims(token));
}
