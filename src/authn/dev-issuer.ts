/**
 * A stand-in for the Kubernetes service-account token signer, for running meshca with no
 * cluster (demo, local development, tests). It mints tokens shaped exactly like projected
 * service-account tokens, so the same JWKS authenticator verifies them and nothing downstream
 * knows the difference. Never use it where a real cluster exists: whoever holds this key can be
 * any workload.
 *
 * Persisting the key is the caller's job (`files/dev-issuer-store.ts`); this module does no I/O.
 */
import { createHash, randomUUID } from 'node:crypto';

import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from 'jose';
import type { CryptoKey, JSONWebKeySet, JWK } from 'jose';

import { isDns1123Label, isDns1123Subdomain } from './authenticator.js';
import { ISTIO_CA_AUDIENCE } from './authenticator.js';

export type DevIssuerAlgorithm = 'ES256' | 'ES384' | 'ES512' | 'RS256' | 'PS256' | 'EdDSA';

export const DEV_ISSUER_ALGORITHMS: readonly DevIssuerAlgorithm[] = ['ES256', 'ES384', 'ES512', 'RS256', 'PS256', 'EdDSA'];

/** The issuer a kube-apiserver uses by default (`--service-account-issuer`). */
export const DEFAULT_DEV_ISSUER = 'https://kubernetes.default.svc.cluster.local';

export const DEFAULT_DEV_AUDIENCE = ISTIO_CA_AUDIENCE;

export interface DevTokenIssuerOptions {
  /** `iss` of minted tokens. */
  readonly issuer?: string;
}

export interface GenerateDevTokenIssuerOptions extends DevTokenIssuerOptions {
  readonly alg?: DevIssuerAlgorithm;
}

export interface MintOptions {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** One audience or several; a projected token's `aud` is always an array. */
  readonly audience?: string | readonly string[];
  readonly ttlSeconds?: number;
  readonly podName?: string;
  /** Defaults to a UID derived from namespace and pod name, stable across mints. */
  readonly podUid?: string;
  readonly now: Date;
}

/** The `kubernetes.io` private claim of a projected service-account token. */
export interface KubernetesClaims {
  readonly namespace: string;
  readonly serviceaccount: { readonly name: string; readonly uid: string };
  readonly pod?: { readonly name: string; readonly uid: string };
}

function inferAlgorithm(jwk: JWK): DevIssuerAlgorithm | undefined {
  if (typeof jwk.alg === 'string') {
    return (DEV_ISSUER_ALGORITHMS as readonly string[]).includes(jwk.alg) ? (jwk.alg as DevIssuerAlgorithm) : undefined;
  }
  if (jwk.kty === 'EC') {
    if (jwk.crv === 'P-256') return 'ES256';
    if (jwk.crv === 'P-384') return 'ES384';
    if (jwk.crv === 'P-521') return 'ES512';
  }
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'RSA') return 'RS256';
  return undefined;
}

/**
 * Kubernetes UIDs are UUIDs. The dev issuer has no API objects to take them from, so it derives
 * them from the object's name: the same service account keeps its UID across restarts.
 */
