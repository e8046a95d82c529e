import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodeOid,
  DerError,
  encodeOid,
  encodeTime,
  encodeTlv,
  encodeUnsignedInteger,
  readChildren,
  readElement,
  TAG,
} from '../../../src/pki/der.js';

describe('DER reader', () => {
  test('reads short and long definite lengths', () => {
    const short = encodeTlv(TAG.OCTET_STRING, new Uint8Array(5));
    assert.deepEqual(readElement(short, 0), { tag: 4, start: 0, contentStart: 2, end: 7 });
    const long = encodeTlv(TAG.OCTET_STRING, new Uint8Array(300));
    assert.deepEqual([...long.subarray(0, 4)], [0x04, 0x82, 0x01, 0x2c]);
    assert.equal(readElement(long, 0).end, 304);
  });

  const malformed: [string, number[]][] = [
    ['truncated header', [0x30]],
    ['indefinite length', [0x30, 0x80, 0x00, 0x00]],
    ['non-minimal long form', [0x04, 0x81, 0x05, 1, 2, 3, 4, 5]],
    ['length with a leading zero byte', [0x04, 0x82, 0x00, 0x81, ...new Array(0x81).fill(0)]],
    ['overrun', [0x04, 0x05, 1, 2]],
    ['multi-byte tag', [0x1f, 0x81, 0x01, 0x00]],
    ['five length bytes', [0x04, 0x85, 0, 0, 0, 0, 1, 0]],
  ];
  for (const [name, bytes] of malformed) {
    test(`rejects ${name}`, () => {
      assert.throws(() => readElement(Uint8Array.from(bytes), 0), DerError);
    });
  }

  test('children must fit exactly inside their parent', () => {
    const parent = Uint8Array.of(0x30, 0x04, 0x02, 0x01, 0x05, 0x02);
    assert.throws(() => readChildren(parent, readElement(parent, 0)), DerError);
  });
});

describe('DER writer', () => {
  test('OIDs round-trip, including multi-byte arcs', () => {
    for (const oid of ['1.2.840.10045.4.3.2', '2.5.29.17', '1.3.6.1.5.5.7.3.2', '2.999.3', '1.2.840.113549.1.9.14']) {
      const der = encodeOid(oid);
      assert.equal(decodeOid(der.subarray(2)), oid);
    }
  });

  test('integers are minimal and positive', () => {
    assert.deepEqual([...encodeUnsignedInteger(Uint8Array.of(0, 0, 0x7f))], [0x02, 0x01, 0x7f]);
    assert.deepEqual([...encodeUnsignedInteger(Uint8Array.of(0x80))], [0x02, 0x02, 0x00, 0x80]);
    assert.deepEqual([...encodeUnsignedInteger(Uint8Array.of(0))], [0x02, 0x01, 0x00]);
  });

  test('times are UTCTime before 2050 and GeneralizedTime from 2050 (RFC 5280 4.1.2.5)', () => {
    assert.equal(Buffer.from(encodeTime(new Date('2049-12-31T23:59:59Z'))).toString('latin1', 2), '491231235959Z');
    assert.equal(encodeTime(new Date('2049-12-31T23:59:59Z'))[0], TAG.UTC_TIME);
    assert.equal(Buffer.from(encodeTime(new Date('2050-01-01T00:00:00Z'))).toString('latin1', 2), '20500101000000Z');
    assert.equal(encodeTime(new Date('2050-01-01T00:00:00Z'))[0], TAG.GENERALIZED_TIME);
  });
});
