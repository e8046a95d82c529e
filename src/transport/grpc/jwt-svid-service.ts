/**
 * `meshca.v1.JwtSvidService` (proto/meshca/v1/jwt_svid.proto) on the CA's gRPC port: JWT-SVIDs
 * for the caller's own identity, authenticated like CreateCertificate, and the JWT keys of the
 * trust bundle. With it an agent needs only `--ca-address` for both SVID profiles; the HTTPS
 * API's `/v1/jwtsvids` and `/.well-known/spiffe-bundle` stay for other clients.
 */
import { Metadata, type sendUnaryData, type Server, type ServerUnaryCall, type ServiceDefinition } from '@grpc/grpc-js';
import type { IssuanceService } from '../../ca/issuance-service.js';
import { AuthnUnavailableError, RequestError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { bearerToken } from '../bearer.js';
import { errorLogFields, toPublicError } from '../status.js';
import {
  decodeMintJwtSvidRequest,
  encodeFetchJwtBundleResponse,
  encodeMintJwtSvidResponse,
  ProtobufDecodeError,
} from './protobuf-wire.js';

export const MINT_JWT_SVID_PATH = '/meshca.v1.JwtSvidService/MintJwtSvid';
export const FETCH_JWT_BUNDLE_PATH = '/meshca.v1.JwtSvidService/FetchJwtBundle';

type Decoded<T> = T | ProtobufDecodeError;
const raw = (b: Buffer): Buffer => b;

/** A message that does not decode is answered INVALID_ARGUMENT by the handler, not by grpc-js. */
function decoding<T>(decode: (b: Buffer) => T): (b: Buffer) => Decoded<T> {
  return (b) => {
    try {
      return decode(b);
    } catch (err) {
      if (err instanceof ProtobufDecodeError) return err;
      throw err;
    }
  };
}

const definition = {
  MintJwtSvid: {
    path: MINT_JWT_SVID_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: decoding(decodeMintJwtSvidRequest),
    responseSerialize: raw,
    responseDeserialize: raw,
  },
  FetchJwtBundle: {
    path: FETCH_JWT_BUNDLE_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
} as unknown as ServiceDefinition;

export interface JwtSvidServiceOptions {
  readonly issuance: IssuanceService;
  readonly logger: Logger;
  /** The trust domain's SPIFFE bundle (JWKS JSON), as `/.well-known/spiffe-bundle` serves it. */
  readonly bundleJson: () => string;
  readonly requestTimeoutMs: number;
}

export function addJwtSvidService(server: Server, options: JwtSvidServiceOptions): void {
  const log = options.logger.child({ component: 'grpc-jwt' });
  const refuse = (callback: sendUnaryData<Buffer>, err: unknown): void => {
    const pub = toPublicError(err);
    log.warn({ result: 'denied', code: pub.code, ...errorLogFields(err) }, 'JWT-SVID request refused');
    const metadata = new Metadata();
    metadata.set('meshca-error-code', pub.code);
    callback({ code: pub.grpcStatus, details: pub.message, metadata });
  };
  server.addService(definition, {
    MintJwtSvid(call: ServerUnaryCall<Decoded<{ audience: string[]; ttlSeconds: number }>, Buffer>, callback: sendUnaryData<Buffer>): void {
      const request = call.request;
      if (request instanceof ProtobufDecodeError) {
        refuse(callback, new RequestError(`MintJwtSvidRequest does not decode: ${request.message}`, { rule: 'message' }));
        return;
      }
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(new AuthnUnavailableError(`authentication did not finish within ${options.requestTimeoutMs} ms`, { rule: 'timeout' })), options.requestTimeoutMs);
      let token: string;
      try {
        token = bearerToken(call.metadata.get('authorization').map(String));
      } catch (err) {
        clearTimeout(timer);
        refuse(callback, err);
        return;
      }
      options.issuance
        .mintJwtSvid({ token, audience: request.audience, signal: abort.signal, ...(request.ttlSeconds > 0 ? { ttlSeconds: request.ttlSeconds } : {}) })
        .then(
          (minted) => {
            log.info({ spiffeId: minted.spiffeId.toString(), audience: request.audience, expiresAt: minted.expiresAt.toISOString(), result: 'issued' }, 'JWT-SVID issued');
            callback(null, encodeMintJwtSvidResponse({ spiffeId: minted.spiffeId.toString(), token: minted.token }));
          },
          (err: unknown) => refuse(callback, err),
        )
        .finally(() => clearTimeout(timer));
    },
    FetchJwtBundle(_call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>): void {
      callback(null, encodeFetchJwtBundleResponse(options.bundleJson()));
    },
  });
}
