/**
 * The agent's way to JWT-SVIDs over the CA's gRPC port (`meshca.v1.JwtSvidService`), so
 * `--ca-address` alone serves both SVID profiles. Same channel rules as the CA client: TLS
 * verified against the current mesh roots, the token only after the handshake, statuses mapped
 * to the coded errors the Workload API server answers with.
 */
import { CaNotReadyError } from '../../errors.js';
import type { JwtSvidTransport } from '../http/ca-jwt-client.js';
import { GrpcStatus } from '../status.js';
import { caErrorFromGrpc } from './ca-client.js';
import { FETCH_JWT_BUNDLE_PATH, MINT_JWT_SVID_PATH } from './jwt-svid-service.js';
import { decodeFetchJwtBundleResponse, decodeMintJwtSvidResponse, encodeMintJwtSvidRequest, ProtobufDecodeError } from './protobuf-wire.js';
import { UnaryChannel } from './unary-channel.js';

export interface GrpcJwtSvidTransportOptions {
  readonly address: string;
  /** Current mesh roots; a change is picked up by the next call. Undefined: plaintext. */
  readonly rootCertPem?: () => string;
  readonly serverName?: string;
  readonly timeoutMs: number;
}

export function createGrpcJwtSvidTransport(options: GrpcJwtSvidTransportOptions): JwtSvidTransport & { close(): void } {
  const { address, serverName } = options;
  let roots = options.rootCertPem?.();
  const channel = new UnaryChannel({ address, ...(roots === undefined ? {} : { rootCertPem: roots }), ...(serverName === undefined ? {} : { serverName }) });
  const call = async (path: string, message: Buffer, metadata: Record<string, string>): Promise<Buffer> => {
    const current = options.rootCertPem?.();
    if (current !== undefined && current !== roots) {
      roots = current;
      channel.updateRootCertPem(current);
    }
    const result = await channel.call({ path, message, metadata, timeoutMs: options.timeoutMs });
    if (result.status !== GrpcStatus.OK) throw caErrorFromGrpc(result, { address, serverName, service: 'meshca.v1.JwtSvidService: JWT-SVIDs need a meshca CA, or --ca-http-address' });
    return result.message;
  };
  const decoded = <T>(decode: () => T): T => {
    try {
      return decode();
    } catch (err) {
      if (!(err instanceof ProtobufDecodeError)) throw err;
      throw new CaNotReadyError(`CA at ${address} sent a malformed JwtSvidService response: ${err.message}`, { rule: 'ca-error', cause: err });
    }
  };
  return {
    async mint(token, audience) {
      const reply = await call(MINT_JWT_SVID_PATH, encodeMintJwtSvidRequest({ audience }), { authorization: `Bearer ${token}` });
      return decoded(() => decodeMintJwtSvidResponse(reply));
    },
    async bundleJson() {
      const reply = await call(FETCH_JWT_BUNDLE_PATH, Buffer.alloc(0), {});
      return decoded(() => decodeFetchJwtBundleResponse(reply)).bundleJson;
    },
    close: () => channel.close(),
  };
}
