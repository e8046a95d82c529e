/**
 * A minimal DER reader and writer: just what certificate issuance needs. The generic ASN.1
 * schema libraries are ~50x slower on the issuance hot path (see shared/perf-baselines.md), and
 * the structures here are few and fixed.
 */

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Thrown by the reader on any malformed encoding; callers wrap it in a domain error. */
export class DerError extends Error {
  override readonly name = 'DerError';
}

export interface DerElement {
  readonly tag: number;
  /** Offset of the first byte of the tag. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly contentStart: number;
  /** Offset one past the last content byte. */
  readonly end: number;
}

/** Reads one TLV at `offset` within `buf[..limit]`, strictly: definite, minimal lengths only. */
export function readElement(buf: Uint8Array, offset: number, limit: number = buf.length): DerElement {
  if (offset + 2 > limit) throw new DerError('truncated element');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported');
  let pos = offset + 1;
  const first = buf[pos++]!;
  let length: number;
  if (first < 0x80) {
    length = first;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw new DerError('indefinite length is not DER');
    if (count > 4) throw new DerError('length too large');
    if (pos + count > limit) throw new DerError('truncated length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[pos++]!;
    if (length < 0x80 || (count > 1 && buf[pos - count] === 0)) {
      throw new DerError('non-minimal length encoding');
    }
  }
  const end = pos + length;
  if (end > limit) throw new DerError('element overruns its container');
  return { tag, start: offset, contentStart: pos, end };
}

/** Reads an element and checks its tag. */
export function expectElement(buf: Uint8Array, offset: number, tag: number, limit?: number): DerElement {
  const el = readElement(buf, offset, limit);
  if (el.tag !== tag) {
    throw new DerError(`expected tag 0x${tag.toString(16)}, found 0x${el.tag.toString(16)}`);
  }
  return el;
}

/** The children of a constructed element, in order. */
export function readChildren(buf: Uint8Array, parent: DerElement): DerElement[] {
  const out: DerElement[] = [];
  let pos = parent.contentStart;
  while (pos < parent.end) {
    const el = readElement(buf, pos, parent.end);
    out.push(el);
    pos = el.end;
  }
  return out;
}

export function contentOf(buf: Uint8Array, el: DerElement): Uint8Array {
  return buf.subarray(el.contentStart, el.end);
}

export function bytesOf(buf: Uint8Array, el: DerElement): Uint8Array {
  return buf.subarray(el.start, el.end);
}

/** Decodes an OBJECT IDENTIFIER's content to dotted form. */
export function decodeOid(content: Uint8Array): string {
  if (content.length === 0) throw new DerError('empty OID');
  const parts: number[] = [];
  let value = 0;
  for (let i = 0; i < content.length; i++) {
    const byte = content[i]!;
    if (value === 0 && byte === 0x80) throw new DerError('non-minimal OID arc');
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerError('OID arc too large');
    if ((byte & 0x80) === 0) {
      if (parts.length === 0) {
        const top = value < 40 ? 0 : value < 80 ? 1 : 2;
        parts.push(top, value - top * 40);
      } else {
        parts.push(value);
      }
      value = 0;
    } else if (i === content.length - 1) {
      throw new DerError('truncated OID');
    }
  }
  return parts.join('.');
}

/** The bytes of a BIT STRING with no unused bits (signatures, keys). */
export function readBitStringBytes(buf: Uint8Array, el: DerElement): Uint8Array {
  if (el.tag !== TAG.BIT_STRING) throw new DerError('expected BIT STRING');
  if (el.end - el.contentStart < 1) throw new DerError('empty BIT STRING');
  if (buf[el.contentStart] !== 0) throw new DerError('BIT STRING with unused bits');
  return buf.subarray(el.contentStart + 1, el.end);
}

// ---------------------------------------------------------------------------------------------
// Writer

export function encodeLength(length: number): Uint8Array {
  if (length < 0x80) return Uint8Array.of(length);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Uint8Array.from([0x80 | bytes.length, ...bytes]);
}

/** Encodes one TLV from already-encoded content parts. */
export function encodeTlv(tag: number, ...parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const header = encodeLength(length);
  const out = new Uint8Array(1 + header.length + length);
  out[0] = tag;
  out.set(header, 1);
  let pos = 1 + header.length;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

export const encodeSequence = (...parts: readonly Uint8Array[]): Uint8Array => encodeTlv(TAG.SEQUENCE, ...parts);

export function encodeOid(dotted: string): Uint8Array {
  const arcs = dotted.split('.').map((a) => {
    if (!/^\d+$/.test(a)) throw new TypeError(`invalid OID ${dotted}`);
    return Number(a);
  });
  if (arcs.length < 2) throw new TypeError(`invalid OID ${dotted}`);
  const bytes: number[] = [];
  const pushArc = (arc: number): void => {
    const chunk: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) chunk.unshift(0x80 | (n & 0x7f));
    bytes.push(...chunk);
  };
  pushArc(arcs[0]! * 40 + arcs[1]!);
  for (const arc of arcs.slice(2)) pushArc(arc);
  return encodeTlv(TAG.OID, Uint8Array.from(bytes));
}

/** Encodes a non-negative big-endian magnitude as a DER INTEGER (minimal, positive). */
export function encodeUnsignedInteger(magnitude: Uint8Array): Uint8Array {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const trimmed = magnitude.subarray(i);
  const pad = trimmed.length === 0 || (trimmed[0]! & 0x80) !== 0;
  return pad ? encodeTlv(TAG.INTEGER, Uint8Array.of(0), trimmed) : encodeTlv(TAG.INTEGER, trimmed);
}

export function encodeSmallInteger(value: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) throw new TypeError('integer out of range');
  const bytes: number[] = [];
  for (let n = value; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return encodeUnsignedInteger(Uint8Array.from(bytes.length ? bytes : [0]));
}

export function encodeBitString(bytes: Uint8Array, unusedBits = 0): Uint8Array {
  return encodeTlv(TAG.BIT_STRING, Uint8Array.of(unusedBits), bytes);
}

export const encodeOctetString = (bytes: Uint8Array): Uint8Array => encodeTlv(TAG.OCTET_STRING, bytes);

export const DER_TRUE = Uint8Array.of(TAG.BOOLEAN, 1, 0xff);
export const DER_NULL = Uint8Array.of(TAG.NULL, 0);

const ascii = new TextEncoder();

export function encodeString(tag: number, value: string): Uint8Array {
  return encodeTlv(tag, ascii.encode(value));
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/**
 * RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; always Zulu, seconds, no
 * fractions.
 */
export function encodeTime(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  const rest =
    pad2(date.getUTCMonth() + 1) +
    pad2(date.getUTCDate()) +
    pad2(date.getUTCHours()) +
    pad2(date.getUTCMinutes()) +
    pad2(date.getUTCSeconds()) +
    'Z';
  if (year >= 1950 && year < 2050) return encodeString(TAG.UTC_TIME, pad2(year % 100) + rest);
  if (year < 0 || year > 9999) throw new TypeError('date out of X.509 range');
  return encodeString(TAG.GENERALIZED_TIME, String(year).padStart(4, '0') + rest);
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}
