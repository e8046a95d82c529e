import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { meshca } from '../helpers/cli.js';

describe('meshca demo (the README\'s first command)', () => {
  test('plays the whole story and exits 0 with every check passed', async () => {
    const result = await meshca(['demo', '--port', '0'], { timeoutMs: 120_000 });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /HTTP 200 {2}Hello version: v1, instance: helloworld-v1-[0-9a-f]+/);
    assert.match(result.stdout, /HTTP 403 .*ERR_AUTHZ_DENIED/);
    assert.match(result.stdout, /no client certificate {2}→ {2}ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED/);
    assert.match(result.stdout, /spiffe:\/\/evil\.example\/ns\/default\/sa\/sleep \(another trust domain\) {2}→ {2}\S+/);
    assert.match(result.stdout, /openssl s_client -connect localhost:\d+ -cert \/\S+\/sleep\/certs\/cert-chain\.pem/);
    assert.match(result.stdout, /spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep {2}valid 23h 59m, next rotation/);
    assert.match(result.stdout, /All checks passed\./);
  });
});
