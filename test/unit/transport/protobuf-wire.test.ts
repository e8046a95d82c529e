/**
 * The hand-written protobuf codec against protobufjs reading the real .proto files: every field
 * number and type the agent's CA client writes or reads must be what the CA's grpc-js server
 * decodes and encodes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { loadIstioCaProto, PROTO_LOADER_OPTIONS } from '../../../src/transport/grpc/protos.js';
import {
  decodeFetchJwtBundleResponse,
  decodeMintJwtSvidRequest,
  decodeMintJwtSvidResponse,
  encodeFetchJwtBundleResponse,
  encodeMintJwtSvidRequest,
  encodeMintJwtSvidResponse,
  decodeIstioCertificateResponse,
  encodeIstioCertificateRequest,
  MessageWriter,
  ProtobufDecodeError,
  readFields,
} from '../../../src/transport/grpc/protobuf-wire.js';

const method = loadIstioCaProto().istio.v1.auth.IstioCertificateService.service.CreateCertificate;

describe('protobuf wire codec', () => {
  test('IstioCertificateRequest decodes in protobufjs as written, large and zero lifetimes included', () => {
    for (const validitySeconds of [0, 1, 127, 128, 86_400, 2 ** 40]) {
      const csr = `-----BEGIN CERTIFICATE REQUEST-----\n${'x'.repeat(300)}é\n-----END CERTIFICATE REQUEST-----\n`;
      const decoded = method.requestDeserialize(encodeIstioCertificateRequest({ csr, validitySeconds }));
      assert.equal(decoded.csr, csr);
      assert.equal(Number(decoded.validity_duration), validitySeconds);
    }
  });

  test('IstioCertificateResponse from protobufjs decodes to the same chain, in order', () => {
    const chain = ['leaf-pem', 'intermediate-pem', 'root-pem'];
    assert.deepEqual(decodeIstioCertificateResponse(method.responseSerialize({ cert_chain: chain })).certChain, chain);
    assert.deepEqual(decodeIstioCertificateResponse(Buffer.alloc(0)).certChain, []);
  });

  test('unknown fields of every wire type are skipped', () => {
    const known = method.responseSerialize({ cert_chain: ['a'] });
    const extra = Buffer.concat([
      Buffer.from([0x10, 0x96, 0x01]), // field 2, varint 150
      Buffer.from([0x19, 1, 2, 3, 4, 5, 6, 7, 8]), // field 3, fixed64
      Buffer.from([0x25, 1, 2, 3, 4]), // field 4, fixed32
      new MessageWriter().string(5, 'ignored').finish(),
    ]);
    assert.deepEqual(decodeIstioCertificateResponse(Buffer.concat([extra, known])).certChain, ['a']);
  });

  test('malformed messages are refused, never read past their end', () => {
    const cases: [string, Buffer][] = [
      ['length past the end', Buffer.from([0x0a, 0x05, 0x61])],
      ['truncated varint', Buffer.from([0x10, 0x80])],
      ['11-byte varint', Buffer.from([0x10, ...new Array(10).fill(0x80), 0x01])],
      ['group wire type', Buffer.from([0x0b])],
      ['field number 0', Buffer.from([0x02, 0x00])],
      ['truncated fixed64', Buffer.from([0x19, 1, 2])],
      ['a chain entry as a varint', Buffer.from([0x08, 0x01])],
    ];
    for (const [name, bytes] of cases) assert.throws(() => decodeIstioCertificateResponse(bytes), ProtobufDecodeError, name);
  });

  test('the writer refuses what it cannot encode exactly', () => {
    assert.throws(() => new MessageWriter().uint(1, -1), RangeError);
    assert.throws(() => new MessageWriter().uint(1, 2 ** 53), RangeError);
    assert.throws(() => new MessageWriter().uint(1, 1.5), RangeError);
    assert.deepEqual([...readFields(new MessageWriter().bool(1, true).bytes(2, Buffer.alloc(0)).finish())].map((f) => [f.number, f.int, f.bytes.length]), [
      [1, 1, 0],
      [2, 0, 0],
    ]);
  });

  test('meshca.v1.JwtSvidService messages match proto/meshca/v1/jwt_svid.proto as protobufjs reads it', () => {
    type Method = { requestSerialize(v: object): Buffer; requestDeserialize(b: Buffer): Record<string, unknown>; responseSerialize(v: object): Buffer; responseDeserialize(b: Buffer): Record<string, unknown> };
    const pkg = loadPackageDefinition(loadSync('meshca/v1/jwt_svid.proto', PROTO_LOADER_OPTIONS)) as unknown as { meshca: { v1: { JwtSvidService: { service: Record<string, Method> } } } };
    const { MintJwtSvid, FetchJwtBundle } = pkg.meshca.v1.JwtSvidService.service as { MintJwtSvid: Method; FetchJwtBundle: Method };
    const request = MintJwtSvid.requestDeserialize(encodeMintJwtSvidRequest({ audience: ['a', 'spiffe://x/y'], ttlSeconds: 300 }));
    assert.deepEqual(request['audience'], ['a', 'spiffe://x/y']);
    assert.equal(Number(request['ttl_seconds']), 300);
    assert.deepEqual(decodeMintJwtSvidRequest(MintJwtSvid.requestSerialize({ audience: ['b'], ttl_seconds: 60 })), { audience: ['b'], ttlSeconds: 60 });
    const response = MintJwtSvid.responseDeserialize(encodeMintJwtSvidResponse({ spiffeId: 'spiffe://cluster.local/ns/a/sa/b', token: 'x.y.z' }));
    assert.equal(response['spiffe_id'], 'spiffe://cluster.local/ns/a/sa/b');
    assert.equal(response['token'], 'x.y.z');
    assert.deepEqual(decodeMintJwtSvidResponse(MintJwtSvid.responseSerialize({ spiffe_id: 's', token: 't' })), { spiffeId: 's', token: 't' });
    const bundle = FetchJwtBundle.responseDeserialize(encodeFetchJwtBundleResponse('{"keys":[]}'));
    assert.equal(Buffer.from(bundle['spiffe_bundle'] as Uint8Array).toString(), '{"keys":[]}');
    assert.equal(decodeFetchJwtBundleResponse(FetchJwtBundle.responseSerialize({ spiffe_bundle: Buffer.from('{}') })).bundleJson, '{}');
  });
});