function deriveUid(kind: string, namespace: string, name: string): string {
  const hex = createHash('sha256').update(`meshca-dev:${kind}:${namespace}/${name}`).digest('hex');
  // Shape it as an RFC 9562 version-8 (custom) UUID.
  const variant = ((parseInt(hex.slice(16, 18), 16) & 0x3f) | 0x80).toString(16).padStart(2, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(18, 20)}-${hex.slice(20, 32)}`;
}

function publicPart(jwk: JWK): JWK {
  // Whitelist rather than strip `d`, `p`, `q`...: a new private member can never leak.
  const { kty, crv, x, y, n, e } = jwk;
  const out: JWK = { kty };
  if (crv !== undefined) out.crv = crv;
  if (x !== undefined) out.x = x;
  if (y !== undefined) out.y = y;
  if (n !== undefined) out.n = n;
  if (e !== undefined) out.e = e;
  return out;
}

export class DevTokenIssuer {
  readonly issuer: string;
  readonly alg: DevIssuerAlgorithm;
  /** RFC 7638 thumbprint of the public key, sent as the `kid` header. */
  readonly keyId: string;
  readonly #privateKey: CryptoKey;
  readonly #privateJwk: Readonly<JWK>;
  readonly #publicJwk: Readonly<JWK>;

  private constructor(alg: DevIssuerAlgorithm, privateKey: CryptoKey, privateJwk: JWK, keyId: string, issuer: string) {
    this.alg = alg;
    this.#privateKey = privateKey;
    this.keyId = keyId;
    this.issuer = issuer;
    this.#privateJwk = Object.freeze({ ...privateJwk, alg, kid: keyId });
    this.#publicJwk = Object.freeze({ ...publicPart(privateJwk), alg, use: 'sig', kid: keyId });
  }

  static async generate(options: GenerateDevTokenIssuerOptions = {}): Promise<DevTokenIssuer> {
    const alg = options.alg ?? 'ES256';
    if (!DEV_ISSUER_ALGORITHMS.includes(alg)) throw new TypeError(`unsupported dev issuer algorithm ${alg}`);
    const { privateKey } = await generateKeyPair(alg, { extractable: true });
    return DevTokenIssuer.fromPrivateJwk(await exportJWK(privateKey), { ...options, alg });
  }

  /** Rebuilds an issuer from `exportPrivateJwk()` output. Throws TypeError for an unusable key. */
  static async fromPrivateJwk(jwk: JWK, options: GenerateDevTokenIssuerOptions = {}): Promise<DevTokenIssuer> {
    if (typeof jwk !== 'object' || jwk === null || typeof jwk.kty !== 'string') {
      throw new TypeError('dev issuer key is not a JWK');
    }
    if (jwk.d === undefined) throw new TypeError('dev issuer key is a public key; a private JWK is needed to sign');
    const alg = options.alg ?? inferAlgorithm(jwk);
    if (alg === undefined) throw new TypeError(`dev issuer key of type ${jwk.kty} has no supported signing algorithm`);
    const issuer = options.issuer ?? DEFAULT_DEV_ISSUER;
    if (!URL.canParse(issuer)) throw new TypeError(`dev issuer ${JSON.stringify(issuer)} is not a URL`);
    const key = await importJWK({ ...jwk, alg }, alg, { extractable: false });
    if (key instanceof Uint8Array) throw new TypeError('dev issuer key must be asymmetric');
    const keyId = await calculateJwkThumbprint(publicPart(jwk), 'sha256');
    return new DevTokenIssuer(alg, key, jwk, keyId, issuer);
  }

  /** Mints a token shaped like a kubelet-projected service-account token. */
  async mint(options: MintOptions): Promise<string> {
    const { namespace, serviceAccount, podName, now } = options;
    if (!isDns1123Label(namespace)) throw new TypeError(`namespace ${JSON.stringify(namespace)} is not a DNS-1123 label`);
    if (!isDns1123Subdomain(serviceAccount)) {
      throw new TypeError(`service account ${JSON.stringify(serviceAccount)} is not a DNS-1123 subdomain`);
    }
    if (podName !== undefined && !isDns1123Subdomain(podName)) throw new TypeError(`pod name ${JSON.stringify(podName)} is not valid`);
    const ttlSeconds = options.ttlSeconds ?? 3600;
    if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) throw new TypeError(`ttlSeconds must be a positive integer, got ${ttlSeconds}`);
    if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new TypeError('now must be a valid Date');
    const audience = options.audience ?? DEFAULT_DEV_AUDIENCE;
    const aud = typeof audience === 'string' ? [audience] : [...audience];
    if (aud.length === 0 || aud.some((a) => a.length === 0)) throw new TypeError('audience must be non-empty');

    const iat = Math.floor(now.getTime() / 1000);
    const kubernetes: KubernetesClaims = {
      namespace,
      serviceaccount: { name: serviceAccount, uid: deriveUid('serviceaccount', namespace, serviceAccount) },
      ...(podName === undefined ? {} : { pod: { name: podName, uid: options.podUid ?? deriveUid('pod', namespace, podName) } }),
    };
    return new SignJWT({ 'kubernetes.io': kubernetes })
      .setProtectedHeader({ alg: this.alg, kid: this.keyId })
      .setIssuer(this.issuer)
      .setSubject(`system:serviceaccount:${namespace}:${serviceAccount}`)
      .setAudience(aud)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + ttlSeconds)
      .setJti(randomUUID())
      .sign(this.#privateKey);
  }

  /** The verification keys, in the form `createJwksAuthenticator({ jwks: { keys } })` takes. */
  publicJwks(): JSONWebKeySet {
    return { keys: [{ ...this.#publicJwk }] };
  }

  /** The private key as a JWK, for the caller to persist (mode 0600). Secret material. */
  exportPrivateJwk(): JWK {
    return { ...this.#privateJwk };
  }

  // Keep the key out of logs and `util.inspect` output.
  toJSON(): object {
    return { issuer: this.issuer, alg: this.alg, keyId: this.keyId };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `DevTokenIssuer { issuer: '${this.issuer}', alg: '${this.alg}', keyId: '${this.keyId}' }`;
  }
}
