import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, test } from 'node:test';
import { ipAddressBytes } from '../../../src/pki/ip-address.js';

const hex = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString('hex'));

describe('IP address SAN bytes', () => {
  test('IPv4 and IPv6 text forms give their exact bytes', () => {
    assert.equal(hex(ipAddressBytes('127.0.0.1')), '7f000001');
    assert.equal(hex(ipAddressBytes('::1')), '00000000000000000000000000000001');
    assert.equal(hex(ipAddressBytes('::')), '0'.repeat(32));
    assert.equal(hex(ipAddressBytes('2001:db8::8:800:200c:417a')), '20010db80000000000080800200c417a');
    assert.equal(hex(ipAddressBytes('::ffff:192.0.2.1')), '00000000000000000000ffffc0000201');
    assert.equal(hex(ipAddressBytes('1:2:3:4:5:6:7:8')), '00010002000300040005000600070008');
  });

  test('anything node itself would not call an address is refused, and so are zones and leading zeros', () => {
    for (const bad of ['', 'localhost', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7::8', 'fe80::1%eth0', ':::', '12345::', '1.2.3.4::']) {
      assert.equal(ipAddressBytes(bad), undefined, bad);
    }
    for (const good of ['10.0.0.5', '0.0.0.0', 'fe80::1', '::ffff:10.1.2.3', 'a:b:c:d:e:f:0:1']) {
      assert.notEqual(isIP(good), 0, good);
      assert.notEqual(ipAddressBytes(good), undefined, good);
    }
  });
});
