import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DevTokenIssuer } from '../../../src/authn/dev-issuer.js';
import type { Logger } from '../../../src/log.js';
import { createCsr } from '../../../src/pki/csr.js';
import { createFileBundleSource } from '../../../src/files/bundle-file.js';
import { runPostRotationHook, SVID_FILES, writeSvidFiles } from '../../../src/files/svid-files.js';
import { mustParseSpiffeId } from '../../../src/spiffe/spiffe-id.js';
import { parseTrustDomain } from '../../../src/spiffe/trust-domain.js';
import { parseX509Svid, type X509Svid } from '../../../src/spiffe/x509-svid.js';
import { isIdentityError } from '../../../src/errors.js';
import { createTestMeshCa, type TestMeshCa } from '../../helpers/fake-ca-server.js';
import { openssl } from '../../helpers/openssl.js';

const SLEEP = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');

interface LogLine {
  readonly level: string;
  readonly fields: object;
  readonly msg: string | undefined;
}

function recordingLogger(lines: LogLine[]): Logger {
  const log =
    (level: string) =>
    (fields: object | string, msg?: string): void => {
      lines.push({ level, fields: typeof fields === 'string' ? {} : fields, msg: typeof fields === 'string' ? fields : msg });
    };
  const logger: Logger = { child: () => logger, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
  return logger;
}

async function issueSvid(mesh: TestMeshCa): Promise<X509Svid> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const issued = await mesh.ca.sign(createCsr(privateKey, { uris: [SLEEP.toString()] }).pem, SLEEP);
  return parseX509Svid(issued.certChainPem[0]!, privateKey);
}

describe('writeSvidFiles', () => {
  let mesh: TestMeshCa;
  let dir: string;

  before(async () => {
    mesh = await createTestMeshCa({ tokenIssuer: await DevTokenIssuer.generate() });
    dir = await mkdtemp(join(tmpdir(), 'meshca-svid-files-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('writes cert-chain.pem, key.pem (0600) and root-cert.pem that openssl accepts as a chain and key pair', async () => {
    const out = join(dir, 'first', 'certs');
    const svid = await issueSvid(mesh);
    const paths = await writeSvidFiles(out, svid, mesh.bundle);
    assert.deepEqual(paths, { certChain: join(out, 'cert-chain.pem'), key: join(out, 'key.pem'), root: join(out, 'root-cert.pem') });
    assert.deepEqual((await readdir(out)).sort(), [SVID_FILES.certChain, SVID_FILES.key, SVID_FILES.root].sort());

    assert.equal((await stat(paths.key)).mode & 0o777, 0o600);
    assert.equal((await stat(paths.certChain)).mode & 0o777, 0o644);
    assert.equal((await stat(paths.root)).mode & 0o777, 0o644);

    assert.equal(await readFile(paths.root, 'utf8'), mesh.bundle.toPem());
    const reread = parseX509Svid(await readFile(paths.certChain, 'utf8'), await readFile(paths.key, 'utf8'));
    assert.equal(reread.id.toString(), SLEEP.toString());

    const verified = await openssl(['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', paths.root, paths.certChain]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, /: OK/);
    const keyCheck = await openssl(['pkey', '-in', paths.key, '-noout', '-check']);
    assert.equal(keyCheck.code, 0, keyCheck.stderr);
  });

  test('replaces existing files atomically: new inodes, tightened key mode, no temporary files left', async () => {
    const out = join(dir, 'replace');
    const first = await writeSvidFiles(out, await issueSvid(mesh), mesh.bundle);
    await chmod(first.key, 0o644); // someone loosened it
    const before = await Promise.all([first.certChain, first.key, first.root].map(async (p) => (await stat(p)).ino));
    const second = await issueSvid(mesh);
    await writeSvidFiles(out, second, mesh.bundle);
    const afterIno = await Promise.all([first.certChain, first.key, first.root].map(async (p) => (await stat(p)).ino));
    afterIno.forEach((ino, i) => assert.notEqual(ino, before[i], 'renamed into place, not rewritten in place'));
    assert.equal((await stat(first.key)).mode & 0o777, 0o600);
    assert.deepEqual((await readdir(out)).filter((name) => name.endsWith('.tmp')), []);
    assert.equal(
      parseX509Svid(await readFile(first.certChain, 'utf8')).certificates[0]!.serialNumber,
      second.certificates[0]!.serialNumber,
    );
  });

  test('refuses an SVID without its private key', async () => {
    const svid = await issueSvid(mesh);
    const { privateKey: _dropped, ...withoutKey } = svid;
    await assert.rejects(writeSvidFiles(join(dir, 'nokey'), withoutKey, mesh.bundle), TypeError);
  });
});

describe('createFileBundleSource', () => {
  test('re-reads root-cert.pem on every fetch, so a new root is seen without a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshca-bundle-'));
    try {
      const issuer = await DevTokenIssuer.generate();
      const [a, b] = await Promise.all([createTestMeshCa({ tokenIssuer: issuer }), createTestMeshCa({ tokenIssuer: issuer })]);
      const path = join(dir, 'root-cert.pem');
      const source = createFileBundleSource(path, parseTrustDomain('cluster.local'));
      await writeFile(path, a.rootPem);
      assert.equal((await source.fetchBundle()).authorities.length, 1);
      await writeFile(path, a.rootPem + b.rootPem);
      const both = await source.fetchBundle();
      assert.ok(both.hasAuthority(a.bundle.authorities[0]!) && both.hasAuthority(b.bundle.authorities[0]!));
      await writeFile(path, 'garbage');
      await assert.rejects(source.fetchBundle(), (err: unknown) => isIdentityError(err) && err.code === 'ERR_BUNDLE_INVALID' && err.rule === 'empty');
      await rm(path);
      await assert.rejects(source.fetchBundle(), (err: unknown) => isIdentityError(err) && err.code === 'ERR_BUNDLE_INVALID' && err.rule === 'file');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('runPostRotationHook', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-hook-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('runs the command with the given environment and logs its output', async () => {
    const lines: LogLine[] = [];
    const marker = join(dir, 'ran');
    const result = await runPostRotationHook(`printf '%s' "$MESHCA_SPIFFE_ID" > "${marker}" && echo reloaded`, {
      env: { MESHCA_SPIFFE_ID: SLEEP.toString() },
      logger: recordingLogger(lines),
    });
    assert.equal(result.ok, true);
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout, 'reloaded\n');
    assert.equal(await readFile(marker, 'utf8'), SLEEP.toString());
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.level, 'info');
    assert.deepEqual((lines[0]!.fields as { stdout: string }).stdout, 'reloaded\n');
  });

  test('reports a failing command without rejecting, and logs it as a warning', async () => {
    const lines: LogLine[] = [];
    const result = await runPostRotationHook('echo oops >&2; exit 3', { logger: recordingLogger(lines) });
    assert.equal(result.ok, false);
    assert.equal(result.exitCode, 3);
    assert.equal(result.timedOut, false);
    assert.equal(result.stderr, 'oops\n');
    assert.equal(lines[0]!.level, 'warn');
    assert.match(lines[0]!.msg ?? '', /failed; continuing/);
  });

  test('kills a command that outlives its timeout', async () => {
    const lines: LogLine[] = [];
    const result = await runPostRotationHook('exec sleep 30', { timeoutMs: 50, logger: recordingLogger(lines) });
    assert.equal(result.ok, false);
    assert.equal(result.timedOut, true);
    assert.equal(result.signal, 'SIGKILL');
    assert.match(lines[0]!.msg ?? '', /timed out/);
  });
});
