/**
 * A minimal stand-in for the meshca CA server, for agent tests: a real `CertificateAuthority`
 * behind a real `IssuanceService` that verifies DevTokenIssuer tokens through the JWKS
 * authenticator, served over gRPC (`istio.v1.auth.IstioCertificateService/CreateCertificate`)
 * with TLS from a serving certificate that chains to the mesh root. It stays beside the real
 * runtime (`startTestCa`) because agent tests need what a real CA cannot do: hold calls
 * unanswered (`stall`), record what was asked, and sign past the identity checks.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { Metadata, Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { DevTokenIssuer } from '../../src/authn/dev-issuer.js';
import { createJwksAuthenticator } from '../../src/authn/jwks.js';
import { CertificateAuthority } from '../../src/ca/certificate-authority.js';
import { IssuanceService } from '../../src/ca/issuance-service.js';
import { systemClock, type Clock } from '../../src/clock.js';
import { createSelfSignedRoot, loadAuthority, type Authority } from '../../src/pki/authority.js';
import { parseCsr } from '../../src/pki/csr.js';
import { LeafTemplate } from '../../src/pki/leaf-template.js';
import { encodePem } from '../../src/pki/pem.js';
import { parseTrustDomain, type TrustDomain } from '../../src/spiffe/trust-domain.js';
import { parseX509BundlePem, type X509Bundle } from '../../src/spiffe/x509-bundle.js';
import type { IstioCertificateRequest__Output } from '../../src/generated/istio-ca/istio/v1/auth/IstioCertificateRequest.js';
import type { IstioCertificateResponse } from '../../src/generated/istio-ca/istio/v1/auth/IstioCertificateResponse.js';
import { loadIstioCaProto } from '../../src/transport/grpc/protos.js';
import { toPublicError } from '../../src/transport/status.js';

export interface TestMeshCa {
  readonly trustDomain: TrustDomain;
  readonly authority: Authority;
  readonly ca: CertificateAuthority;
  readonly rootPem: string;
  readonly bundle: X509Bundle;
  readonly issuance: IssuanceService;
}

export interface CreateTestMeshCaOptions {
  readonly clock?: Clock;
  readonly trustDomain?: string;
  /** Token issuer whose JWKS the CA trusts (tests mint the workload's tokens with it). */
  readonly tokenIssuer: DevTokenIssuer;
  readonly now?: Date;
}

/** A self-signed mesh root with a CA and an issuance service that trusts `tokenIssuer`. */
export async function createTestMeshCa(options: CreateTestMeshCaOptions): Promise<TestMeshCa> {
  const clock = options.clock ?? systemClock;
  const now = options.now ?? clock.now();
  const trustDomain = parseTrustDomain(options.trustDomain ?? 'cluster.local');
  const root = await createSelfSignedRoot({ trustDomain: trustDomain.name, now });
  const authority = loadAuthority({ certPem: root.certPem, keyPem: root.keyPem, rootPem: root.certPem }, now);
  const ca = new CertificateAuthority({ authority, clock });
  const authenticator = createJwksAuthenticator({
    issuer: options.tokenIssuer.issuer,
    audiences: ['istio-ca'],
    jwks: { keys: options.tokenIssuer.publicJwks() },
    clock,
  });
  return {
    trustDomain,
    authority,
    ca,
    rootPem: root.certPem,
    bundle: parseX509BundlePem(trustDomain, root.certPem),
    issuance: new IssuanceService({ ca, authenticator, trustDomain }),
  };
}

/**
 * Signs the CSR's key for `uri` with no identity checks at all: what a buggy or hostile CA
 * would return. For tests of the agent's own checks only.
 */
export async function signBypassingChecks(authority: Authority, csrPem: string, uri: string, now: Date): Promise<string[]> {
  const csr = parseCsr(csrPem);
  const template = new LeafTemplate({
    signatureAlgorithm: authority.signer.algorithm,
    issuerName: authority.subjectName,
    issuerKeyId: authority.subjectKeyId,
  });
  const tbs = template.buildTbs({
    serial: Uint8Array.from([0x01, ...randomBytes(15)]),
    notBefore: new Date(now.getTime() - 10_000),
    notAfter: new Date(now.getTime() + 24 * 3_600_000),
    spki: csr.spki,
    uri,
    keyEncipherment: false,
  });
  const certificate = template.assemble(tbs, await authority.signer.sign(tbs));
  return [encodePem('CERTIFICATE', certificate), ...authority.issuerChain.map((c) => encodePem('CERTIFICATE', c.raw))];
}

/** A TLS serving certificate for the CA itself, chaining to the mesh root, for `dnsNames`. */
export async function issueServingCertificate(authority: Authority, dnsNames: readonly string[]): Promise<{ certChainPem: string; keyPem: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const issued = await new CertificateAuthority({ authority }).issueServingCertificate(publicKey, { dnsNames, ttlSeconds: 24 * 3600 });
  return { certChainPem: issued.certChainPem.join(''), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

export interface FakeCaServerOptions {
  readonly issuance: IssuanceService;
  /** Serving certificate and key; plaintext when absent. */
  readonly tls?: { readonly certChainPem: string; readonly keyPem: string };
}

export interface FakeCaServer {
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  readonly port: number;
  /** Requests seen, without tokens. */
  readonly requests: { readonly validitySeconds: number; readonly hadBearer: boolean }[];
  /** When set, calls are held and never answered (to exercise client deadlines). */
  stall: boolean;
  close(): Promise<void>;
}

export async function startFakeCaServer(options: FakeCaServerOptions): Promise<FakeCaServer> {
  const server = new Server();
  const requests: { validitySeconds: number; hadBearer: boolean }[] = [];
  const state = { stall: false };
  server.addService(loadIstioCaProto().istio.v1.auth.IstioCertificateService.service, {
    CreateCertificate(
      call: ServerUnaryCall<IstioCertificateRequest__Output, IstioCertificateResponse>,
      callback: sendUnaryData<IstioCertificateResponse>,
    ) {
      const token = bearerToken(call.metadata);
      requests.push({ validitySeconds: call.request.validity_duration, hadBearer: token !== undefined });
      if (state.stall) return;
      const ttl = call.request.validity_duration;
      options.issuance
        .issue({ token: token ?? '', csr: call.request.csr, ...(ttl > 0 ? { ttlSeconds: ttl } : {}) })
        .then(
          (issued) => callback(null, { cert_chain: [...issued.certChainPem] }),
          (err: unknown) => {
            const e = toPublicError(err);
            callback({ code: e.grpcStatus, details: e.message });
          },
        );
    },
  });
  const credentials = options.tls
    ? ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(options.tls.certChainPem), private_key: Buffer.from(options.tls.keyPem) }], false)
    : ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  return {
    address: `127.0.0.1:${port}`,
    port,
    requests,
    get stall() {
      return state.stall;
    },
    set stall(value: boolean) {
      state.stall = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };
}

function bearerToken(metadata: Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  if (typeof value !== 'string') return undefined;
  const match = /^Bearer (.+)$/.exec(value);
  return match?.[1];
}
