import type { experimental } from '@grpc/grpc-js';

type CertificateProvider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/**
 * A grpc-js certificate provider fed from memory, so a renewed serving certificate reaches new
 * connections without restarting the server (grpc-js re-reads providers per handshake).
 */
export class MutableCertificateProvider implements CertificateProvider {
  #ca: experimental.CaCertificateUpdate | null = null;
  #identity: experimental.IdentityCertificateUpdate | null = null;
  readonly #caListeners = new Set<CaListener>();
  readonly #identityListeners = new Set<IdentityListener>();

  update(material: { rootsPem?: string; certChainPem?: string; keyPem?: string }): void {
    if (material.rootsPem !== undefined) {
      this.#ca = { caCertificate: Buffer.from(material.rootsPem) };
      for (const l of this.#caListeners) l(this.#ca);
    }
    if (material.certChainPem !== undefined && material.keyPem !== undefined) {
      this.#identity = { certificate: Buffer.from(material.certChainPem), privateKey: Buffer.from(material.keyPem) };
      for (const l of this.#identityListeners) l(this.#identity);
    }
  }

  // grpc-js registers its own watcher only after adding listeners; delivering the current
  // material synchronously would reach nobody, so deliver it on the next microtask.
  addCaCertificateListener(listener: CaListener): void {
    this.#caListeners.add(listener);
    queueMicrotask(() => {
      if (this.#caListeners.has(listener)) listener(this.#ca);
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.#identityListeners.has(listener)) listener(this.#identity);
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.delete(listener);
  }
}
