import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LOOPBACK_CA_OPTIONS, parseCaServeConfig } from '../../../src/config/ca-serve-config.js';

describe('parseCaServeConfig', () => {
  test('--auth jwks alone uses OIDC discovery at the documented default issuer', () => {
    const config = parseCaServeConfig({ ...LOOPBACK_CA_OPTIONS, dataDir: '/tmp/unused', auth: 'jwks' });
    assert.equal(config.auth, 'jwks');
    assert.equal(config.oidcIssuer, 'https://kubernetes.default.svc.cluster.local');
    assert.equal(config.jwksFile, undefined);
    assert.equal(config.jwksUri, undefined);
  });

  test('an unknown --auth is still refused, naming the choices', () => {
    assert.throws(() => parseCaServeConfig({ ...LOOPBACK_CA_OPTIONS, dataDir: '/tmp/unused', auth: 'magic' }), /--auth magic must be dev, jwks or tokenreview/);
  });
});
