/**
 * Fastify plugin exposing the mTLS peer of each request as `request.peerSpiffeId`, with an
 * optional per-request authorization hook. The identity was verified and cached once per
 * connection by `meshca/tls` (perf-baselines: re-reading the certificate per request costs
 * ~3x in throughput), so the hook is a WeakMap lookup.
 *
 * The fastify server must come from `createHttpsServer` (via `serverFactory`) or have had
 * `enableMtls` applied; registering the plugin on any other server throws, because without the
 * guard there is no verified identity to read.
 *
 *   const app = Fastify({ serverFactory: (handler) => createHttpsServer(source, {}, handler) });
 *   await app.register(fastifyMtls, { authorize: (req) => authorizeId(api)(req.peerSpiffeId) });
 */
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AuthzDeniedError, isIdentityError, SvidUntrustedError, type IdentityError } from '../../errors.js';
import { toPublicError } from '../status.js';
import type { SpiffeId } from '../../spiffe/spiffe-id.js';
import { findPeerIdentity, isMtlsEnabled } from '../../tls/index.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified SPIFFE ID of the client of this request's TLS connection. */
    peerSpiffeId: SpiffeId;
  }
}

export interface FastifyMtlsOptions {
  /**
   * Runs on every request after `peerSpiffeId` is set, before the body is read. Deny by throwing
   * `AuthzDeniedError` (its message is sent) or by returning false; either answers
   * 403 `{ error: { code: 'ERR_AUTHZ_DENIED', message } }`. Other errors go to the error handler.
   */
  readonly authorize?: (request: FastifyRequest) => void | boolean | Promise<void | boolean>;
}

function refuse(reply: FastifyReply, err: IdentityError): void {
  const pub = toPublicError(err);
  void reply.status(pub.httpStatus).send({ error: { code: pub.code, message: pub.message } });
}

function deny(reply: FastifyReply, message: string): void {
  refuse(reply, new AuthzDeniedError(message));
}

const plugin: FastifyPluginCallback<FastifyMtlsOptions> = (app, options, done) => {
  if (!isMtlsEnabled(app.server)) {
    done(new TypeError('fastify-mtls needs a server from meshca/tls createHttpsServer (serverFactory) or enableMtls'));
    return;
  }
  const authorize = options.authorize;
  if (authorize !== undefined && typeof authorize !== 'function') {
    done(new TypeError('authorize must be a function'));
    return;
  }
  app.decorateRequest('peerSpiffeId', null as unknown as SpiffeId);

  const decide = (request: FastifyRequest, reply: FastifyReply, next: (err?: Error) => void, result: unknown): void => {
    if (result === false) deny(reply, `${request.peerSpiffeId} is not allowed to call ${request.method} ${request.url}`);
    else next();
  };
  const fail = (reply: FastifyReply, next: (err?: Error) => void, err: unknown): void => {
    if (isIdentityError(err) && err.code === 'ERR_AUTHZ_DENIED') deny(reply, err.message);
    else next(err instanceof Error ? err : new Error(String(err)));
  };

  // A callback-style hook: no promise per request on the common, synchronous path.
  app.addHook('onRequest', (request, reply, next) => {
    const identity = findPeerIdentity(request.raw);
    if (identity === undefined) {
      // Unreachable through a guarded server; inject() and the like have no TLS peer. Fail closed.
      refuse(reply, new SvidUntrustedError('no verified client certificate'));
      return;
    }
    request.peerSpiffeId = identity.id;
    if (authorize === undefined) {
      next();
      return;
    }
    let result: ReturnType<NonNullable<FastifyMtlsOptions['authorize']>>;
    try {
      result = authorize(request);
    } catch (err) {
      fail(reply, next, err);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (value) => decide(request, reply, next, value),
        (err: unknown) => fail(reply, next, err),
      );
    } else {
      decide(request, reply, next, result);
    }
  });
  done();
};

/** See the module comment. Registered with fastify-plugin, so it applies to the whole instance. */
export const fastifyMtls = fp(plugin, { name: 'meshca-mtls', fastify: '5.x' });
