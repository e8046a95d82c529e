import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { CsrError } from '../../../src/errors.js';
import { KEY_KINDS } from '../../../src/pki/algorithms.js';
import { checkCsrKey, createCsr, parseCsr, verifyCsrSignature } from '../../../src/pki/csr.js';
import { encodeBitString, encodeSequence } from '../../../src/pki/der.js';
import { generateKey } from '../../../src/pki/keys.js';
import { encodePem } from '../../../src/pki/pem.js';
import { openssl, opensslCsr } from '../../helpers/openssl.js';

const ID = 'spiffe://cluster.local/ns/default/sa/sleep';

function assertCsrError(fn: () => unknown, rule: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CsrError, `expected CsrError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_CSR_INVALID');
    assert.equal(err.rule, rule);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('createCsr', () => {
  for (const kind of KEY_KINDS.filter((k) => k !== 'rsa-4096' && k !== 'rsa-3072')) {
    test(`makes a ${kind} CSR that openssl and @peculiar/x509 both verify`, async () => {
      const { privateKey } = await generateKey(kind);
      const { pem, der } = createCsr(privateKey, { uris: [ID] });
      const result = await openssl(['req', '-noout', '-verify', '-text'], pem);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout + result.stderr, /verify OK/);
      assert.match(result.stdout, new RegExp(`URI:${ID}`));
      const parsed = new x509.Pkcs10CertificateRequest(der);
      assert.equal(parsed.subject, '');
      assert.deepEqual(parseCsr(pem).sans, [{ type: 'uri', value: ID }]);
      verifyCsrSignature(parseCsr(der));
    });
  }
});

describe('parseCsr', () => {
  test('reads an openssl-made CSR with DNS and URI SANs', async () => {
    const { csrPem } = await opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], [
      '-addext',
      `subjectAltName=URI:${ID},DNS:sleep.default.svc`,
    ]);
    const csr = parseCsr(csrPem);
    assert.equal(csr.keyKind, 'ec-p256');
    assert.deepEqual(csr.sans, [
      { type: 'uri', value: ID },
      { type: 'dns', value: 'sleep.default.svc' },
    ]);
    verifyCsrSignature(csr);
  });

  const cases: [string, () => unknown, string][] = [
    ['empty input', () => parseCsr(''), 'pem'],
    ['a certificate instead of a CSR', () => parseCsr(encodePem('CERTIFICATE', encodeSequence())), 'pem'],
    ['two CSR blocks', () => parseCsr(encodePem('CERTIFICATE REQUEST', encodeSequence()).repeat(2)), 'pem'],
    ['bad base64', () => parseCsr('-----BEGIN CERTIFICATE REQUEST-----\n@@@@\n-----END CERTIFICATE REQUEST-----\n'), 'pem'],
    ['garbage DER', () => parseCsr(Uint8Array.of(1, 2, 3, 4)), 'der'],
    ['an empty SEQUENCE', () => parseCsr(encodeSequence()), 'der'],
    ['an oversized CSR', () => parseCsr(new Uint8Array(20_000)), 'size'],
    ['an oversized PEM', () => parseCsr('A'.repeat(100_000)), 'size'],
  ];
  for (const [name, fn, rule] of cases) {
    test(`rejects ${name}`, () => assertCsrError(fn, rule));
  }

  test('rejects trailing bytes after the CSR', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const { der } = createCsr(privateKey, { uris: [ID] });
    assertCsrError(() => parseCsr(Uint8Array.from([...der, 0])), 'der', /trailing/);
  });

  test('non-string, non-bytes input is a TypeError (caller misuse)', () => {
    assert.throws(() => parseCsr(42 as unknown as string), TypeError);
  });
});

describe('verifyCsrSignature', () => {
  test('rejects a CSR whose signature does not verify', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const der = Uint8Array.from(createCsr(privateKey, { uris: [ID] }).der);
    der[der.length - 5]! ^= 0x01;
    assertCsrError(() => verifyCsrSignature(parseCsr(der)), 'signature', /does not verify/);
  });

  test("rejects a CSR signed by a key other than the one it carries", () => {
    const a = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const b = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const csrA = parseCsr(createCsr(a.privateKey, { uris: [ID] }).der);
    const csrB = parseCsr(createCsr(b.privateKey, { uris: [ID] }).der);
    const spliced = encodeSequence(csrA.info, encodeSequence(Buffer.from('06082a8648ce3d040302', 'hex')), encodeBitString(csrB.signature));
    assertCsrError(() => verifyCsrSignature(parseCsr(spliced)), 'signature');
  });

  test('rejects a SHA-1 signed CSR as an unsupported algorithm', async () => {
    const { csrPem } = await opensslCsr(['-newkey', 'rsa:2048', '-sha1']);
    assertCsrError(() => verifyCsrSignature(parseCsr(csrPem)), 'signature-algorithm', /not supported/);
  });
});

describe('checkCsrKey', () => {
  const weak: [string, string[], RegExp][] = [
    ['RSA 1024', ['-newkey', 'rsa:1024'], /RSA 1024 bits is not accepted/],
    // 256 modulus bytes, but not 2048 bits: the size is the bit length.
    ['RSA 2047', ['-newkey', 'rsa:2047'], /RSA 2047 bits is not accepted/],
    ['RSA 2041', ['-newkey', 'rsa:2041'], /RSA 2041 bits is not accepted/],
    ['EC secp256k1', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1'], /EC secp256k1 is not accepted/],
    ['EC P-521', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521'], /EC P-521 is not accepted/],
  ];
  for (const [name, newkey, message] of weak) {
    test(`rejects a ${name} key`, async () => {
      const { csrPem } = await opensslCsr(newkey);
      assertCsrError(() => checkCsrKey(parseCsr(csrPem)), 'weak-key', message);
    });
  }

  test('accepts P-256, P-384, RSA 2048 and Ed25519', async () => {
    for (const [newkey, kind] of [
      [['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], 'ec-p256'],
      [['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], 'ec-p384'],
      [['-newkey', 'rsa:2048'], 'rsa-2048'],
      [['-newkey', 'ed25519'], 'ed25519'],
    ] as const) {
      const { csrPem } = await opensslCsr(newkey);
      const csr = parseCsr(csrPem);
      assert.equal(checkCsrKey(csr), kind);
      verifyCsrSignature(csr);
    }
  });
});

describe('parseCsr under fuzzing (fast-check)', async () => {
  const fc = (await import('fast-check')).default;
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const valid = createCsr(privateKey, { uris: [ID] }).der;

  // Only CsrError may escape: anything else would be a crash path on hostile input.
  const parseAndVerify = (input: string | Uint8Array): void => {
    try {
      const csr = parseCsr(input);
      checkCsrKey(csr);
      verifyCsrSignature(csr);
    } catch (err) {
      if (!(err instanceof CsrError)) throw err;
    }
  };

  test('arbitrary bytes never produce anything but a CsrError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => parseAndVerify(bytes)), { numRuns: 2000 });
  });

  test('a valid CSR with bytes flipped, inserted or truncated never crashes the parser', () => {
    fc.assert(
      fc.property(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.nat({ max: valid.length }), (index, value, cut) => {
        const flipped = Uint8Array.from(valid);
        flipped[index] = value;
        parseAndVerify(flipped);
        parseAndVerify(valid.subarray(0, cut));
        parseAndVerify(Uint8Array.from([...valid.subarray(0, index), value, ...valid.subarray(index)]));
      }),
      { numRuns: 2000 },
    );
  });

  test('arbitrary strings (PEM-looking or not) never produce anything but a CsrError', () => {
    const pemish = fc.string().map((s) => `-----BEGIN CERTIFICATE REQUEST-----\n${s}\n-----END CERTIFICATE REQUEST-----\n`);
    fc.assert(fc.property(fc.oneof(fc.string(), pemish), (text) => parseAndVerify(text)), { numRuns: 1000 });
  });
});
