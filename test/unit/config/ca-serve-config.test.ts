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

  test('the injector, the root ConfigMap, the cluster ID and the monitoring port: defaults, and each bad value named once', () => {
    const base = { ...LOOPBACK_CA_OPTIONS, dataDir: '/tmp/unused' };
    const plain = parseCaServeConfig(base);
    assert.equal(plain.sidecarInjector, undefined);
    assert.equal(plain.rootConfigMap, 'meshca-root-cert');
    assert.equal(plain.clusterId, 'Kubernetes');
    assert.equal(plain.monitoringListen, undefined);
    assert.equal(plain.rootResyncIntervalMs, 60_000);
    const istio = parseCaServeConfig({ ...base, sidecarInjector: 'true', rootConfigmap: 'istio-ca-root-cert', sidecarImage: 'registry.example/meshca:0.1.0', monitoringListen: '0.0.0.0:15016' });
    assert.equal(istio.sidecarInjector?.rootConfigMap, 'istio-ca-root-cert');
    assert.equal(istio.sidecarInjector?.image, 'registry.example/meshca:0.1.0');
    assert.deepEqual(istio.monitoringListen, { host: '0.0.0.0', port: 15016 });
    assert.throws(
      () => parseCaServeConfig({ ...base, sidecarInjector: 'true', rootConfigmap: 'Not_A_Name', clusterId: 'a b', sidecarImagePullPolicy: 'Sometimes', rootResyncInterval: '0s' }),
      (err: Error & { problems?: readonly string[] }) => {
        assert.deepEqual(err.problems, [
          '--root-resync-interval must be at least 1s',
          '--cluster-id "a b" must be 1-63 letters, digits, \'-\', \'_\' or \'.\'',
          '--root-configmap "Not_A_Name" is not a ConfigMap name',
          '--sidecar-image-pull-policy must be one of Always, IfNotPresent, Never, not "Sometimes"',
        ]);
        return true;
      },
    );
  });
});
