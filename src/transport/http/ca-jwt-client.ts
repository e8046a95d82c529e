import { request } from 'node:https';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWK } from 'jose';
import type { TokenSource } from '../../agent/ports.js';
import { AuthnError, CaNotReadyError, IdentityMismatchError, RequestError, type IdentityError } from '../../errors.js';
import { errorFromWire } from '../status.js';
import type { TrustDomain } from '../../spiffe/trust-domain.js';
import { parseSpiffeId } from '../../spiffe/spiffe-id.js';
import type { JwtSvidProvider, JwtSvidResult, JwtValidationResult } from '../grpc/workload-api-server.js';

/** How JWT-SVIDs and the JWT keys are fetched from the CA: its HTTPS API, or its gRPC port. */
export interface JwtSvidTransport {
  mint(token: string, audience: readonly string[]): Promise<{ spiffeId: string; token: string }>;
  /** The SPIFFE bundle document (JWKS JSON). */
  bundleJson(): Promise<string>;
}

export interface CaJwtClientOptions {
  /** The CA's HTTPS API, `host:port`; ignored when `transport` is given. */
  readonly address: string;
  /** Another way to the CA (meshca.v1.JwtSvidService on the gRPC port); default the HTTPS API. */
  readonly transport?: JwtSvidTransport;
  readonly trustDomain: TrustDomain;
  readonly tokenSource: TokenSource;
  /** Current mesh roots (PEM): the CA's serving certificate chains to them. */
  readonly rootCertPem: () => string;
  readonly serverName?: string;
  readonly timeoutMs?: number;
}

interface Response {
  readonly status: number;
  readonly body: string;
}

/**
 * The agent's JWT-SVID profile, backed by the CA: minting (authenticated by the workload's own
 * token) and the JWT keys of the trust bundle, with which JWT-SVIDs are validated locally. Over
 * the HTTPS API (`POST /v1/jwtsvids`, `/.well-known/spiffe-bundle`) or, given a `transport`,
 * over the CA's gRPC port (transport/grpc/jwt-svid-client.ts).
 */
export function createCaJwtClient(options: CaJwtClientOptions): JwtSvidProvider {
  const [host, port] = options.transport === undefined ? splitAddress(options.address) : ['', 0];
  const timeoutMs = options.timeoutMs ?? 10_000;
  let keys: JSONWebKeySet | undefined;
  let keysAt = 0;

  const call = (method: string, path: string, headers: Record<string, string>, body?: string): Promise<Response> =>
    new Promise((resolve, reject) => {
      const req = request(
        { host, port, method, path, headers, ca: options.rootCertPem(), servername: options.serverName ?? host, timeout: timeoutMs, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new CaNotReadyError(`CA ${options.address} did not answer within ${timeoutMs} ms`, { rule: 'deadline-exceeded' })));
      req.on('error', (err) => reject(err instanceof CaNotReadyError ? err : new CaNotReadyError(`CA ${options.address} unreachable: ${err.message}`, { rule: 'unavailable', cause: err })));
      req.end(body);
    });

  const https: JwtSvidTransport = {
    async mint(token, audience) {
      const res = await call(
        'POST',
        '/v1/jwtsvids',
        { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        JSON.stringify({ audience: [...audience] }),
      );
      if (res.status !== 200) throw errorFromStatus(res);
      const body = JSON.parse(res.body) as { token: string; spiffeId: string };
      return { spiffeId: body.spiffeId, token: body.token };
    },
    async bundleJson() {
      const res = await call('GET', '/.well-known/spiffe-bundle', {});
      if (res.status !== 200) throw new CaNotReadyError(`CA bundle endpoint answered ${res.status}`, { rule: 'bundle' });
      return res.body;
    },
  };
  const transport = options.transport ?? https;

  const refreshKeys = async (): Promise<JSONWebKeySet> => {
    const doc = JSON.parse(await transport.bundleJson()) as { keys?: (JWK & { use?: string })[] };
    // SPIFFE marks JWT authorities `use: jwt-svid`; JOSE only knows `sig`, so drop the member.
    keys = { keys: (doc.keys ?? []).filter((k) => k.use === 'jwt-svid').map(({ use: _use, ...k }) => k) };
    keysAt = Date.now();
    return keys;
  };

  return {
    async fetchJwtSvid(audience, spiffeId): Promise<JwtSvidResult> {
      const token = await options.tokenSource.readToken();
      const body = await transport.mint(token, audience);
      if (spiffeId !== undefined && spiffeId !== '' && spiffeId !== body.spiffeId) {
        throw new IdentityMismatchError(`this workload is ${body.spiffeId}, not ${spiffeId}`, { rule: 'jwt-spiffe-id' });
      }
      return { spiffeId: body.spiffeId, svid: body.token };
    },

    async jwtBundles() {
      const set = keys && Date.now() - keysAt < 60_000 ? keys : await refreshKeys();
      return new Map([[options.trustDomain.idString(), new TextEncoder().encode(JSON.stringify({ keys: set.keys.map((k) => ({ ...k, use: 'jwt-svid' })) }))]]);
    },

    async validate(token, audience): Promise<JwtValidationResult> {
      let set = keys ?? (await refreshKeys());
      const verify = () => jwtVerify(token, createLocalJWKSet(set), { audience, algorithms: ['ES256', 'ES384', 'RS256', 'PS256'] });
      let result;
      try {
        result = await verify();
      } catch (err) {
        if ((err as { code?: string }).code !== 'ERR_JWKS_NO_MATCHING_KEY') throw new AuthnError(`JWT-SVID rejected: ${(err as Error).message}`, { rule: 'jwt-svid', cause: err });
        // A key we have not seen: the CA may have rotated its JWT key; refresh once.
        set = await refreshKeys();
        try {
          result = await verify();
        } catch (again) {
          throw new AuthnError(`JWT-SVID rejected: ${(again as Error).message}`, { rule: 'jwt-svid', cause: again });
        }
      }
      const sub = result.payload.sub;
      if (typeof sub !== 'string') throw new AuthnError('JWT-SVID has no sub', { rule: 'jwt-svid' });
      const id = parseSpiffeId(sub);
      if (!id.memberOf(options.trustDomain)) throw new AuthnError(`JWT-SVID subject ${sub} is outside ${options.trustDomain.name}`, { rule: 'jwt-svid' });
      return { spiffeId: sub, claims: result.payload as Record<string, unknown> };
    },
  };
}

function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  const port = Number(address.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`invalid address ${address}`);
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), port];
}

function errorFromStatus(res: Response): IdentityError {
  let message = `CA answered ${res.status}`;
  let code: unknown;
  try {
    const error = (JSON.parse(res.body) as { error?: { code?: unknown; message?: string } }).error;
    message = error?.message ?? message;
    code = error?.code;
  } catch {
    // not JSON; keep the status line
  }
  const derived =
    res.status === 401
      ? new AuthnError(message, { rule: 'ca-rejected-token' })
      : res.status === 403
        ? new IdentityMismatchError(message, { rule: 'ca-denied' })
        : res.status === 400
          ? new RequestError(message, { rule: 'ca-rejected-request' })
          : new CaNotReadyError(message, { rule: 'unavailable' });
  return errorFromWire(code, derived);
}
