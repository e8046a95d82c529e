/**
 * The few protobuf messages a gRPC client of meshca sends and reads, encoded by hand (protobuf
 * encoding guide: varints, length-delimited fields, unknown fields skipped). The agent's only
 * calls are Istio's CreateCertificate and the JWT-SVID call beside it; carrying protobufjs,
 * proto-loader and grpc-js for them cost the sidecar ~4 MB of heap and most of its start-up.
 * The CA's server side still uses grpc-js and the .proto files, so every field number here is
 * checked against them in test/unit/transport/protobuf-wire.test.ts.
 */

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH = 2;
const WIRE_FIXED32 = 5;

/** A message that does not decode: truncated, a varint too long, a group, a bad wire type. */
export class ProtobufDecodeError extends Error {
  override readonly name = 'ProtobufDecodeError';
}

export class MessageWriter {
  readonly #parts: Buffer[] = [];

  /** A non-negative integer field (int32/int64/uint64), omitted at its proto3 default 0. */
  uint(field: number, value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`field ${field}: ${value} is not a non-negative safe integer`);
    if (value === 0) return this;
    this.#parts.push(varint(field * 8 + WIRE_VARINT), varint(value));
    return this;
  }

  bool(field: number, value: boolean): this {
    return this.uint(field, value ? 1 : 0);
  }

  /** A string field, omitted at its proto3 default ''. */
  string(field: number, value: string): this {
    if (value === '') return this;
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  /** A bytes or embedded-message field (always written: an empty message still says "present"). */
  bytes(field: number, value: Uint8Array): this {
    this.#parts.push(varint(field * 8 + WIRE_LENGTH), varint(value.length), Buffer.from(value.buffer, value.byteOffset, value.length));
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

function varint(value: number): Buffer {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}

export interface Field {
  readonly number: number;
  readonly wireType: number;
  /** Varint fields: the value (exact up to 2^53). */
  readonly int: number;
  /** Length-delimited fields: the bytes (a view into the message). */
  readonly bytes: Buffer;
}

/** The fields of one message in wire order; repeated fields appear once per element. */
export function* readFields(message: Buffer): Generator<Field> {
  let at = 0;
  const readVarint = (): number => {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (at >= message.length) throw new ProtobufDecodeError('truncated varint');
      const byte = message[at++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 0x80;
    }
    throw new ProtobufDecodeError('varint longer than 10 bytes');
  };
  const empty = message.subarray(0, 0);
  while (at < message.length) {
    const key = readVarint();
    const number = Math.floor(key / 8);
    const wireType = key % 8;
    if (number < 1) throw new ProtobufDecodeError('field number 0');
    switch (wireType) {
      case WIRE_VARINT:
        yield { number, wireType, int: readVarint(), bytes: empty };
        break;
      case WIRE_LENGTH: {
        const length = readVarint();
        if (length > message.length - at) throw new ProtobufDecodeError(`field ${number}: length ${length} runs past the message`);
        yield { number, wireType, int: 0, bytes: message.subarray(at, at + length) };
        at += length;
        break;
      }
      case WIRE_FIXED64:
      case WIRE_FIXED32: {
        const size = wireType === WIRE_FIXED64 ? 8 : 4;
        if (size > message.length - at) throw new ProtobufDecodeError(`field ${number}: truncated fixed-width value`);
        at += size;
        yield { number, wireType, int: 0, bytes: empty };
        break;
      }
      default:
        throw new ProtobufDecodeError(`field ${number}: unsupported wire type ${wireType}`);
    }
  }
}

/** A string field's value; a string sent with another wire type is a malformed message. */
export function fieldString(field: Field): string {
  if (field.wireType !== WIRE_LENGTH) throw new ProtobufDecodeError(`field ${field.number}: expected a string`);
  return field.bytes.toString('utf8');
}

/** `istio.v1.auth.IstioCertificateRequest` (ca.proto): csr = 1, validity_duration = 3. */
export function encodeIstioCertificateRequest(request: { readonly csr: string; readonly validitySeconds: number }): Buffer {
  return new MessageWriter().string(1, request.csr).uint(3, request.validitySeconds).finish();
}

/** `istio.v1.auth.IstioCertificateResponse`: repeated string cert_chain = 1. */
export function decodeIstioCertificateResponse(message: Buffer): { certChain: string[] } {
  const certChain: string[] = [];
  for (const field of readFields(message)) if (field.number === 1) certChain.push(fieldString(field));
  return { certChain };
}

/** `meshca.v1.MintJwtSvidRequest` (proto/meshca/v1/jwt_svid.proto): repeated audience = 1, ttl_seconds = 2. */
export function encodeMintJwtSvidRequest(request: { readonly audience: readonly string[]; readonly ttlSeconds?: number }): Buffer {
  const writer = new MessageWriter();
  for (const audience of request.audience) writer.bytes(1, Buffer.from(audience, 'utf8'));
  return writer.uint(2, request.ttlSeconds ?? 0).finish();
}

export function decodeMintJwtSvidRequest(message: Buffer): { audience: string[]; ttlSeconds: number } {
  const audience: string[] = [];
  let ttlSeconds = 0;
  for (const field of readFields(message)) {
    if (field.number === 1) audience.push(fieldString(field));
    else if (field.number === 2 && field.wireType === WIRE_VARINT) ttlSeconds = field.int;
  }
  return { audience, ttlSeconds };
}

/** `meshca.v1.MintJwtSvidResponse`: spiffe_id = 1, token = 2. */
export function encodeMintJwtSvidResponse(response: { readonly spiffeId: string; readonly token: string }): Buffer {
  return new MessageWriter().string(1, response.spiffeId).string(2, response.token).finish();
}

export function decodeMintJwtSvidResponse(message: Buffer): { spiffeId: string; token: string } {
  let spiffeId = '';
  let token = '';
  for (const field of readFields(message)) {
    if (field.number === 1) spiffeId = fieldString(field);
    else if (field.number === 2) token = fieldString(field);
  }
  return { spiffeId, token };
}

/** `meshca.v1.FetchJwtBundleResponse`: spiffe_bundle = 1 (the JWKS JSON). */
export function encodeFetchJwtBundleResponse(bundleJson: string): Buffer {
  return new MessageWriter().bytes(1, Buffer.from(bundleJson, 'utf8')).finish();
}

export function decodeFetchJwtBundleResponse(message: Buffer): { bundleJson: string } {
  let bundleJson = '';
  for (const field of readFields(message)) if (field.number === 1 && field.wireType === WIRE_LENGTH) bundleJson = field.bytes.toString('utf8');
  return { bundleJson };
}
