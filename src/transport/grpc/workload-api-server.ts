/**
 * The SPIFFE Workload API (SPIFFE_Workload_API.md, SPIFFE_Workload_Endpoint.md) on a unix
 * socket, so any SPIFFE library (go-spiffe, java-spiffe, py-spiffe, Envoy via SDS bridges) can
 * take its identity from the meshca agent.
 *
 * Access control is the socket's directory: the agent holds exactly one identity (its pod's
 * service account) and serves it to every caller that can reach the socket, so mount that
 * directory only into the pod's own containers. There is no per-process attestation here.
 *
 * Handlers stay thin: every answer comes from the X.509 source (the SvidRotator) or the JWT
 * provider port; this file only checks the security header, encodes, and streams updates.
 */
import { lstat, mkdir, chmod, unlink } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import { Metadata, Server, ServerCredentials, status as GrpcStatus, type ServerWritableStream } from '@grpc/grpc-js';
import { parseWorkloadApiSocket } from '../../config/workload-api-socket.js';
import { ConfigError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { silentLogger } from '../../log.js';
import type { X509Bundle, X509BundleSource } from '../../spiffe/x509-bundle.js';
import type { TrustDomain } from '../../spiffe/trust-domain.js';
import type { X509Svid, X509SvidSource } from '../../spiffe/x509-svid.js';
import type { Struct } from '../../generated/workload/google/protobuf/Struct.js';
import type { Value } from '../../generated/workload/google/protobuf/Value.js';
import type { SpiffeWorkloadAPIHandlers } from '../../generated/workload/SpiffeWorkloadAPI.js';
import type { X509BundlesResponse } from '../../generated/workload/X509BundlesResponse.js';
import type { X509SVIDResponse } from '../../generated/workload/X509SVIDResponse.js';
import type { JWTBundlesResponse } from '../../generated/workload/JWTBundlesResponse.js';
import { toPublicError } from '../status.js';
import { loadWorkloadProto } from './protos.js';

/** The mandatory security header (SPIFFE_Workload_Endpoint.md §3) and SPIRE's wording. */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';
export const SECURITY_HEADER_MISSING = 'security header missing from request';

/**
 * What the server serves X.509 material from: the rotator, or anything shaped like it.
 * `update` fires on a new SVID or bundle, `bundle` on a bundle change, `error` when something
 * went wrong (the server then checks whether the SVID is still usable).
 */
export interface WorkloadX509Source extends X509SvidSource, X509BundleSource {
  readonly trustDomain: TrustDomain;
  /**
   * Every bundle, own and federated. Bundles of other trust domains go out as
   * `federated_bundles` and in FetchX509Bundles; without this method only the own one is sent.
   */
  getX509Bundles?(): readonly X509Bundle[];
  on(event: 'update' | 'bundle' | 'error', listener: () => void): unknown;
  off(event: 'update' | 'bundle' | 'error', listener: () => void): unknown;
}

export interface JwtSvidResult {
  readonly spiffeId: string;
  /** JWS compact serialization. */
  readonly svid: string;
  readonly hint?: string;
}

export interface JwtValidationResult {
  readonly spiffeId: string;
  readonly claims: Readonly<Record<string, unknown>>;
}

/**
 * The JWT-SVID profile, supplied by whoever can mint JWT-SVIDs (the CA side). Rejections are
 * coded `IdentityError`s and reach the client through the status table.
 */
export interface JwtSvidProvider {
  fetchJwtSvid(audience: readonly string[], spiffeId?: string): Promise<JwtSvidResult>;
  /** JWKS documents (JSON bytes) keyed by trust domain SPIFFE ID, `spiffe://<td>`. */
  jwtBundles(): Promise<ReadonlyMap<string, Uint8Array>>;
  validate(token: string, audience: string): Promise<JwtValidationResult>;
  /** Optional change feed for FetchJWTBundles streams. */
  onBundlesChange?(listener: () => void): () => void;
}

export interface WorkloadApiServerOptions {
  /** `unix:///absolute/path` (the SPIFFE_ENDPOINT_SOCKET form) or a filesystem path. */
  readonly socket: string;
  readonly source: WorkloadX509Source;
  /** Without it the JWT-SVID RPCs answer UNIMPLEMENTED. */
  readonly jwt?: JwtSvidProvider;
  readonly logger?: Logger;
  /**
   * Mode of the socket file. Default 0o777, as SPIRE: connecting needs write permission, and
   * the directory (see the file comment) is what restricts access.
   */
  readonly socketMode?: number;
}

export interface WorkloadApiServer {
  /** Absolute filesystem path of the socket. */
  readonly socketPath: string;
  /** `unix://` + socketPath, the value for SPIFFE_ENDPOINT_SOCKET. */
  readonly endpoint: string;
  /** Ends open streams (status OK: clients reconnect, per the spec), stops, removes the socket. */
  close(graceMs?: number): Promise<void>;
}

export { parseWorkloadApiSocket };

type FetchStream<Res> = ServerWritableStream<unknown, Res>;

interface OpenStream {
  end(): void;
}

export async function startWorkloadApiServer(options: WorkloadApiServerOptions): Promise<WorkloadApiServer> {
  const socketPath = parseWorkloadApiSocket(options.socket);
  const { source, jwt } = options;
  const logger = (options.logger ?? silentLogger).child({ component: 'workload-api' });
  const streams = new Set<OpenStream>();

  /**
   * Runs one server stream: sends at once (the spec: the first response without delay), then
   * again on every `events` notification; ends with `status` when `send` says so.
   */
  const serveStream = <Res>(
    call: FetchStream<Res>,
    build: () => Res | { code: GrpcStatus; details: string },
    subscribe: (push: () => void) => (() => void)[],
  ): void => {
    let finished = false;
    const unsubscribe: (() => void)[] = [];
    const cleanup = (): void => {
      finished = true;
      streams.delete(handle);
      for (const off of unsubscribe.splice(0)) off();
    };
    const handle: OpenStream = {
      end: () => {
        if (finished) return;
        cleanup();
        call.end();
      },
    };
    const push = (): void => {
      if (finished) return;
      const message = build();
      if (isStatus(message)) {
        cleanup();
        call.emit('error', message);
        return;
      }
      call.write(message);
    };
    streams.add(handle);
    call.on('cancelled', cleanup);
    call.on('error', cleanup);
    push();
    if (!finished) unsubscribe.push(...subscribe(push));
  };

  const handlers: SpiffeWorkloadAPIHandlers = {
    FetchX509SVID(call) {
      if (!hasSecurityHeader(call.metadata)) return void call.emit('error', securityHeaderMissing());
      serveStream<X509SVIDResponse>(call, () => x509SvidResponse(source), (push) => {
        // An error event may mean the SVID just expired: push() then ends the stream with
        // UNAVAILABLE (clients retry with backoff). A still-valid SVID needs no new message.
        const onError = (): void => {
          if (!svidUsable(source)) push();
        };
        return [subscribe(source, 'update', push), subscribe(source, 'error', onError)];
      });
    },

    FetchX509Bundles(call) {
      if (!hasSecurityHeader(call.metadata)) return void call.emit('error', securityHeaderMissing());
      serveStream<X509BundlesResponse>(call, () => x509BundlesResponse(source), (push) => [subscribe(source, 'bundle', push)]);
    },

    FetchJWTSVID(call, callback) {
      if (!hasSecurityHeader(call.metadata)) return void callback(securityHeaderMissing());
      if (jwt === undefined) return void callback(jwtNotConfigured());
      const audience = call.request.audience.filter((a) => a.length > 0);
      if (audience.length === 0) return void callback({ code: GrpcStatus.INVALID_ARGUMENT, details: 'audience must be specified' });
      const spiffeId = call.request.spiffe_id === '' ? undefined : call.request.spiffe_id;
      jwt.fetchJwtSvid(audience, spiffeId).then(
        (result) => callback(null, { svids: [{ spiffe_id: result.spiffeId, svid: result.svid, hint: result.hint ?? '' }] }),
        (err: unknown) => callback(statusFor(err, logger, 'FetchJWTSVID')),
      );
    },

    FetchJWTBundles(call) {
      if (!hasSecurityHeader(call.metadata)) return void call.emit('error', securityHeaderMissing());
      if (jwt === undefined) return void call.emit('error', jwtNotConfigured());
      let finished = false;
      const send = (): void => {
        jwt.jwtBundles().then(
          (bundles) => {
            if (finished) return;
            const response: JWTBundlesResponse = { bundles: Object.fromEntries([...bundles].map(([td, jwks]) => [td, Buffer.from(jwks)])) };
            call.write(response);
          },
          (err: unknown) => {
            if (finished) return;
            finished = true;
            call.emit('error', statusFor(err, logger, 'FetchJWTBundles'));
          },
        );
      };
      const off = jwt.onBundlesChange?.(send);
      const handle: OpenStream = {
        end: () => {
          if (finished) return;
          finished = true;
          streams.delete(handle);
          off?.();
          call.end();
        },
      };
      streams.add(handle);
      const cleanup = (): void => {
        finished = true;
        streams.delete(handle);
        off?.();
      };
      call.on('cancelled', cleanup);
      call.on('error', cleanup);
      send();
    },

    ValidateJWTSVID(call, callback) {
      if (!hasSecurityHeader(call.metadata)) return void callback(securityHeaderMissing());
      if (jwt === undefined) return void callback(jwtNotConfigured());
      const { audience, svid } = call.request;
      if (audience === '') return void callback({ code: GrpcStatus.INVALID_ARGUMENT, details: 'audience must be specified' });
      if (svid === '') return void callback({ code: GrpcStatus.INVALID_ARGUMENT, details: 'svid must be specified' });
      jwt.validate(svid, audience).then(
        (result) => callback(null, { spiffe_id: result.spiffeId, claims: toStruct(result.claims) }),
        (err: unknown) => callback(statusFor(err, logger, 'ValidateJWTSVID')),
      );
    },
  };

  await removeStaleSocket(socketPath);
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  const server = new Server();
  server.addService(loadWorkloadProto().SpiffeWorkloadAPI.service, handlers);
  await new Promise<void>((resolveBind, reject) => {
    server.bindAsync(`unix://${socketPath}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolveBind()));
  });
  await chmod(socketPath, options.socketMode ?? 0o777);
  logger.info({ socket: socketPath }, 'SPIFFE Workload API listening');

  let closing: Promise<void> | undefined;
  return {
    socketPath,
    endpoint: `unix://${socketPath}`,
    close(graceMs = 5000): Promise<void> {
      closing ??= (async () => {
        for (const stream of [...streams]) stream.end();
        await new Promise<void>((done) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            done();
          }, graceMs);
          force.unref();
          server.tryShutdown(() => {
            clearTimeout(force);
            done();
          });
        });
        await unlink(socketPath).catch(() => undefined);
      })();
      return closing;
    },
  };
}

