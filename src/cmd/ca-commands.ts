import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { dataDirOption, parseTrustDomainFlag, readStdin, trustDomainOption, type CliIo } from './cli-common.js';
import type { Clock } from '../clock.js';
import { formatDuration, parseDurationSeconds } from '../config/duration.js';
import { ConfigError, IdentityMismatchError, SpiffeIdError } from '../errors.js';
import { isKeyKind, KEY_KINDS } from '../pki/algorithms.js';
import { parseSpiffeId } from '../spiffe/spiffe-id.js';
import { parseTrustDomain, type TrustDomain } from '../spiffe/trust-domain.js';
import { buildCaBundleCommand, buildCaRotateCommand } from './ca-rotate-command.js';
import { buildCaServeCommand } from './ca-serve-command.js';

export { dataDirOption, parseTrustDomainFlag, trustDomainOption, type CliIo } from './cli-common.js';

async function readInput(io: CliIo, path: string): Promise<string> {
  return path === '-' ? readStdin(io) : readFile(path, 'utf8');
}

export function buildCaCommand(io: CliIo): Command {
  // Its description is in program.ts, which lists subcommands without loading them.
  const ca = new Command('ca');

  ca.command('init')
    .description('create a self-signed mesh root CA in the data directory')
    .addOption(trustDomainOption(io))
    .addOption(dataDirOption(io))
    .addOption(new Option('--key <kind>', 'CA key type').choices([...KEY_KINDS]).default('ec-p256'))
    .option('--validity <duration>', 'root lifetime', '87600h')
    .option('--force', 'replace an existing CA in the data directory', false)
    .action(async (opts: { trustDomain: string; dataDir: string; key: string; validity: string; force: boolean }) => {
      const [{ createSelfSignedRoot, loadAuthority }, { AUTHORITY_FILES, writeAuthorityFiles }, { AUTHORITY_STATE_FILE, NEXT_AUTHORITY_DIR, ROTATION_STAGING_DIR }] = await Promise.all([
        import('../pki/authority.js'),
        import('../files/authority-files.js'),
        import('../files/authority-slots.js'),
      ]);
      const problems: string[] = [];
      let trustDomain: TrustDomain | undefined;
      try {
        trustDomain = parseTrustDomainFlag(opts.trustDomain);
      } catch (err) {
        problems.push(...(err as ConfigError).problems);
      }
      let validitySeconds = 0;
      try {
        validitySeconds = parseDurationSeconds(opts.validity, '--validity');
        if (validitySeconds < 86400) problems.push('--validity must be at least 24h: a root must outlive the SVIDs it signs');
      } catch (err) {
        problems.push(...(err as ConfigError).problems);
      }
      if (!isKeyKind(opts.key)) problems.push(`--key ${opts.key} is not one of ${KEY_KINDS.join(', ')}`);
      if (problems.length > 0 || trustDomain === undefined || !isKeyKind(opts.key)) throw new ConfigError(problems);

      const now = io.clock.now();
      const root = await createSelfSignedRoot({
        trustDomain: trustDomain.name,
        keyKind: opts.key,
        now,
        validityDays: validitySeconds / 86400,
      });
      // Validate exactly as `ca serve` will, before anything is written.
      const authority = loadAuthority({ certPem: root.certPem, keyPem: root.keyPem, rootPem: root.certPem }, now);
      if (opts.force) {
        // A replaced CA starts a new history: a prepared authority or rotation state of the old
        // one must not be picked up next to it.
        for (const leftover of [NEXT_AUTHORITY_DIR, AUTHORITY_STATE_FILE, ROTATION_STAGING_DIR]) {
          await rm(join(opts.dataDir, leftover), { recursive: true, force: true });
        }
      }
      await writeAuthorityFiles(opts.dataDir, { ...root, rootPem: root.certPem }, { force: opts.force });
      const dir = resolve(opts.dataDir);
      io.stdout.write(
        [
          `Created a self-signed root CA for trust domain ${trustDomain.name}`,
          `  subject:      O=${trustDomain.name}`,
          `  key:          ${opts.key}`,
          `  valid until:  ${authority.notAfter.toISOString()} (${formatDuration((authority.notAfter.getTime() - now.getTime()) / 1000)})`,
          `  SHA-256:      ${authority.certificate.fingerprint256}`,
          `  files:        ${join(dir, AUTHORITY_FILES.root)}  (distribute: the trust anchor)`,
          `                ${join(dir, AUTHORITY_FILES.cert)}`,
          `                ${join(dir, AUTHORITY_FILES.chain)}`,
          `                ${join(dir, AUTHORITY_FILES.key)}  (mode 0600, never leaves this host)`,
          '',
        ].join('\n'),
      );
    });

  ca.command('sign')
    .description('sign a CSR offline as an X.509-SVID for the given SPIFFE ID; prints the chain PEM')
    .requiredOption('--csr <file>', 'PEM CSR to sign (- for stdin)')
    .requiredOption('--spiffe-id <id>', 'SPIFFE ID to issue, e.g. spiffe://cluster.local/ns/default/sa/sleep')
    .option('--ttl <duration>', 'certificate lifetime', '24h')
    .option('--max-ttl <duration>', 'longest lifetime allowed', '168h')
    .addOption(trustDomainOption(io))
    .addOption(dataDirOption(io))
    .action(async (opts: { csr: string; spiffeId: string; ttl: string; maxTtl: string; trustDomain: string; dataDir: string }) => {
      const [{ CertificateAuthority }, { loadAuthorityFromDir }] = await Promise.all([import('../ca/certificate-authority.js'), import('../files/authority-files.js')]);
      const problems: string[] = [];
      const collect = <T>(f: () => T): T | undefined => {
        try {
          return f();
        } catch (err) {
          if (err instanceof ConfigError) problems.push(...err.problems);
          else if (err instanceof SpiffeIdError) problems.push(`--spiffe-id: ${err.message}`);
          else throw err;
          return undefined;
        }
      };
      const trustDomain = collect(() => parseTrustDomainFlag(opts.trustDomain));
      const id = collect(() => parseSpiffeId(opts.spiffeId));
      const ttlSeconds = collect(() => parseDurationSeconds(opts.ttl, '--ttl'));
      const maxTtlSeconds = collect(() => parseDurationSeconds(opts.maxTtl, '--max-ttl'));
      if (problems.length > 0 || !trustDomain || !id || ttlSeconds === undefined || maxTtlSeconds === undefined) {
        throw new ConfigError(problems);
      }
      if (!id.memberOf(trustDomain)) {
        throw new IdentityMismatchError(`${id} is not in this CA's trust domain ${trustDomain.name}`, { rule: 'trust-domain' });
      }
      // The trust domain's own ID names no workload; an X.509-SVID's ID has a path (SPIFFE
      // X509-SVID §2), and parseX509Svid refuses a leaf without one.
      if (id.path === '') {
        throw new ConfigError([`--spiffe-id ${id} is the trust domain's own ID, not a workload's: give a path, e.g. ${id}/ns/default/sa/sleep`]);
      }
      const csrText = await readInput(io, opts.csr);
      const { authority, warnings } = await loadAuthorityFromDir(opts.dataDir, io.clock.now());
      for (const w of warnings) io.stderr.write(`meshca: warning: ${w}\n`);
      const ca = new CertificateAuthority({
        authority,
        clock: io.clock,
        maxTtlSeconds,
        defaultTtlSeconds: Math.min(86400, maxTtlSeconds),
      });
      const issued = await ca.sign(csrText, id, { ttlSeconds });
      io.stdout.write(issued.certChainPem.join(''));
      io.stderr.write(`meshca: issued ${id} serial ${issued.serial} valid until ${issued.notAfter.toISOString()}\n`);
    });

  ca.addCommand(buildCaServeCommand(io));
  ca.addCommand(buildCaRotateCommand(io));
  ca.addCommand(buildCaBundleCommand(io));
  return ca;
}
