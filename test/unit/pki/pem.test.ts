import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodePem, encodePem, PemError } from '../../../src/pki/pem.js';

describe('decodePem', () => {
  const block = encodePem('CERTIFICATE', Uint8Array.of(1, 2, 3, 4, 5));

  test('reads every block and ignores text around them, as openssl writes it', () => {
    const blocks = decodePem(`subject=O = x\n${block}comment\n${block}`);
    assert.equal(blocks.length, 2);
    assert.deepEqual([...blocks[0]!.der], [1, 2, 3, 4, 5]);
  });

  test('a truncated block is an error, not a silently missing certificate', () => {
    assert.throws(() => decodePem(block + block.slice(0, 40)), (err: unknown) => err instanceof PemError && /1 of 2 PEM blocks/.test(err.message));
  });

  test('a body with characters outside base64 is an error', () => {
    assert.throws(() => decodePem(block.replace('AQIDBAU=', 'AQ!DBAU=')), PemError);
  });

  test('mismatched BEGIN and END labels are an error', () => {
    assert.throws(() => decodePem(block.replace('END CERTIFICATE', 'END PRIVATE KEY')), /ends with END PRIVATE KEY/);
  });
});
