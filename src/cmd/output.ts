import { formatDuration } from '../config/duration.js';
import type { Description } from '../pki/describe.js';

/** Renders `describePem` output the way operators read certificates: one block per element. */
export function formatDescriptions(descriptions: readonly Description[], source: string): string {
  const lines: string[] = [];
  descriptions.forEach((d, index) => {
    const heading = descriptions.length > 1 ? `[${index}] ` : '';
    if (d.type === 'csr') {
      lines.push(`${heading}Certificate request (${source})`);
      lines.push(`  Subject:             ${d.subject || '(empty)'}`);
      lines.push(`  Requested SANs:      ${d.requestedSans.join(', ') || '(none)'}`);
      lines.push(`  Key:                 ${d.key}`);
      lines.push(`  Signature:           ${d.signatureAlgorithm} (${d.signatureValid ? 'valid' : 'INVALID'})`);
    } else {
      const roles = { 'x509-svid': 'X.509-SVID', 'root-ca': 'root CA', 'intermediate-ca': 'intermediate CA', certificate: 'certificate' };
      const left = d.secondsLeft >= 0 ? `${formatDuration(d.secondsLeft)} left` : `EXPIRED ${formatDuration(-d.secondsLeft)} ago`;
      lines.push(`${heading}${roles[d.role]} (${source})`);
      if (d.spiffeIds.length > 0) lines.push(`  SPIFFE ID:           ${d.spiffeIds.join(', ')}`);
      lines.push(`  Subject:             ${d.subject || '(empty)'}`);
      lines.push(`  Issuer:              ${d.issuer || '(empty)'}`);
      lines.push(`  Serial:              ${d.serial}`);
      lines.push(`  Not before:          ${d.notBefore}`);
      lines.push(`  Not after:           ${d.notAfter} (${left})`);
      lines.push(`  Key:                 ${d.key}`);
      lines.push(`  Signature:           ${d.signatureAlgorithm}`);
      lines.push('  Extensions:');
      for (const ext of d.extensions) {
        lines.push(`    ${ext.name}${ext.critical ? ' (critical)' : ''}: ${ext.value}`);
      }
      lines.push(`  SHA-256 fingerprint: ${d.sha256Fingerprint}`);
      lines.push(`  SHA-1 fingerprint:   ${d.sha1Fingerprint}`);
    }
    lines.push('');
  });
  return lines.join('\n');
}
