/**
 * Strict decoding of certificate PEM and DER input. Internal to `spiffe/`; the public entry
 * points (`parseCertificatesPem`, `parseX509Svid`, `parseX509BundlePem`) wrap failures in their
 * own error classes, which is why callers pass a `fail` function.
 *
 * PEM is decoded here rather than with `pki/pem.ts`'s `decodePem` on purpose: that decoder skips
 * a block it cannot match (bad characters, no END line) and accepts any label, whereas a peer's or
 * a bundle file's certificates must fail loudly with rule `pem` when any block is malformed.
 */
import { X509Certificate } from 'node:crypto';
import { expectElement, TAG } from '../pki/der.js';

/** Creates the caller's coded error; `rule` is one of `pem`, `der`, `no-certificates`. */
export type DecodeFailure = (message: string, rule: 'pem' | 'der' | 'no-certificates', cause?: unknown) => Error;

const BEGIN = '-----BEGIN ';
const END = '-----END ';
const DASHES = '-----';
const BASE64_LINE = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Decodes every `CERTIFICATE` block of `pem`, in order. Text outside blocks is ignored
 * (RFC 7468 explanatory text, e.g. OpenSSL's "Bag Attributes"); any other block type, a
 * malformed or unterminated block, or no block at all is an error.
 */
export function decodeCertificatesPem(pem: string, fail: DecodeFailure): X509Certificate[] {
  if (typeof pem !== 'string') throw new TypeError('PEM input must be a string');
  const certs: X509Certificate[] = [];
  // Splitting on a fixed pattern is linear; the per-line checks below are anchored and
  // have no nested quantifiers, so hostile input cannot make this backtrack.
  const lines = pem.split(/\r?\n/);
  let label: string | undefined;
  let body: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (label === undefined) {
      if (!line.startsWith(BEGIN)) continue;
      const found = blockLabel(line, BEGIN);
      if (found === undefined) throw fail(`malformed PEM header on line ${i + 1}`, 'pem');
      if (found !== 'CERTIFICATE') {
        throw fail(`unexpected PEM block "${found}" on line ${i + 1}; only CERTIFICATE blocks are allowed`, 'pem');
      }
      label = found;
      body = [];
      continue;
    }
    if (line.startsWith(END)) {
      if (blockLabel(line, END) !== label) {
        throw fail(`PEM block ending on line ${i + 1} does not match its header`, 'pem');
      }
      certs.push(decodeDer(base64Body(body.join(''), i + 1, fail), certs.length, fail));
      label = undefined;
      continue;
    }
    if (!BASE64_LINE.test(line)) throw fail(`invalid base64 in PEM block on line ${i + 1}`, 'pem');
    body.push(line);
  }
  if (label !== undefined) throw fail('unterminated PEM block', 'pem');
  if (certs.length === 0) throw fail('no CERTIFICATE PEM block found', 'no-certificates');
  return certs;
}

function blockLabel(line: string, prefix: string): string | undefined {
  if (!line.endsWith(DASHES) || line.length < prefix.length + DASHES.length) return undefined;
  return line.slice(prefix.length, line.length - DASHES.length);
}

function base64Body(b64: string, line: number, fail: DecodeFailure): Buffer {
  const der = Buffer.from(b64, 'base64');
  // Node's decoder skips junk silently; re-encoding catches padding in the middle and the like.
  if (der.length === 0 || der.toString('base64') !== b64) {
    throw fail(`invalid base64 in the PEM block ending on line ${line}`, 'pem');
  }
  return der;
}

/** Parses exactly one DER certificate; trailing bytes are an error, not ignored. */
export function decodeDer(der: Uint8Array, index: number, fail: DecodeFailure): X509Certificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (err) {
    throw fail(`certificate ${index} is not a valid DER X.509 certificate`, 'der', err);
  }
  if (cert.raw.length !== der.length) {
    throw fail(`certificate ${index} has ${der.length - cert.raw.length} trailing bytes`, 'der');
  }
  return cert;
}

/**
 * Splits concatenated DER certificates (as in go-spiffe's ParseRaw) by reading each outer
 * SEQUENCE header with the strict reader of `pki/der.ts`, then parses each one.
 */
export function decodeConcatenatedDer(bytes: Uint8Array, fail: DecodeFailure): X509Certificate[] {
  const certs: X509Certificate[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    let end: number;
    try {
      end = expectElement(bytes, offset, TAG.SEQUENCE).end;
    } catch (err) {
      throw fail(`certificate ${certs.length} is not a valid DER X.509 certificate`, 'der', err);
    }
    certs.push(decodeDer(bytes.subarray(offset, end), certs.length, fail));
    offset = end;
  }
  if (certs.length === 0) throw fail('no certificates given', 'no-certificates');
  return certs;
}

/** True if `bytes` starts like DER (a SEQUENCE) rather than PEM text. */
export function looksLikeDer(bytes: Uint8Array): boolean {
  return bytes[0] === 0x30;
}
