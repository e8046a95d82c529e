/**
 * The agent's ports: everything the rotation service needs from the outside world, as small
 * interfaces named by role. Adapters live in `transport/` (gRPC CA client) and `files/` (token,
 * bundle and SVID files); tests substitute in-memory fakes.
 */
import type { KeyObject } from 'node:crypto';
import type { KeyKind } from '../pki/algorithms.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
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

/** One fetch of a federated trust domain's bundle. */
export interface FetchedFederatedBundle {
  /** The `x509-svid` authorities, for the source's trust domain. */
  readonly bundle: X509Bundle;
  /** The document's `spiffe_refresh_hint`, when it has one (PEM files never do). */
  readonly refreshHintSeconds?: number;
}

/**
 * Where the bundle of one *other* trust domain comes from: a file an operator maintains, or the
 * federated CA's SPIFFE bundle endpoint. The trust domain is fixed by configuration: nothing a
 * document says can move its authorities to another trust domain. Adapter:
 * `files/federated-bundles.ts`.
 */
export interface FederatedBundleSource {
  readonly trustDomain: TrustDomain;
  /** The path or URL, for logs and errors. */
  readonly location: string;
  fetchBundle(options?: { readonly signal?: AbortSignal }): Promise<FetchedFederatedBundle>;
}

/**
 * What the rotator serves federated bundles from (`FederatedBundles`, or a fake): one bundle per
 * foreign trust domain, looked up by the peer's trust domain, never pooled with the own one.
 */
export interface FederatedBundleProvider {
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined;
  /** The current federated bundles; the same array object until one of them changes. */
  getX509Bundles(): readonly X509Bundle[];
  /** Called with the new bundle after a federated trust domain's bundle changed; returns the unsubscribe. */
  onBundlesChange(listener: (bundle: X509Bundle) => void): () => void;
}

/** Generates the private key for the next SVID; the key never leaves the agent's process. */
export type KeyGenerator = (kind: KeyKind) => Promise<KeyObject>;

/** Uniform random numbers in [0, 1), for jitter. */
export type RandomSource = () => number;
