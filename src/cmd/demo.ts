import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { CertificateAuthority } from '../ca/certificate-authority.js';
import { formatDuration } from '../config/duration.js';
import { AUTHORITY_FILES, loadAuthorityFromDir, writeAuthorityFiles } from '../files/authority-files.js';
import { writeFileAtomic } from '../files/atomic-write.js';
import { createSelfSignedRoot } from '../pki/authority.js';
import { createCsr } from '../pki/csr.js';
import { exportPrivateKeyPem, generateKey } from '../pki/keys.js';
import { workloadIdFor } from '../policy/workload-id.js';
import { parseX509Svid } from '../spiffe/x509-svid.js';
import { parseTrustDomain } from '../spiffe/trust-domain.js';
import type { CliIo } from './ca-commands.js';

const run = promisify(execFile);

/**
 * The embedded-default walkthrough: a fresh CA, a workload key and CSR, an X.509-SVID, and an
 * independent check of it with openssl. No cluster needed.
 */
export function buildDemoCommand(io: CliIo): Command {
  return new Command('demo')
    .description('run meshca end to end on this machine with an embedded default (no cluster)')
    .option('--keep', 'keep the demo directory for manual poking', false)
    .option('--dir <dir>', 'use this directory instead of a temporary one')
    .action(async (opts: { keep: boolean; dir?: string }) => {
      const out = io.stdout;
      const step = (n: number, text: string): void => void out.write(`\n[${n}/4] ${text}\n`);
      const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'meshca-demo-')));
      const dataDir = join(dir, 'certs');
      const svidDir = join(dir, 'sleep');
      try {
        const now = io.clock.now();
        const trustDomain = parseTrustDomain('cluster.local');
        step(1, `Creating a self-signed mesh root for trust domain ${trustDomain.name}`);
        const root = await createSelfSignedRoot({ trustDomain: trustDomain.name, now });
        await writeAuthorityFiles(dataDir, { ...root, rootPem: root.certPem }, { force: true });
        const { authority } = await loadAuthorityFromDir(dataDir, now);
        const ca = new CertificateAuthority({ authority, clock: io.clock });
        out.write(`      root ${authority.certificate.fingerprint256.slice(0, 23)}… in ${dataDir}\n`);

        step(2, 'Workload "sleep" (namespace default) generates its key and CSR locally');
        const identity = workloadIdFor(trustDomain, { namespace: 'default', serviceAccount: 'sleep' });
        const { privateKey } = await generateKey('ec-p256');
        const csr = createCsr(privateKey, { uris: [identity.toString()] });
        out.write(`      ECDSA P-256 key; the private key never leaves the workload\n`);

        step(3, `The CA issues an X.509-SVID for ${identity}`);
        const issued = await ca.sign(csr.pem, identity);
        await mkdir(svidDir, { recursive: true });
        await writeFileAtomic(join(svidDir, 'cert-chain.pem'), issued.certChainPem.join(''), 0o644);
        await writeFileAtomic(join(svidDir, 'key.pem'), exportPrivateKeyPem(privateKey), 0o600);
        await writeFileAtomic(join(svidDir, 'root-cert.pem'), ca.rootsPem, 0o644);
        const svid = parseX509Svid(issued.certChainPem.join(''), privateKey);
        const lifetime = (svid.notAfter.getTime() - svid.notBefore.getTime()) / 1000;
        out.write(
          [
            `      SPIFFE ID:      ${svid.id}`,
            `      issuer:         ${authority.certificate.subject.replace(/\n/g, ', ')}`,
            `      serial:         ${issued.serial}`,
            `      valid:          ${svid.notBefore.toISOString()} → ${svid.notAfter.toISOString()} (${formatDuration(lifetime)})`,
            `      next rotation:  ${new Date(svid.notBefore.getTime() + (lifetime * 1000) / 2).toISOString()} (half its life)`,
            '',
          ].join('\n'),
        );

        step(4, 'Independent check with openssl');
        const rootFile = join(dataDir, AUTHORITY_FILES.root);
        const leafFile = join(svidDir, 'cert-chain.pem');
        for (const purpose of ['sslclient', 'sslserver']) {
          try {
            const { stdout } = await run('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', rootFile, leafFile]);
            out.write(`      openssl verify -purpose ${purpose}: ${stdout.trim().split(': ').pop()}\n`);
          } catch (err) {
            const e = err as NodeJS.ErrnoException & { stderr?: string; stdout?: string };
            if (e.code === 'ENOENT') {
              out.write('      openssl not found on PATH: skipped\n');
              break;
            }
            throw new Error(`openssl verify -purpose ${purpose} failed: ${e.stdout ?? ''}${e.stderr ?? ''}`);
          }
        }
        out.write(
          [
            '',
            'Verify it yourself:',
            `  openssl x509 -in ${leafFile} -noout -text`,
            `  openssl verify -x509_strict -purpose sslclient -CAfile ${rootFile} ${leafFile}`,
            `  npm run meshca -- inspect ${leafFile}`,
            '',
          ].join('\n'),
        );
        out.write(opts.keep || opts.dir ? `Files kept in ${dir}\n` : 'Done. (--keep to keep the files)\n');
      } finally {
        if (!opts.keep && !opts.dir) await rm(dir, { recursive: true, force: true });
      }
    });
}
