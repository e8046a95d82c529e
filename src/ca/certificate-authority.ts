import { randomBytes as nodeRandomBytes, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { systemClock, type Clock } from '../clock.js';
import { CaNotReadyError, IdentityMismatchError, TtlError } from '../errors.js';
import { isRsaKind, keyKindOf } from '../pki/algorithms.js';
import type { Authority } from '../pki/authority.js';
import { checkCsrKey, DEFAULT_MAX_CSR_BYTES, parseCsr, verifyCsrSignature, type Csr } from '../pki/csr.js';
import { ipAddressBytes } from '../pki/ip-address.js';
import { LeafTemplate } from '../pki/leaf-template.js';
import { encodePem } from '../pki/pem.js';
import type { SpiffeId } from '../spiffe/spiffe-id.js';
import { checkX509SvidLeaf } from '../spiffe/x509-svid.js';

export const DEFAULT_SVID_TTL_SECONDS = 24 * 3600;
export const DEFAULT_MAX_SVID_TTL_SECONDS = 7 * 24 * 3600;
export const DEFAULT_BACKDATE_SECONDS = 10;

export interface CertificateAuthorityOptions {
  readonly authority: Authority;
  readonly clock?: Clock;
  /** TTL when the caller asks for none. Default 24 h. */
  readonly defaultTtlSeconds?: number;
  /** Longest TTL a caller may ask for; longer requests are refused, not trimmed. Default 7 days. */
  readonly maxTtlSeconds?: number;
  /** How far notBefore is set in the past to absorb clock skew between pods. Default 10 s. */
  readonly backdateSeconds?: number;
  readonly maxCsrBytes?: number;
  /** Source of serial-number entropy; injectable for tests. */
  readonly randomBytes?: (size: number) => Uint8Array;
}

export interface SignOptions {
  /** Requested lifetime; undefined means the default. */
  readonly ttlSeconds?: number;
}

export interface IssuedServingCertificate {
  readonly certChainPem: readonly string[];
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface IssuedSvid {
  readonly spiffeId: SpiffeId;
  /** The leaf, DER. */
  readonly certificate: Uint8Array;
  /** Leaf, intermediates, root: one PEM per element, as Istio's CreateCertificate returns. */
  readonly certChainPem: readonly string[];
  /** Serial number in lowercase hex, as `openssl x509 -serial` prints it (uppercased there). */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * Turns a CSR plus an already-authenticated identity into an X.509-SVID. The identity comes
 * from authentication; the CSR contributes only its public key, after proof of possession.
 */
export class CertificateAuthority {
  readonly authority: Authority;
  readonly #clock: Clock;
  readonly #defaultTtlSeconds: number;
  readonly #maxTtlSeconds: number;
  readonly #backdateMs: number;
  readonly #maxCsrBytes: number;
  readonly #randomBytes: (size: number) => Uint8Array;
  readonly #template: LeafTemplate;
  readonly #issuerChainPem: readonly string[];

  constructor(options: CertificateAuthorityOptions) {
    this.authority = options.authority;
    this.#clock = options.clock ?? systemClock;
    this.#defaultTtlSeconds = options.defaultTtlSeconds ?? DEFAULT_SVID_TTL_SECONDS;
    this.#maxTtlSeconds = options.maxTtlSeconds ?? DEFAULT_MAX_SVID_TTL_SECONDS;
    this.#backdateMs = (options.backdateSeconds ?? DEFAULT_BACKDATE_SECONDS) * 1000;
    this.#maxCsrBytes = options.maxCsrBytes ?? DEFAULT_MAX_CSR_BYTES;
    this.#randomBytes = options.randomBytes ?? ((size) => nodeRandomBytes(size));
    if (this.#defaultTtlSeconds > this.#maxTtlSeconds) {
      throw new TypeError('defaultTtlSeconds must not exceed maxTtlSeconds');
    }
    this.#template = new LeafTemplate({
      signatureAlgorithm: options.authority.signer.algorithm,
      issuerName: options.authority.subjectName,
      issuerKeyId: options.authority.subjectKeyId,
    });
    this.#issuerChainPem = Object.freeze(options.authority.issuerChain.map((c) => encodePem('CERTIFICATE', c.raw)));
  }

  /** PEM of the trust anchors, for `root-cert.pem` and the bundle endpoints. */
  get rootsPem(): string {
    return this.authority.roots.map((c) => encodePem('CERTIFICATE', c.raw)).join('');
  }

  /** Validates a requested TTL: the answer is the lifetime in seconds the caller will get at most. */
  resolveTtlSeconds(requested: number | undefined): number {
    if (requested === undefined) return this.#defaultTtlSeconds;
    if (!Number.isFinite(requested) || requested <= 0) {
      throw new TtlError(`requested TTL ${requested} is not a positive number of seconds`, { rule: 'not-positive' });
    }
    if (requested > this.#maxTtlSeconds) {
      throw new TtlError(`requested TTL ${requested}s is greater than the maximum allowed ${this.#maxTtlSeconds}s`, {
        rule: 'too-long',
      });
    }
    return Math.floor(requested);
  }

  async sign(csrInput: string | Uint8Array, identity: SpiffeId, options: SignOptions = {}): Promise<IssuedSvid> {
    const ttlSeconds = this.resolveTtlSeconds(options.ttlSeconds);
    const csr = parseCsr(csrInput, { maxBytes: this.#maxCsrBytes });
    const keyKind = checkCsrKey(csr);
    const uri = identity.toString();
    checkRequestedIdentity(csr, uri);
    verifyCsrSignature(csr);

    const { tbs, notBefore, notAfter, serial } = this.#prepare(csr.spki, ttlSeconds, { uri, keyEncipherment: isRsaKind(keyKind) });
    const certificate = await this.#signTbs(tbs);
    checkIssuedSvid(certificate, uri, csr.publicKey);
    return {
      spiffeId: identity,
      certificate,
      certChainPem: [encodePem('CERTIFICATE', certificate), ...this.#issuerChainPem],
      serial,
      notBefore,
      notAfter,
    };
  }

  #prepare(
    spki: Uint8Array,
    ttlSeconds: number,
    names: { uri?: string; dnsNames?: readonly string[]; ipAddresses?: readonly Uint8Array[]; keyEncipherment: boolean },
  ): { tbs: Uint8Array; notBefore: Date; notAfter: Date; serial: string } {
    const now = this.#clock.now().getTime();
    if (now >= this.authority.notAfter.getTime()) {
      throw new CaNotReadyError(`CA certificate expired at ${this.authority.notAfter.toISOString()}`, { rule: 'ca-expired' });
    }
    // Valid for the TTL from now; notBefore reaches a little into the past so a peer whose clock
    // lags ours does not reject a fresh certificate. Backdating never eats into the TTL.
    const nowSecond = Math.floor(now / 1000) * 1000;
    const notBefore = new Date(nowSecond - this.#backdateMs);
    const notAfter = new Date(Math.min(nowSecond + ttlSeconds * 1000, this.authority.notAfter.getTime()));
    const serial = this.#newSerial();
    const tbs = this.#template.buildTbs({ serial, notBefore, notAfter, spki, ...names });
    return { tbs, notBefore, notAfter, serial: Buffer.from(serial).toString('hex') };
  }

  async #signTbs(tbs: Uint8Array): Promise<Uint8Array> {
    const signer = this.authority.signer;
    const signature = await signer.sign(tbs);
    // A faulty signer (or a fault-injected one) must never ship a bad certificate: for RSA-CRT
    // a wrong signature can even leak the key. Check before anything leaves the CA.
    if (!cryptoVerify(signer.algorithm.hash, tbs, { key: signer.publicKey, dsaEncoding: 'der' }, signature)) {
      throw new Error('CA self-check failed: the issued certificate does not verify under the CA key');
    }
    return this.#template.assemble(tbs, signature);
  }

  /**
   * A TLS serving certificate for the CA's own endpoints (DNS SANs, e.g. `meshca.<ns>.svc`), for
   * a key the CA generated itself, so clients verify the CA against `root-cert.pem` as they
   * verify any workload.
   */
  async issueServingCertificate(
    publicKey: KeyObject,
    options: { dnsNames: readonly string[]; ipAddresses?: readonly string[]; uri?: string; ttlSeconds: number },
  ): Promise<IssuedServingCertificate> {
    const ipAddresses = (options.ipAddresses ?? []).map((ip) => {
      const bytes = ipAddressBytes(ip);
      if (bytes === undefined) throw new TypeError(`invalid IP address ${JSON.stringify(ip)}`);
      return bytes;
    });
    for (const name of options.dnsNames) {
      if (!/^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/i.test(name) || name.length > 253) {
        throw new TypeError(`invalid DNS name ${JSON.stringify(name)}`);
      }
    }
    const spki = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }));
    const kind = keyKindOf(publicKey);
    if (kind === undefined) throw new TypeError('unsupported serving key type');
    const { tbs, notBefore, notAfter, serial } = this.#prepare(spki, options.ttlSeconds, {
      ...(options.uri === undefined ? {} : { uri: options.uri }),
      dnsNames: options.dnsNames,
      ipAddresses,
      keyEncipherment: isRsaKind(kind),
    });
    const certificate = await this.#signTbs(tbs);
    return { certChainPem: [encodePem('CERTIFICATE', certificate), ...this.#issuerChainPem], serial, notBefore, notAfter };
  }

  #newSerial(): Uint8Array {
    // 128 bits with the top bit clear: positive, well over the 64 bits of entropy CABF requires.
    const serial = Uint8Array.from(this.#randomBytes(16));
    serial[0] = (serial[0]! & 0x7f) || 0x01;
    return serial;
  }
}