function subscribe(source: WorkloadX509Source, event: 'update' | 'bundle' | 'error', listener: () => void): () => void {
  source.on(event, listener);
  return () => void source.off(event, listener);
}

function hasSecurityHeader(metadata: Metadata): boolean {
  return metadata.get(WORKLOAD_API_HEADER).some((value) => value === 'true');
}

function securityHeaderMissing(): { code: GrpcStatus; details: string } {
  return { code: GrpcStatus.INVALID_ARGUMENT, details: SECURITY_HEADER_MISSING };
}

function jwtNotConfigured(): { code: GrpcStatus; details: string } {
  return { code: GrpcStatus.UNIMPLEMENTED, details: 'the JWT-SVID profile is not enabled on this meshca agent' };
}

function isStatus(value: unknown): value is { code: GrpcStatus; details: string } {
  return typeof value === 'object' && value !== null && 'code' in value && 'details' in value;
}

function svidUsable(source: X509SvidSource): boolean {
  try {
    source.getX509Svid();
    return true;
  } catch {
    return false;
  }
}

/** Unavailable, per the endpoint spec, while the agent has no valid SVID or bundle to give. */
function unavailable(err: unknown): { code: GrpcStatus; details: string } {
  const publicError = toPublicError(err);
  return { code: GrpcStatus.UNAVAILABLE, details: publicError.code === 'ERR_INTERNAL' ? 'no X.509-SVID available yet' : publicError.message };
}

