/**
 * `X509Source`: everything an mTLS endpoint needs, in go-spiffe's shape: the current SVID, the
 * bundles to verify peers with, and an `update` event when either changes (rotation). Servers
 * and clients in this folder read it on every new connection and rebuild their secure context
 * once per `update`.
 */
import { EventEmitter } from 'node:events';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import type { X509Bundle, X509BundleSource } from '../spiffe/x509-bundle.js';
import { X509BundleSet } from '../spiffe/x509-bundle.js';
import type { X509Svid, X509SvidSource } from '../spiffe/x509-svid.js';

export type X509SourceListener = () => void;

export interface X509Source extends X509SvidSource, X509BundleSource {
  /** The current SVID; it carries a private key. */
  getX509Svid(): X509Svid;
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined;
  /**
   * Every trusted bundle (own and federated). TLS needs the union of authorities up front to
   * build its trust store; per-trust-domain checks still go through `getX509BundleForTrustDomain`.
   * Implementations should return the same bundle objects until they change, so consumers can
   * tell cheaply whether to rebuild.
   */
  getX509Bundles(): readonly X509Bundle[];
  /** `update` fires after the SVID or the bundles changed; the getters already return the new ones. */
  on(event: 'update', listener: X509SourceListener): this;
  off(event: 'update', listener: X509SourceListener): this;
  /** Releases watchers and the like; the getters keep returning the last material. */
  close(): Promise<void>;
}

export interface X509SourceMaterial {
  readonly svid: X509Svid;
  readonly bundles: X509BundleSet;
}

/** A source that holds what it was last given: static files, tests, or an adapter pushing updates. */
export interface StaticX509Source extends X509Source {
  /** Replaces the SVID and/or the bundles and emits `update`. */
  set(material: Partial<X509SourceMaterial>): void;
}

/**
 * Wraps an SVID (with its private key) and a bundle set. The set is copied, so later changes to
 * the caller's `X509BundleSet` are not seen; call `set` to change the material.
 */
export function createStaticX509Source(material: X509SourceMaterial): StaticX509Source {
  return new MemoryX509Source(material);
}

class MemoryX509Source extends EventEmitter implements StaticX509Source {
  #svid: X509Svid;
  #bundles: X509BundleSet;
  #bundleList: readonly X509Bundle[];

  constructor(material: X509SourceMaterial) {
    super();
    this.#svid = checkSvid(material?.svid);
    this.#bundles = copyBundles(material.bundles);
    this.#bundleList = Object.freeze(this.#bundles.bundles());
  }

  getX509Svid(): X509Svid {
    return this.#svid;
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.#bundles.getX509BundleForTrustDomain(trustDomain);
  }

  getX509Bundles(): readonly X509Bundle[] {
    return this.#bundleList;
  }

  set(material: Partial<X509SourceMaterial>): void {
    const svid = material.svid === undefined ? this.#svid : checkSvid(material.svid);
    const bundles = material.bundles === undefined ? undefined : copyBundles(material.bundles);
    this.#svid = svid;
    if (bundles !== undefined) {
      this.#bundles = bundles;
      this.#bundleList = Object.freeze(bundles.bundles());
    }
    this.emit('update');
  }

  async close(): Promise<void> {
    this.removeAllListeners();
  }
}

export function checkSvid(svid: X509Svid | undefined): X509Svid {
  if (svid === undefined || svid === null || typeof svid !== 'object' || !Array.isArray(svid.certificates)) {
    throw new TypeError('svid must be an X509Svid (from parseX509Svid)');
  }
  if (svid.privateKey === undefined) throw new TypeError('the SVID of an X509Source needs its private key');
  return svid;
}

function copyBundles(bundles: X509BundleSet): X509BundleSet {
  if (!(bundles instanceof X509BundleSet)) throw new TypeError('bundles must be an X509BundleSet');
  return new X509BundleSet(bundles.bundles());
}