/**
 * What leaves the CA must be usable: a certificate that verifies under the CA key but that
 * OpenSSL cannot parse, or that breaks the SVID profile, or that carries another key, is a CA
 * bug, never a workload's credential.
 */
function checkIssuedSvid(certificate: Uint8Array, uri: string, key: KeyObject): void {
  let issued: { readonly id: SpiffeId; readonly publicKey: KeyObject };
  try {
    issued = checkX509SvidLeaf(certificate);
  } catch (err) {
    throw new Error(`CA self-check failed: the issued certificate is not a valid X509-SVID (${(err as Error).message})`, { cause: err });
  }
  if (issued.id.toString() !== uri || !issued.publicKey.equals(key)) {
    throw new Error('CA self-check failed: the issued certificate does not carry the requested identity and key');
  }
}

/**
 * A CSR may name the caller's own SPIFFE ID (Istio's agent does) or nothing; it may not ask for
 * another identity or for any other name.
 */
function checkRequestedIdentity(csr: Csr, uri: string): void {
  for (const san of csr.sans) {
    if (san.type === 'uri') {
      if (san.value !== uri) {
        throw new IdentityMismatchError(`CSR requests ${JSON.stringify(san.value)} but the caller is authenticated as ${uri}`, {
          rule: 'csr-spiffe-id',
        });
      }
    } else {
      throw new IdentityMismatchError(
        `CSR requests a ${san.type} SAN ${JSON.stringify(san.value)}; meshca issues only the authenticated SPIFFE ID`,
        { rule: 'csr-san' },
      );
    }
  }
}
