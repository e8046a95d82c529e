import { generateKeyPairSync, sign } from 'node:crypto';
import { CertificateAuthority } from '../src/ca/certificate-authority.js';
import { createSelfSignedRoot, loadAuthority } from '../src/pki/authority.js';
import { createCsr } from '../src/pki/csr.js';
import { mustParseSpiffeId } from '../src/spiffe/spiffe-id.js';
import { interleavedMedians, progress, type BenchResult } from './harness.js';

/**
 * In-process issuance of ECDSA P-256 CSRs end to end (parse, key policy, identity check, proof
 * of possession, leaf build, sign, self-check), against raw node:crypto ECDSA P-256 signing of
 * a leaf-sized message on the same core in the same run.
 */
export async function benchIssuance(options: { rounds: number; durationMs: number }): Promise<BenchResult[]> {
  progress('issuance: preparing a CA and 256 workload CSRs');
  const now = new Date();
  const root = await createSelfSignedRoot({ trustDomain: 'cluster.local', now });
  const ca = new CertificateAuthority({ authority: loadAuthority({ certPem: root.certPem, keyPem: root.keyPem, rootPem: root.certPem }, now) });
  const id = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
  const csrs = Array.from({ length: 256 }, () => createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey, { uris: [id.toString()] }).der);
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const message = new Uint8Array(420).fill(7); // about a leaf TBSCertificate's size
  let i = 0;
  progress(`issuance: ${options.rounds} interleaved rounds of ${options.durationMs} ms`);
  const rates = await interleavedMedians(
    {
      sign: () => sign('sha256', message, { key: privateKey, dsaEncoding: 'der' }),
      issue: () => ca.sign(csrs[i++ & 255]!, id),
    },
    options.rounds,
    options.durationMs,
  );
  const issue = rates['issue']!;
  const baseline = rates['sign']!;
  const ratio = issue / baseline;
  return [
    { name: 'raw ECDSA P-256 sign (node:crypto)', value: baseline, unit: 'ops/s' },
    {
      name: 'in-process issuance, P-256 CSR end to end',
      value: issue,
      unit: 'certs/s',
      baselineName: 'raw sign',
      baseline,
      ratio,
      target: '>= 2000/s, >= 0.08x',
      met: issue >= 2000 && ratio >= 0.08,
    },
  ];
}
