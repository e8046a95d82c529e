import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { meshca, runMeshca, type CliResult } from '../helpers/cli.js';
import { openssl, opensslCsr } from '../helpers/openssl.js';


/** `meshca <args>` in process (runCli); the rotation's first step runs as a real process. */
function cli(args: readonly string[]): Promise<CliResult> {
  return runMeshca(args);
}

function fingerprints(pem: string): string[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)].map((m) => new X509Certificate(m[0]).fingerprint256);
}

describe('meshca ca rotate / ca bundle', () => {
  let dir: string;
  let dataDir: string;
  const id = 'spiffe://example.org/ns/default/sa/sleep';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-rotate-'));
    dataDir = join(dir, 'certs');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function signSvid(name: string): Promise<string> {
    const { csrPem } = await opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    const csrFile = join(dir, `${name}.csr`);
    await writeFile(csrFile, csrPem);
    const signed = await cli(['ca', 'sign', '--data-dir', dataDir, '--trust-domain', 'example.org', '--csr', csrFile, '--spiffe-id', id]);
    assert.equal(signed.code, 0, signed.stderr);
    const chainFile = join(dir, `${name}.pem`);
    await writeFile(chainFile, signed.stdout);
    return chainFile;
  }

  const verify = (chainFile: string) => openssl(['verify', '-x509_strict', '-CAfile', join(dataDir, 'root-cert.pem'), chainFile]);

  test('init, prepare, activate, retire: trust moves to the new root without a gap', async () => {
    assert.equal((await cli(['ca', 'init', '--trust-domain', 'example.org', '--data-dir', dataDir])).code, 0);
    const oldRoot = fingerprints(await readFile(join(dataDir, 'root-cert.pem'), 'utf8'));
    assert.equal(oldRoot.length, 1);
    const oldSvid = await signSvid('old');

    // Without an action: the status and the plan.
    const status = await cli(['ca', 'rotate', '--data-dir', dataDir]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /Trust domain example\.org/);
    assert.match(status.stdout, /planned: +prepare at /);

    const prepared = await meshca(['ca', 'rotate', '--prepare', '--data-dir', dataDir]);
    assert.equal(prepared.code, 0, prepared.stderr);
    assert.match(prepared.stdout, /Prepared a new authority/);
    assert.match(prepared.stdout, /bundle: +sequence 2, 2 roots/);
    const newRoot = fingerprints(await readFile(join(dataDir, 'next', 'ca-cert.pem'), 'utf8'))[0]!;
    assert.match(prepared.stdout, new RegExp(`added: +${newRoot}`));
    assert.equal((await stat(join(dataDir, 'next', 'ca-key.pem'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dataDir, 'ca-key.pem'))).mode & 0o777, 0o600);

    const pem = await cli(['ca', 'bundle', '--data-dir', dataDir]);
    assert.equal(pem.code, 0, pem.stderr);
    assert.deepEqual(fingerprints(pem.stdout), [oldRoot[0], newRoot]);
    assert.deepEqual(fingerprints(await readFile(join(dataDir, 'root-cert.pem'), 'utf8')), [oldRoot[0], newRoot], 'root-cert.pem is the whole bundle');

    const jwks = await cli(['ca', 'bundle', '--format', 'jwks', '--data-dir', dataDir]);
    assert.equal(jwks.code, 0, jwks.stderr);
    const doc = JSON.parse(jwks.stdout) as { keys: { use: string; x5c: string[] }[]; spiffe_sequence: number; spiffe_refresh_hint: number };
    assert.equal(doc.spiffe_sequence, 2);
    assert.equal(doc.spiffe_refresh_hint, 300);
    assert.deepEqual(
      doc.keys.filter((k) => k.use === 'x509-svid').map((k) => new X509Certificate(Buffer.from(k.x5c[0]!, 'base64')).fingerprint256),
      [oldRoot[0], newRoot],
    );

    // The prepared root signs nothing yet.
    const stillOld = await signSvid('still-old');
    assert.deepEqual(fingerprints(await readFile(stillOld, 'utf8')).slice(1), oldRoot);

    const activated = await cli(['ca', 'rotate', '--activate', '--data-dir', dataDir]);
    assert.equal(activated.code, 0, activated.stderr);
    assert.match(activated.stdout, new RegExp(`now signing: +${newRoot}`));
    assert.match(activated.stdout, /bundle: +sequence 3, 2 roots/);
    const trustUntil = /retiring: +\S+ trusted until (\S+)/.exec(activated.stdout)?.[1];
    assert.ok(trustUntil, activated.stdout);
    const untilMs = new Date(trustUntil).getTime() - Date.now();
    assert.ok(untilMs > 167 * 3600_000 && untilMs <= 168 * 3600_000, `trustUntil is activation + 168h, got ${trustUntil}`);
    assert.match(activated.stderr, /less than the propagation delay/, 'activating right away is allowed but warned about');

    const newSvid = await signSvid('new');
    assert.deepEqual(fingerprints(await readFile(newSvid, 'utf8')).slice(1), [newRoot], 'new SVIDs chain to the new root');
    assert.equal((await verify(newSvid)).code, 0);
    assert.equal((await verify(oldSvid)).code, 0, 'the old root is still in root-cert.pem');

    const refused = await cli(['ca', 'rotate', '--retire', '--data-dir', dataDir]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`root ${oldRoot[0]} is still trusted until ${trustUntil.replace(/\./g, '\\.')}.*\\[ERR_CA_INVALID/too-early\\]`));
    assert.deepEqual(fingerprints(await readFile(join(dataDir, 'root-cert.pem'), 'utf8')), [oldRoot[0], newRoot], 'a refusal changes nothing');

    const retired = await cli(['ca', 'rotate', '--retire', '--force', '--data-dir', dataDir]);
    assert.equal(retired.code, 0, retired.stderr);
    assert.match(retired.stdout, new RegExp(`removed: +${oldRoot[0]}`));
    assert.match(retired.stdout, /bundle: +sequence 4, 1 root/);
    assert.deepEqual(fingerprints(await readFile(join(dataDir, 'root-cert.pem'), 'utf8')), [newRoot]);

    const oldAfter = await verify(oldSvid);
    assert.notEqual(oldAfter.code, 0, 'an SVID from the retired root no longer verifies');
    assert.match(oldAfter.stdout + oldAfter.stderr, /unable to get local issuer certificate/);
    assert.equal((await verify(newSvid)).code, 0);

    const state = JSON.parse(await readFile(join(dataDir, 'authority-state.json'), 'utf8')) as { schemaVersion: number; bundle: { sequence: number } };
    assert.equal(state.schemaVersion, 1);
    assert.equal(state.bundle.sequence, 4);
  });

  test('distrust refuses the only signing root and accepts an unknown-format fingerprint as a usage error', async () => {
    const active = fingerprints(await readFile(join(dataDir, 'root-cert.pem'), 'utf8'))[0]!;
    const refused = await cli(['ca', 'rotate', '--distrust', active.replace(/:/g, '').toLowerCase(), '--data-dir', dataDir]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /signs the active authority.*\[ERR_CA_INVALID\/no-next\]/s);

    const usage = await cli(['ca', 'rotate', '--distrust', 'zz', '--data-dir', dataDir]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--distrust: .* is not a SHA-256 fingerprint/);
    const two = await cli(['ca', 'rotate', '--prepare', '--activate', '--data-dir', dataDir]);
    assert.equal(two.code, 2);
    assert.match(two.stderr, /choose one of --prepare, --activate/);
  });
});
