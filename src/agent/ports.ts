/**
 * The agent's ports: everything the rotation service needs from the outside world, as small
 * interfaces named by role. Adapters live in `transport/` (gRPC CA client) and `files/` (token,
 * bundle and SVID files); tests substitute in-memory fakes.
 */
import type { KeyObject } from 'node:crypto';
import type { KeyKind } from '../pki/algorithms.js';
import type { X509Bundle } from '../spiffe/x509-bundle.js';

export interface CreateCertificateRequest {
  /** PKCS#10 CSR, PEM. */
  readonly csrPem: string;
  /** Requested lifetime; undefined lets the CA pick its default. */
  readonly ttlSeconds?: number;
  /** The workload's credential (a projected service-account token). Never logged. */
  readonly token: string;
  /** Aborts the call; the promise then rejects with `signal.reason`. */
  readonly signal?: AbortSignal;
}

export interface CreateCertificateResult {
  /** As Istio's CreateCertificate returns it: leaf first, then intermediates, the root last. */
  readonly certChainPem: readonly string[];
}

/**
 * The CA, as the agent sees it. Rejects with a coded `IdentityError`: `ERR_CA_NOT_READY` for
 * transient failures (unreachable, deadline), `ERR_AUTHN_FAILED`, `ERR_IDENTITY_MISMATCH`,
 * `ERR_CSR_INVALID`, `ERR_TTL_INVALID` or `ERR_RATE_LIMITED` for the CA's verdicts.
 */
export interface CaClient {
  createCertificate(request: CreateCertificateRequest): Promise<CreateCertificateResult>;
}

/**
 * Where the workload's credential comes from. Read before every request: the kubelet rewrites
 * a projected token well before it expires, and a cached copy would eventually be refused.
 */
export interface TokenSource {
  readToken(): Promise<string>;
}

/**
 * The trust anchors of the agent's own trust domain, from a channel the agent trusts
 * independently of the CA's answers (in Kubernetes: the mounted root-cert.pem ConfigMap that
 * the control plane keeps current). Polled on every rotation and on an interval; whatever it
 * returns replaces the previous bundle wholesale, so a root rotation (old + new root, later only
 * the new one) reaches the agent without a restart.
 */
export interface BundleSource {
  fetchBundle(options?: { readonly signal?: AbortSignal }): Promise<X509Bundle>;
}

/** Generates the private key for the next SVID; the key never leaves the agent's process. */
export type KeyGenerator = (kind: KeyKind) => Promise<KeyObject>;

/** Uniform random numbers in [0, 1), for jitter. */
export type RandomSource = () => number;
