import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import type { Clock } from '../../src/clock.js';
import { systemClock } from '../../src/clock.js';
import { LOOPBACK_CA_OPTIONS, parseCaServeConfig, type RawCaServeOptions } from '../../src/config/ca-serve-config.js';
import { startCa, type RunningCa } from '../../src/cmd/ca-runtime.js';
import { loadOrCreateDevIssuer } from '../../src/files/dev-issuer-store.js';
import type { DevTokenIssuer, MintOptions } from '../../src/authn/dev-issuer.js';
import type { IstioCertificateResponse__Output } from '../../src/generated/istio-ca/istio/v1/auth/IstioCertificateResponse.js';
import { createLogger, type Logger } from '../../src/log.js';
import { loadIstioCaProto } from '../../src/transport/grpc/protos.js';
import { Writable } from 'node:stream';

/** Collects pino lines so tests can assert what was (and was not) logged. */
export class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      this.raw.push(line);
      try {
        this.lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not JSON: kept in raw only
      }
    }
    done();
  }
}

export interface TestCa {
  readonly running: RunningCa;
  readonly dataDir: string;
  readonly rootPem: string;
  readonly devIssuer: DevTokenIssuer;
  readonly logs: LogCapture;
  readonly logger: Logger;
  readonly grpcAddress: string;
  readonly httpUrl: string;
  mint(options?: Partial<MintOptions>): Promise<string>;
  createCertificate(request: { csr: string; validity_duration?: number }, token?: string, metadata?: Metadata): Promise<IstioCertificateResponse__Output>;
  close(): Promise<void>;
}

/** Starts the real CA runtime in-process on loopback ports chosen by the OS, with a fresh data dir. */
export async function startTestCa(overrides: RawCaServeOptions = {}, clock: Clock = systemClock): Promise<TestCa> {
  // A caller may bring a prepared data dir (and then owns its removal).
  const ownDir = overrides['dataDir'] === undefined;
  const dataDir = ownDir ? await mkdtemp(join(tmpdir(), 'meshca-ca-')) : String(overrides['dataDir']);
  const config = parseCaServeConfig({
    ...LOOPBACK_CA_OPTIONS,
    dataDir,
    servingDnsNames: 'localhost,meshca.meshca.svc',
    rateLimit: '0',
    rateBurst: '1',
    ...overrides,
  });
  const logs = new LogCapture();
  const logger = createLogger({ level: 'debug', destination: logs });
  const running = await startCa(config, { logger, clock });
  const rootPem = await readFile(join(dataDir, 'root-cert.pem'), 'utf8');
  const devIssuer = (await loadOrCreateDevIssuer(dataDir)).issuer;
  const grpcAddress = `localhost:${running.grpcPort}`;
  const { IstioCertificateService } = loadIstioCaProto().istio.v1.auth;
  const client = new IstioCertificateService(
    grpcAddress,
    config.insecure ? credentials.createInsecure() : credentials.createSsl(Buffer.from(rootPem)),
  );
  return {
    running,
    dataDir,
    rootPem,
    devIssuer,
    logs,
    logger,
    grpcAddress,
    httpUrl: `${config.insecure ? 'http' : 'https'}://localhost:${running.httpPort}`,
    mint: (options = {}) => devIssuer.mint({ namespace: 'default', serviceAccount: 'sleep', now: clock.now(), ...options }),
    createCertificate(request, token, metadata = new Metadata()) {
      if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
      return new Promise((resolve, reject) => {
        client.CreateCertificate(request, metadata, { deadline: Date.now() + 15_000 }, (err: ServiceError | null, response?: IstioCertificateResponse__Output) =>
          err ? reject(err) : resolve(response!),
        );
      });
    },
    async close() {
      client.close();
      await running.close();
      if (ownDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
