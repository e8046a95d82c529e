import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { X509Certificate } from 'node:crypto';
import { meshca, runMeshca } from '../helpers/cli.js';
import { openssl, opensslCsr } from '../helpers/openssl.js';
import { createTestIntermediate, createTestRoot } from '../helpers/test-ca.js';

describe('meshca ca init / ca sign / inspect (the first as a real process, the rest through runCli)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('ca init creates Istio plug-in CA files with a 0600 key and refuses to overwrite without --force', async () => {
    const dataDir = join(dir, 'certs');
    const first = await meshca(['ca', 'init', '--trust-domain', 'example.org', '--data-dir', dataDir]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /Created a self-signed root CA for trust domain example\.org/);
    for (const f of ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']) await stat(join(dataDir, f));
    assert.equal((await stat(join(dataDir, 'ca-key.pem'))).mode & 0o777, 0o600);
    const root = new X509Certificate(await readFile(join(dataDir, 'root-cert.pem')));
    assert.equal(root.subject, 'O=example.org');
    const text = await openssl(['x509', '-noout', '-text'], await readFile(join(dataDir, 'root-cert.pem'), 'utf8'));
    assert.match(text.stdout, /X509v3 Basic Constraints: critical\n\s+CA:TRUE/);
    assert.match(text.stdout, /X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign/);
    assert.match(text.stdout, /X509v3 Subject Key Identifier/);

    const again = await meshca(['ca', 'init', '--data-dir', dataDir]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /a CA already exists in .* pass --force to replace it \[ERR_CA_INVALID\/exists\]/);
    assert.equal(new X509Certificate(await readFile(join(dataDir, 'root-cert.pem'))).fingerprint256, root.fingerprint256, 'nothing was lost');

    const forced = await meshca(['ca', 'init', '--data-dir', dataDir, '--trust-domain', 'example.org', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual(new X509Certificate(await readFile(join(dataDir, 'root-cert.pem'))).fingerprint256, root.fingerprint256);
  });

  test('ca init lists every configuration problem at once', async () => {
    const result = await runMeshca(['ca', 'init', '--data-dir', join(dir, 'x'), '--trust-domain', 'Bad_Domain!', '--validity', '1h']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--trust-domain: /);
    assert.match(result.stderr, /--validity must be at least 24h/);
  });

  test('ca sign signs an openssl-made CSR; openssl verifies the chain; inspect shows the SPIFFE ID', async () => {
    const dataDir = join(dir, 'sign');
    assert.equal((await runMeshca(['ca', 'init', '--data-dir', dataDir])).code, 0);
    const { csrPem } = await opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], ['-addext', 'subjectAltName=URI:spiffe://cluster.local/ns/default/sa/sleep']);
    const csrFile = join(dir, 'req.pem');
    await writeFile(csrFile, csrPem);
    const signed = await runMeshca(['ca', 'sign', '--data-dir', dataDir, '--csr', csrFile, '--spiffe-id', 'spiffe://cluster.local/ns/default/sa/sleep', '--ttl', '12h']);
    assert.equal(signed.code, 0, signed.stderr);
    const chainFile = join(dir, 'chain.pem');
    await writeFile(chainFile, signed.stdout);
    const verify = await openssl(['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', join(dataDir, 'root-cert.pem'), chainFile]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);

    const inspect = await runMeshca(['inspect', chainFile]);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.match(inspect.stdout, /X\.509-SVID/);
    assert.match(inspect.stdout, /SPIFFE ID: +spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
    assert.match(inspect.stdout, /Not after: .*\((11h 59m|12h 0m|12h) left\)/);
    assert.match(inspect.stdout, /Subject Alternative Name \(critical\): URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
    assert.match(inspect.stdout, /root CA/);
    const json = await runMeshca(['inspect', '--json', chainFile]);
    const parsed = JSON.parse(json.stdout) as { items: { role: string; spiffeIds: string[] }[] }[];
    assert.equal(parsed[0]!.items[0]!.role, 'x509-svid');
    assert.deepEqual(parsed[0]!.items[0]!.spiffeIds, ['spiffe://cluster.local/ns/default/sa/sleep']);

    const inspectCsr = await runMeshca(['inspect', csrFile]);
    assert.match(inspectCsr.stdout, /Certificate request[\s\S]*Requested SANs: +URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep[\s\S]*\(valid\)/);
  });

  test('ca sign applies the service checks: wrong SAN, other trust domain, over-long TTL', async () => {
    const dataDir = join(dir, 'refuse');
    assert.equal((await runMeshca(['ca', 'init', '--data-dir', dataDir])).code, 0);
    const { csrPem } = await opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], ['-addext', 'subjectAltName=DNS:evil.example.com']);
    const csrFile = join(dir, 'dns.pem');
    await writeFile(csrFile, csrPem);
    const id = 'spiffe://cluster.local/ns/default/sa/sleep';
    const dns = await runMeshca(['ca', 'sign', '--data-dir', dataDir, '--csr', csrFile, '--spiffe-id', id]);
    assert.equal(dns.code, 1);
    assert.match(dns.stderr, /CSR requests a dns SAN "evil\.example\.com".*\[ERR_IDENTITY_MISMATCH\/csr-san\]/);
    const td = await runMeshca(['ca', 'sign', '--data-dir', dataDir, '--csr', csrFile, '--spiffe-id', 'spiffe://other.org/x']);
    assert.match(td.stderr, /is not in this CA's trust domain cluster\.local/);
    const ttl = await runMeshca(['ca', 'sign', '--data-dir', dataDir, '--csr', '-', '--spiffe-id', id, '--ttl', '30d'], { input: (await opensslCsr(['-newkey', 'ed25519'])).csrPem });
    assert.match(ttl.stderr, /greater than the maximum allowed 604800s \[ERR_TTL_INVALID\/too-long\]/);
    const bad = await runMeshca(['ca', 'sign', '--data-dir', dataDir, '--csr', '-', '--spiffe-id', 'spiffe://cluster.local/../x']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--spiffe-id: /);
  });

  test('a broken plug-in CA is refused with the reason (key mismatch, broken chain)', async () => {
    const root = await createTestRoot({ trustDomain: 'cluster.local' });
    const inter = await createTestIntermediate(root);
    const other = await createTestRoot();
    const plug = join(dir, 'plugin');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(plug);
    await writeFile(join(plug, 'ca-cert.pem'), inter.pem);
    await writeFile(join(plug, 'ca-key.pem'), other.keyPem, { mode: 0o600 });
    await writeFile(join(plug, 'cert-chain.pem'), inter.pem + root.pem);
    await writeFile(join(plug, 'root-cert.pem'), root.pem);
    const csrFile = join(dir, 'plain.pem');
    await writeFile(csrFile, (await opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'])).csrPem);
    const args = ['ca', 'sign', '--data-dir', plug, '--csr', csrFile, '--spiffe-id', 'spiffe://cluster.local/ns/a/sa/b'];
    const mismatch = await runMeshca(args);
    assert.equal(mismatch.code, 1);
    assert.match(mismatch.stderr, /ca-key\.pem does not match the public key of ca-cert\.pem/);

    await writeFile(join(plug, 'ca-key.pem'), inter.keyPem, { mode: 0o600 });
    await writeFile(join(plug, 'root-cert.pem'), other.pem);
    const broken = await runMeshca(args);
    assert.match(broken.stderr, /CA chain is broken/);

    await writeFile(join(plug, 'root-cert.pem'), root.pem);
    const ok = await runMeshca(args);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((ok.stdout.match(/BEGIN CERTIFICATE/g) ?? []).length, 3, 'leaf, intermediate, root');
  });
});
