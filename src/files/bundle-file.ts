/**
 * The agent's `BundleSource` over a PEM file: the mesh `root-cert.pem`, in Kubernetes the
 * `istio-ca-root-cert` ConfigMap mounted into the pod. The control plane updates that ConfigMap
 * when the root rotates (first old + new root, later only the new one) and the kubelet swaps the
 * mounted file; reading it on every poll is how a new root reaches the agent without a restart.
 *
 * This channel, not the CA's CreateCertificate answer, is what the agent trusts: a CA (or an
 * attacker answering in its place) cannot introduce a root by appending it to a chain.
 */
import { readFile } from 'node:fs/promises';
import type { BundleSource } from '../agent/ports.js';
import { BundleError, isIdentityError } from '../errors.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import { parseX509BundlePem, type X509Bundle } from '../spiffe/x509-bundle.js';

/**
 * Re-reads `path` on every `fetchBundle()`. Rejects with `BundleError` (ERR_BUNDLE_INVALID):
 * rule `file` when the file cannot be read, otherwise the rule from `parseX509BundlePem`
 * (`empty`, `pem`, `der`, `authority-not-ca`, ...).
 */
export function createFileBundleSource(path: string, trustDomain: TrustDomain): BundleSource {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('bundle file path is required');
  return {
    async fetchBundle(): Promise<X509Bundle> {
      let pem: string;
      try {
        pem = await readFile(path, 'utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException)?.code ?? 'error';
        throw new BundleError(`trust bundle file ${path} cannot be read (${code})`, { rule: 'file', cause: err });
      }
      try {
        return parseX509BundlePem(trustDomain, pem);
      } catch (err) {
        if (!isIdentityError(err)) throw err;
        throw new BundleError(`trust bundle file ${path}: ${err.message}`, { rule: err.rule ?? 'file', cause: err });
      }
    },
  };
}
