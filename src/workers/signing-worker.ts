/**
 * A signing worker: holds its own copy of the CA and turns SignJobs into SignReplies, so CSR
 * verification and signing use another core while the main thread serves gRPC and HTTP.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { CertificateAuthority, type CertificateAuthorityOptions } from '../ca/certificate-authority.js';
import type { Clock } from '../clock.js';
import { isIdentityError } from '../errors.js';
import { loadAuthority, type AuthorityPem } from '../pki/authority.js';
import { parseSpiffeId } from '../spiffe/spiffe-id.js';
import type { SignJob, SignReply } from './signing-protocol.js';

export interface SigningWorkerData {
  readonly authority: AuthorityPem;
  readonly options: Omit<CertificateAuthorityOptions, 'authority' | 'clock' | 'randomBytes'>;
  readonly nowMs: number;
}

const data = workerData as SigningWorkerData;
let nowMs = data.nowMs;
// Time comes with each job from the main thread's clock; workers never read their own.
const jobClock: Clock = {
  now: () => new Date(nowMs),
  setTimeout: () => {
    throw new Error('signing workers keep no timers');
  },
  clearTimeout: () => undefined,
};
const ca = new CertificateAuthority({ ...data.options, authority: loadAuthority(data.authority, new Date(nowMs)), clock: jobClock });

parentPort!.on('message', (job: SignJob) => {
  nowMs = job.nowMs;
  let identity;
  try {
    identity = parseSpiffeId(job.identity);
  } catch (err) {
    reply({ id: job.id, ok: false, code: 'ERR_SPIFFE_ID_INVALID', rule: undefined, message: (err as Error).message });
    return;
  }
  ca.sign(job.csr, identity, job.ttlSeconds === undefined ? {} : { ttlSeconds: job.ttlSeconds }).then(
    (issued) =>
      reply({
        id: job.id,
        ok: true,
        certificate: issued.certificate,
        certChainPem: issued.certChainPem,
        serial: issued.serial,
        notBeforeMs: issued.notBefore.getTime(),
        notAfterMs: issued.notAfter.getTime(),
      }),
    (err: unknown) =>
      reply({
        id: job.id,
        ok: false,
        code: isIdentityError(err) ? err.code : undefined,
        rule: isIdentityError(err) ? err.rule : undefined,
        message: err instanceof Error ? err.message : String(err),
      }),
  );
});

function reply(message: SignReply): void {
  parentPort!.postMessage(message);
}
