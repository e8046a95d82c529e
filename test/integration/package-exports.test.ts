import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';

// The built package, resolved by its own name through package.json "exports", as a service
// author's `import ... from 'meshca'` would (npm ci builds dist/ through `prepare`).
const built = existsSync(fileURLToPath(new URL('../../dist/index.js', import.meta.url)));

describe('the published library surface', () => {
  test('dist/ exists (npm ci runs the build)', () => {
    assert.ok(built, 'run `npm run build` first');
  });

  test("import { parseSpiffeId } from 'meshca' parses, and throws a coded error on an invalid ID", async () => {
    const meshca = (await import('meshca' as string)) as typeof import('../../src/index.js');
    const id = meshca.parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
    assert.equal(id.trustDomain.name, 'cluster.local');
    assert.equal(id.path, '/ns/default/sa/sleep');
    assert.throws(
      () => meshca.parseSpiffeId('spiffe://cluster.local/ns/../sa/x'),
      (err: unknown) => err instanceof meshca.IdentityError && err.code === 'ERR_SPIFFE_ID_INVALID' && err.rule === 'path-dot-segment',
    );
  });

  test('subpaths meshca/spiffe and meshca/errors resolve; internals do not', async () => {
    const spiffe = (await import('meshca/spiffe' as string)) as typeof import('../../src/spiffe/index.js');
    assert.equal(typeof spiffe.verifyX509Svid, 'function');
    const errors = (await import('meshca/errors' as string)) as typeof import('../../src/errors.js');
    assert.equal(typeof errors.IdentityError, 'function');
    await assert.rejects(import('meshca/transport/status' as string), (err: NodeJS.ErrnoException) => err.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED');
    await assert.rejects(import('meshca/dist/cmd/meshca.js' as string), (err: NodeJS.ErrnoException) => err.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED');
  });

  test('meshca/fastify and meshca/workloadapi resolve, and the root exports the policy YAML loader', async () => {
    const fastify = (await import('meshca/fastify' as string)) as typeof import('../../src/fastify.js');
    assert.equal(typeof fastify.fastifyMtls, 'function');
    const workloadapi = (await import('meshca/workloadapi' as string)) as typeof import('../../src/workloadapi.js');
    assert.equal(typeof workloadapi.createWorkloadApiX509Source, 'function');
    const meshca = (await import('meshca' as string)) as typeof import('../../src/index.js');
    const policy = (await import('meshca/policy' as string)) as typeof import('../../src/policy/index.js');
    const loaded = meshca.parsePolicyYaml(
      'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: default}\nspec:\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]\n',
      'inline',
    );
    const engine = policy.compilePolicies([...loaded.policies], { trustDomain: meshca.parseTrustDomain('cluster.local'), namespace: 'default' });
    const sleep = meshca.parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
    const other = meshca.parseSpiffeId('spiffe://cluster.local/ns/default/sa/other');
    assert.equal(engine.decide({ peer: sleep, method: 'GET', path: '/' }).allowed, true);
    assert.equal(engine.decide({ peer: other, method: 'GET', path: '/' }).allowed, false);
  });

  test("PROTO_DIR from 'meshca' holds Istio's ca.proto whatever the current directory", async () => {
    const meshca = (await import('meshca' as string)) as typeof import('../../src/index.js');
    assert.ok(existsSync(join(meshca.PROTO_DIR, 'istio/v1/auth/ca.proto')), meshca.PROTO_DIR);
    assert.ok(existsSync(join(meshca.PROTO_DIR, 'spiffe/workload/workload.proto')));
    const cwd = process.cwd();
    try {
      process.chdir(tmpdir());
      const { loadSync } = await import('@grpc/proto-loader');
      const definition = loadSync('istio/v1/auth/ca.proto', { keepCase: true, includeDirs: [meshca.PROTO_DIR] });
      assert.ok(definition['istio.v1.auth.IstioCertificateService']);
    } finally {
      process.chdir(cwd);
    }
  });
});
