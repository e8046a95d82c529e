import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { RequestError, TtlError } from '../errors.js';
import type { SpiffeId } from '../spiffe/spiffe-id.js';

export const DEFAULT_JWT_SVID_TTL_SECONDS = 300;
export const MAX_JWT_SVID_TTL_SECONDS = 3600;
const MAX_AUDIENCES = 10;

export interface MintedJwtSvid {
  readonly token: string;
  readonly spiffeId: SpiffeId;
  readonly audience: readonly string[];
  readonly expiresAt: Date;
}

type SigningKey = Awaited<ReturnType<typeof importJWK>>;

/**
 * Mints JWT-SVIDs (SPIFFE JWT-SVID profile): `sub` = the SPIFFE ID, `aud`, `exp`, `iat`, and
 * a `kid` header naming the key published in the trust domain's bundle. Short-lived by default
 * because a bearer token cannot be bound to a connection the way an X.509-SVID can.
 */
export class JwtSvidIssuer {
  readonly keyId: string;
  readonly alg = 'ES256';
  readonly #key: SigningKey;
  readonly #privateJwk: JWK;
  readonly #publicJwk: JWK;

  private constructor(key: SigningKey, privateJwk: JWK, publicJwk: JWK, keyId: string) {
    this.#key = key;
    this.#privateJwk = privateJwk;
    this.#publicJwk = publicJwk;
    this.keyId = keyId;
  }

  static async generate(): Promise<JwtSvidIssuer> {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    return JwtSvidIssuer.fromPrivateJwk(await exportJWK(privateKey));
  }

  static async fromPrivateJwk(jwk: JWK): Promise<JwtSvidIssuer> {
    if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string') {
      throw new TypeError('JWT-SVID signing key must be an EC P-256 private JWK');
    }
    const { d: _d, ...publicPart } = jwk;
    const keyId = await calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: jwk.x!, y: jwk.y! });
    const publicJwk: JWK = { kty: publicPart.kty, crv: publicPart.crv!, x: publicPart.x!, y: publicPart.y!, kid: keyId, alg: 'ES256' };
    return new JwtSvidIssuer(await importJWK({ ...jwk, alg: 'ES256' }, 'ES256'), { ...jwk }, publicJwk, keyId);
  }

  exportPrivateJwk(): JWK {
    return { ...this.#privateJwk };
  }

  /** The public key for the trust bundle (SPIFFE bundle JWKS, `use: jwt-svid`). */
  publicJwk(): JWK {
    return { ...this.#publicJwk };
  }

  async mint(id: SpiffeId, audience: readonly string[], options: { now: Date; ttlSeconds?: number }): Promise<MintedJwtSvid> {
    if (audience.length === 0 || audience.length > MAX_AUDIENCES || audience.some((a) => typeof a !== 'string' || a.length === 0 || a.length > 256)) {
      throw new RequestError(`a JWT-SVID needs 1 to ${MAX_AUDIENCES} non-empty audiences of at most 256 characters`, {
        rule: 'audience',
      });
    }
    const ttlSeconds = options.ttlSeconds ?? DEFAULT_JWT_SVID_TTL_SECONDS;
    if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > MAX_JWT_SVID_TTL_SECONDS) {
      throw new TtlError(`JWT-SVID TTL must be 1..${MAX_JWT_SVID_TTL_SECONDS} seconds`, { rule: 'jwt-ttl' });
    }
    const iat = Math.floor(options.now.getTime() / 1000);
    const exp = iat + ttlSeconds;
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.keyId, typ: 'JWT' })
      .setSubject(id.toString())
      .setAudience([...audience])
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(this.#key);
    return { token, spiffeId: id, audience: [...audience], expiresAt: new Date(exp * 1000) };
  }
}
