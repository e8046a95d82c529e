import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { isIdentityError } from '../../../src/errors.js';
import { createFederatedBundleSource, MAX_FEDERATED_BUNDLE_BYTES } from '../../../src/files/federated-bundles.js';
import { formatSpiffeBundleJwks } from '../../../src/spiffe/bundle-jwks.js';
import { parseTrustDomain } from '../../../src/spiffe/trust-domain.js';
import { createTestLeaf, createTestRoot, type TestCertificate } from '../../helpers/test-ca.js';

const TD_B = parseTrustDomain('td-b');

function assertBundleError(rule: string, pattern?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isIdentityError(err), `expected an IdentityError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_BUNDLE_INVALID');
    assert.equal(err.rule, rule, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

describe('federated bundle sources', () => {
  let dir: string;
  let rootB: TestCertificate;
  let rootB2: TestCertificate;
  let webRoot: TestCertificate;
  let server: Server;
  let base: string;
  const routes = new Map<string, (res: import('node:http').ServerResponse) => void>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-federation-'));
    [rootB, rootB2, webRoot] = await Promise.all([
      createTestRoot({ trustDomain: 'td-b' }),
      createTestRoot({ trustDomain: 'td-b' }),
      createTestRoot({ trustDomain: 'web.example' }),
    ]);
    const web = await createTestLeaf(webRoot, { uris: null, dnsNames: ['localhost'] });
    await writeFile(join(dir, 'web-ca.pem'), webRoot.pem);
    server = createServer({ cert: web.pem, key: web.keyPem }, (req, res) => {
      const route = routes.get(req.url ?? '');
      if (route) route(res);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `https://localhost:${(server.address() as AddressInfo).port}`;
    const jwks = JSON.stringify(formatSpiffeBundleJwks([rootB.cert, rootB2.cert], { sequence: 7, refreshHintSeconds: 42 }));
    routes.set('/.well-known/spiffe-bundle', (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(jwks));
    routes.set('/redirect', (res) => res.writeHead(302, { location: '/.well-known/spiffe-bundle' }).end());
    routes.set('/broken', (res) => res.writeHead(500).end('oops'));
    routes.set('/huge', (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(Buffer.alloc(MAX_FEDERATED_BUNDLE_BYTES + 10, 0x20));
    });
    routes.set('/silent', () => undefined);
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  test('reads a PEM file (no refresh hint) and a SPIFFE bundle JWKS file (hint and sequence), by path or file:// URL', async () => {
    await writeFile(join(dir, 'td-b.pem'), rootB.pem + rootB2.pem);
    const pem = await createFederatedBundleSource(TD_B, join(dir, 'td-b.pem')).fetchBundle();
    assert.equal(pem.bundle.trustDomain.name, 'td-b');
    assert.deepEqual(pem.bundle.authorities.map((c) => c.fingerprint256), [rootB.cert.fingerprint256, rootB2.cert.fingerprint256]);
    assert.equal(pem.refreshHintSeconds, undefined);

    await writeFile(join(dir, 'td-b.json'), JSON.stringify(formatSpiffeBundleJwks([rootB.cert], { sequence: 3, refreshHintSeconds: 60 }), null, 2));
    const jwks = await createFederatedBundleSource(TD_B, pathToFileURL(join(dir, 'td-b.json')).href).fetchBundle();
    assert.equal(jwks.bundle.sequenceNumber, 3);
    assert.equal(jwks.refreshHintSeconds, 60);
    assert.equal(jwks.bundle.authorities.length, 1);
  });

  test('a missing or broken file is ERR_BUNDLE_INVALID naming the file', async () => {
    await assert.rejects(createFederatedBundleSource(TD_B, join(dir, 'missing.pem')).fetchBundle(), assertBundleError('file', /missing\.pem/));
    await writeFile(join(dir, 'broken.json'), '{"keys": 3}');
    await assert.rejects(createFederatedBundleSource(TD_B, join(dir, 'broken.json')).fetchBundle(), assertBundleError('keys', /broken\.json/));
  });

  test('refuses plain http and other URL schemes as caller misuse', () => {
    assert.throws(() => createFederatedBundleSource(TD_B, 'http://td-b.example/.well-known/spiffe-bundle'), TypeError);
    assert.throws(() => createFederatedBundleSource(TD_B, 'ftp://td-b.example/bundle'), TypeError);
  });

  test('fetches the bundle endpoint over HTTPS authenticated by --federated-bundle-ca (https_web)', async () => {
    const source = createFederatedBundleSource(TD_B, `${base}/.well-known/spiffe-bundle`, { endpointCaPath: join(dir, 'web-ca.pem') });
    const fetched = await source.fetchBundle();
    assert.equal(fetched.bundle.trustDomain.name, 'td-b', 'the configured trust domain, whatever the document says');
    assert.equal(fetched.bundle.sequenceNumber, 7);
    assert.equal(fetched.refreshHintSeconds, 42);
    assert.equal(fetched.bundle.authorities.length, 2);
  });

  test('refuses an endpoint whose certificate does not chain to the configured CA (or to the system roots)', async () => {
    await writeFile(join(dir, 'other-ca.pem'), rootB.pem);
    const url = `${base}/.well-known/spiffe-bundle`;
    await assert.rejects(createFederatedBundleSource(TD_B, url, { endpointCaPath: join(dir, 'other-ca.pem') }).fetchBundle(), assertBundleError('fetch'));
    await assert.rejects(createFederatedBundleSource(TD_B, url).fetchBundle(), assertBundleError('fetch'));
  });

  test('does not follow redirects, refuses error statuses, oversized answers and silence', async () => {
    const options = { endpointCaPath: join(dir, 'web-ca.pem'), timeoutMs: 300 };
    await assert.rejects(createFederatedBundleSource(TD_B, `${base}/redirect`, options).fetchBundle(), assertBundleError('fetch', /redirect \(302\)/));
    await assert.rejects(createFederatedBundleSource(TD_B, `${base}/broken`, options).fetchBundle(), assertBundleError('fetch', /HTTP 500/));
    await assert.rejects(createFederatedBundleSource(TD_B, `${base}/huge`, options).fetchBundle(), assertBundleError('too-large'));
    await assert.rejects(createFederatedBundleSource(TD_B, `${base}/silent`, options).fetchBundle(), assertBundleError('timeout'));
  });

  test('honours abort', async () => {
    const controller = new AbortController();
    const pending = createFederatedBundleSource(TD_B, `${base}/silent`, { endpointCaPath: join(dir, 'web-ca.pem') }).fetchBundle({ signal: controller.signal });
    controller.abort(new Error('stopping'));
    await assert.rejects(pending, /stopping/);
  });
});