function x509SvidResponse(source: WorkloadX509Source): X509SVIDResponse | { code: GrpcStatus; details: string } {
  let svid: X509Svid;
  try {
    svid = source.getX509Svid();
  } catch (err) {
    return unavailable(err);
  }
  const bundle = source.getX509BundleForTrustDomain(svid.id.trustDomain);
  if (bundle === undefined || svid.privateKey === undefined) {
    return { code: GrpcStatus.UNAVAILABLE, details: 'no trust bundle available yet' };
  }
  return {
    svids: [
      {
        spiffe_id: svid.id.toString(),
        x509_svid: Buffer.concat(svid.certificates.map((cert) => cert.raw)),
        x509_svid_key: svid.privateKey.export({ format: 'der', type: 'pkcs8' }),
        bundle: bundleDer(bundle),
        hint: '',
      },
    ],
    federated_bundles: Object.fromEntries(federatedBundles(source, svid.id.trustDomain).map((b) => [b.trustDomain.idString(), bundleDer(b)])),
  };
}

/** The source's bundles of trust domains other than `own`, one per trust domain. */
function federatedBundles(source: WorkloadX509Source, own: TrustDomain): X509Bundle[] {
  const seen = new Set<string>([own.name]);
  const bundles: X509Bundle[] = [];
  for (const bundle of source.getX509Bundles?.() ?? []) {
    if (seen.has(bundle.trustDomain.name) || bundle.authorities.length === 0) continue;
    seen.add(bundle.trustDomain.name);
    bundles.push(bundle);
  }
  return bundles;
}

