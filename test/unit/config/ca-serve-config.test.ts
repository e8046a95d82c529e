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

  test('the serving certificate names the IPs the CA listens on, loopback for a wildcard, and --serving-ip-addresses', () => {
    const ips = (overrides: Record<string, unknown>): readonly string[] =>
      parseCaServeConfig({ ...LOOPBACK_CA_OPTIONS, dataDir: '/tmp/unused', ...overrides }).servingIpAddresses;
    assert.deepEqual(ips({}), ['127.0.0.1']);
    assert.deepEqual(ips({ grpcListen: '0.0.0.0:15012', httpListen: '[::]:15014' }), ['127.0.0.1', '::1']);
    assert.deepEqual(ips({ grpcListen: '10.0.0.5:15012', servingIpAddresses: '192.0.2.7, 2001:db8::1' }), ['192.0.2.7', '2001:db8::1', '10.0.0.5', '127.0.0.1']);
    assert.throws(() => ips({ servingIpAddresses: 'meshca.local' }), /--serving-ip-addresses: "meshca.local" is not an IP address/);
  });
});
