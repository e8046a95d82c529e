import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SignJWT, generateKeyPair } from 'jose';
import { expectedSpiffeIdForToken, readServiceAccountTokenClaims } from '../../../src/agent/token-claims.js';
import { DevTokenIssuer } from '../../../src/authn/dev-issuer.js';
import { isIdentityError } from '../../../src/errors.js';
import { createFileTokenSource } from '../../../src/files/token-file.js';
import { parseTrustDomain } from '../../../src/spiffe/trust-domain.js';
import { ManualClock } from '../../helpers/manual-clock.js';

function rejectsWith(rule: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isIdentityError(err), String(err));
    assert.equal(err.code, 'ERR_AUTHN_FAILED');
    assert.equal(err.rule, rule, err.message);
    return true;
  };
}

describe('createFileTokenSource', () => {
  let issuer: DevTokenIssuer;
  let dir: string;
  let clock: ManualClock;

  before(async () => {
    issuer = await DevTokenIssuer.generate();
    dir = await mkdtemp(join(tmpdir(), 'meshca-token-file-'));
    clock = new ManualClock();
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('returns the token as currently on disk, re-reading on every call (trailing newline trimmed)', async () => {
    const path = join(dir, 'token');
    const source = createFileTokenSource(path, { clock });
    const first = await issuer.mint({ namespace: 'default', serviceAccount: 'sleep', now: clock.now() });
    await writeFile(path, `${first}\n`);
    assert.equal(await source.readToken(), first);
    const second = await issuer.mint({ namespace: 'default', serviceAccount: 'sleep', now: clock.now() });
    await writeFile(path, second);
    assert.equal(await source.readToken(), second);
  });

  test('explains a missing file', async () => {
    await assert.rejects(createFileTokenSource(join(dir, 'absent'), { clock }).readToken(), rejectsWith('token-file-missing'));
  });

  test('explains an unreadable path', async () => {
    const path = join(dir, 'a-directory');
    await mkdir(path);
    await assert.rejects(createFileTokenSource(path, { clock }).readToken(), rejectsWith('token-file-unreadable'));
  });

  test('refuses an empty or blank file', async () => {
    const path = join(dir, 'empty');
    await writeFile(path, ' \n');
    await assert.rejects(createFileTokenSource(path, { clock }).readToken(), rejectsWith('token-empty'));
  });

  test('refuses a token that its own exp claim says has expired', async () => {
    const path = join(dir, 'expired');
    await writeFile(path, await issuer.mint({ namespace: 'default', serviceAccount: 'sleep', now: clock.now(), ttlSeconds: 600 }));
    const source = createFileTokenSource(path, { clock: new ManualClock(new Date(clock.now().getTime() + 600_000)) });
    await assert.rejects(source.readToken(), (err: unknown) => rejectsWith('expired')(err) && /expired at/.test((err as Error).message));
  });

  test('refuses something that is not a token, and an oversized file', async () => {
    const garbage = join(dir, 'garbage');
    await writeFile(garbage, 'not-a-jwt');
    await assert.rejects(createFileTokenSource(garbage, { clock }).readToken(), rejectsWith('token-malformed'));
    const big = join(dir, 'big');
    await writeFile(big, 'a'.repeat(100));
    await assert.rejects(createFileTokenSource(big, { clock, maxBytes: 64 }).readToken(), rejectsWith('token-file-too-large'));
  });

  test('never puts the token in an error message', async () => {
    const path = join(dir, 'expired-secret');
    const token = await issuer.mint({ namespace: 'default', serviceAccount: 'sleep', now: new Date(0), ttlSeconds: 1 });
    await writeFile(path, token);
    await assert.rejects(createFileTokenSource(path, { clock }).readToken(), (err: unknown) => !(err as Error).message.includes(token.split('.')[2]!));
  });
});

describe('expectedSpiffeIdForToken', () => {
  test('derives spiffe://<td>/ns/<ns>/sa/<sa> from the unverified claims', async () => {
    const issuer = await DevTokenIssuer.generate();
    const token = await issuer.mint({ namespace: 'shop', serviceAccount: 'cart', podName: 'cart-0', now: new Date() });
    assert.equal(expectedSpiffeIdForToken(token, parseTrustDomain('prod.example')).toString(), 'spiffe://prod.example/ns/shop/sa/cart');
    assert.equal(readServiceAccountTokenClaims(token).serviceAccount, 'cart');
  });

  test('refuses a JWT without Kubernetes claims, or whose sub disagrees with them', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const plain = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
    assert.throws(() => readServiceAccountTokenClaims(plain), rejectsWith('claims-missing'));
    const forged = await new SignJWT({ sub: 'system:serviceaccount:default:sleep', 'kubernetes.io': { namespace: 'kube-system', serviceaccount: { name: 'admin' } } })
      .setProtectedHeader({ alg: 'ES256' })
      .sign(privateKey);
    assert.throws(() => readServiceAccountTokenClaims(forged), rejectsWith('subject-mismatch'));
  });
});