function x509BundlesResponse(source: WorkloadX509Source): X509BundlesResponse | { code: GrpcStatus; details: string } {
  const bundle = source.getX509BundleForTrustDomain(source.trustDomain);
  if (bundle === undefined) return { code: GrpcStatus.UNAVAILABLE, details: 'no trust bundle available yet' };
  const federated = federatedBundles(source, source.trustDomain).map((b) => [b.trustDomain.idString(), bundleDer(b)] as const);
  return { bundles: Object.fromEntries([[source.trustDomain.idString(), bundleDer(bundle)], ...federated]) };
}

function bundleDer(bundle: X509Bundle): Buffer {
  return Buffer.concat(bundle.authorities.map((cert) => cert.raw));
}

function statusFor(err: unknown, logger: Logger, method: string): { code: GrpcStatus; details: string } {
  const publicError = toPublicError(err);
  if (publicError.code === 'ERR_INTERNAL') logger.error({ err, method }, 'workload API call failed');
  return { code: publicError.grpcStatus, details: publicError.message };
}

/** JSON claims as google.protobuf.Struct (camelCase: the well-known types ignore keepCase). */
function toStruct(record: Readonly<Record<string, unknown>>): Struct {
  return { fields: Object.fromEntries(Object.entries(record).map(([key, value]) => [key, toValue(value)])) };
}

function toValue(value: unknown): Value {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  if (typeof value === 'object') return { structValue: toStruct(value as Record<string, unknown>) };
  return { stringValue: String(value) };
}

/**
 * A socket left by a crashed agent blocks bind(); remove it, but only if it is a socket and no
 * process answers on it: a live agent keeps its socket, and no other file is ever deleted.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stats.isSocket()) throw new ConfigError([`${path} exists and is not a socket; refusing to replace it`]);
  const live = await new Promise<boolean>((resolveProbe) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolveProbe(true);
    });
    probe.once('error', () => resolveProbe(false));
  });
  if (live) throw new ConfigError([`another process is serving on ${path}; is an agent already running?`]);
  await unlink(path);
}
