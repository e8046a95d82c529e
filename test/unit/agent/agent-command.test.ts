import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { buildAgentCommand } from '../../../src/cmd/agent-command.js';
import { parseAgentConfig, type AgentOptionValues } from '../../../src/config/agent-config.js';
import { ConfigError } from '../../../src/errors.js';
import { ManualClock } from '../../helpers/manual-clock.js';

const DEFAULTS: AgentOptionValues = {
  caAddress: 'istiod.istio-system.svc:15012',
  caRoot: '/var/run/secrets/istio/root-cert.pem',
  tokenFile: '/var/run/secrets/tokens/istio-token',
  trustDomain: 'cluster.local',
  out: '/etc/certs',
  svidTtl: '24h',
  key: 'ec-p256',
  hookTimeout: '30s',
  insecure: false,
  caTimeout: '10s',
  bundleRefresh: '5m',
};

/** Parses argv with the real command but captures the option values instead of running. */
async function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<AgentOptionValues> {
  const io = { stdout: new PassThrough(), stderr: new PassThrough(), clock: new ManualClock(), env, stdin: [] };
  const command = buildAgentCommand(io).exitOverride();
  let captured: AgentOptionValues | undefined;
  command.action((opts: AgentOptionValues) => {
    captured = opts;
  });
  await command.parseAsync([...argv], { from: 'user' });
  assert.ok(captured);
  return captured;
}

describe('meshca agent configuration', () => {
  test('turns flags into a frozen config with units attached', () => {
    const config = parseAgentConfig({ ...DEFAULTS, workloadApiSocket: 'unix:///run/spiffe/agent.sock', healthListen: '127.0.0.1:15021' });
    assert.ok(Object.isFrozen(config));
    assert.equal(config.trustDomain.name, 'cluster.local');
    assert.equal(config.svidTtlSeconds, 86400);
    assert.equal(config.caTimeoutMs, 10_000);
    assert.equal(config.bundleRefreshMs, 300_000);
    assert.equal(config.workloadApiSocket, '/run/spiffe/agent.sock');
    assert.deepEqual(config.healthListen, { host: '127.0.0.1', port: 15021 });
  });

  test('lists every problem in one ERR_CONFIG_INVALID', () => {
    const bad: AgentOptionValues = {
      ...DEFAULTS,
      caAddress: 'https://istiod',
      caRoot: undefined,
      tokenFile: undefined,
      trustDomain: 'Not A Domain',
      out: undefined,
      svidTtl: 'soon',
      key: 'dsa-1024',
      healthListen: 'nowhere',
    };
    assert.throws(
      () => parseAgentConfig(bad),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, 'ERR_CONFIG_INVALID');
        const text = err.problems.join('\n');
        for (const expected of ['--ca-address', '--ca-root', '--token-file', '--trust-domain', '--svid-ttl', '--key', 'nothing would receive', '--health-listen']) {
          assert.ok(text.includes(expected), `missing a problem about ${expected}:\n${text}`);
        }
        return true;
      },
    );
  });

  test('takes every setting from MESHCA_* environment variables, flags winning', async () => {
    const values = await parseArgs(['--svid-ttl', '12h'], {
      MESHCA_CA_ADDRESS: '127.0.0.1:15012',
      MESHCA_CA_ROOT: './certs/root-cert.pem',
      MESHCA_TOKEN_FILE: '/tokens/istio-token',
      MESHCA_TRUST_DOMAIN: 'prod.example',
      MESHCA_OUT_DIR: '/etc/certs',
      MESHCA_WORKLOAD_API_SOCKET: '/run/spiffe/agent.sock',
      MESHCA_SVID_TTL: '1h',
      MESHCA_KEY: 'ec-p384',
      MESHCA_HOOK: 'nginx -s reload',
      MESHCA_CA_INSECURE: 'true',
      MESHCA_HEALTH_LISTEN: '127.0.0.1:15021',
    });
    const config = parseAgentConfig(values);
    assert.equal(config.caAddress, '127.0.0.1:15012');
    assert.equal(config.trustDomain.name, 'prod.example');
    assert.equal(config.outDir, '/etc/certs');
    assert.equal(config.svidTtlSeconds, 12 * 3600, 'the flag beats MESHCA_SVID_TTL');
    assert.equal(config.keyKind, 'ec-p384');
    assert.equal(config.hook, 'nginx -s reload');
    assert.equal(config.insecure, true);
    assert.deepEqual(config.healthListen, { host: '127.0.0.1', port: 15021 });
  });

  test('defaults to a 24 h TTL, EC P-256 and TLS', async () => {
    const values = await parseArgs(['--ca-address', 'ca:15012', '--ca-root', 'root.pem', '--token-file', 't', '--out', 'o'], {});
    const config = parseAgentConfig(values);
    assert.equal(config.svidTtlSeconds, 86400);
    assert.equal(config.keyKind, 'ec-p256');
    assert.equal(config.insecure, false);
    assert.equal(config.trustDomain.name, 'cluster.local');
  });
});
