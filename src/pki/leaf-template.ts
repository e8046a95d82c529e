import { OID, type SignatureAlgorithm } from './algorithms.js';
import {
  concatBytes,
  DER_TRUE,
  encodeBitString,
  encodeOctetString,
  encodeOid,
  encodeSequence,
  encodeTime,
  encodeTlv,
  encodeUnsignedInteger,
  TAG,
} from './der.js';

/**
 * The X.509-SVID leaf as a prepared template. Everything that is the same for every leaf an
 * issuer signs (version, algorithm, issuer name, constant extensions) is encoded once; each
 * issuance encodes only serial, validity, key and SAN. This is the hot path of the CA.
 */
export interface LeafFields {
  /** Positive serial number magnitude, big-endian. */
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SubjectPublicKeyInfo DER, verbatim from the CSR. */
  readonly spki: Uint8Array;
  /** The SPIFFE ID, already validated; optional only for serving certificates. */
  readonly uri?: string;
  /** DNS names, for the CA's own serving certificates; workload SVIDs carry none. */
  readonly dnsNames?: readonly string[];
  /** IP addresses (4 or 16 bytes each), for serving certificates dialled by address. */
  readonly ipAddresses?: readonly Uint8Array[];
  /** RSA keys also get keyEncipherment, as Istio issues them (TLS 1.2 RSA key exchange). */
  readonly keyEncipherment: boolean;
}

export interface LeafTemplateOptions {
  readonly signatureAlgorithm: SignatureAlgorithm;
  /** The issuer's subject Name DER, copied verbatim so name chaining matches byte for byte. */
  readonly issuerName: Uint8Array;
  /** The issuer's subjectKeyIdentifier, for the leaf's authorityKeyIdentifier. */
  readonly issuerKeyId: Uint8Array;
}

function extension(oid: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical
    ? encodeSequence(encodeOid(oid), DER_TRUE, encodeOctetString(value))
    : encodeSequence(encodeOid(oid), encodeOctetString(value));
}

// KeyUsage bits: digitalSignature is bit 0, keyEncipherment bit 2 (RFC 5280 4.2.1.3).
const KU_DIGITAL_SIGNATURE = extension(OID.keyUsage, true, encodeBitString(Uint8Array.of(0x80), 7));
const KU_DIGITAL_SIGNATURE_KEY_ENCIPHERMENT = extension(OID.keyUsage, true, encodeBitString(Uint8Array.of(0xa0), 5));
const EKU_SERVER_CLIENT = extension(
  OID.extKeyUsage,
  false,
  encodeSequence(encodeOid(OID.serverAuth), encodeOid(OID.clientAuth)),
);
const BASIC_CONSTRAINTS_LEAF = extension(OID.basicConstraints, true, encodeSequence());
const VERSION_3 = encodeTlv(0xa0, encodeTlv(TAG.INTEGER, Uint8Array.of(2)));
const EMPTY_SUBJECT = encodeSequence();
const SAN_OID = encodeOid(OID.subjectAltName);

export class LeafTemplate {
  readonly signatureAlgorithm: SignatureAlgorithm;
  readonly #prefix: Uint8Array;
  readonly #fixedExtensionsEc: Uint8Array;
  readonly #fixedExtensionsRsa: Uint8Array;

  constructor(options: LeafTemplateOptions) {
    this.signatureAlgorithm = options.signatureAlgorithm;
    this.#prefix = concatBytes([options.signatureAlgorithm.identifier, options.issuerName]);
    const aki = extension(OID.authorityKeyIdentifier, false, encodeSequence(encodeTlv(0x80, options.issuerKeyId)));
    this.#fixedExtensionsEc = concatBytes([BASIC_CONSTRAINTS_LEAF, KU_DIGITAL_SIGNATURE, EKU_SERVER_CLIENT, aki]);
    this.#fixedExtensionsRsa = concatBytes([BASIC_CONSTRAINTS_LEAF, KU_DIGITAL_SIGNATURE_KEY_ENCIPHERMENT, EKU_SERVER_CLIENT, aki]);
  }

  /** Encodes the TBSCertificate for one leaf. */
  buildTbs(fields: LeafFields): Uint8Array {
    // The subject is empty, so RFC 5280 4.2.1.6 makes the SAN extension critical.
    const names: Uint8Array[] = [];
    if (fields.uri !== undefined) names.push(encodeTlv(0x86, Buffer.from(fields.uri, 'latin1')));
    for (const dns of fields.dnsNames ?? []) names.push(encodeTlv(0x82, Buffer.from(dns, 'latin1')));
    for (const ip of fields.ipAddresses ?? []) {
      if (ip.length !== 4 && ip.length !== 16) throw new TypeError('an IP address SAN is 4 or 16 bytes');
      names.push(encodeTlv(0x87, ip));
    }
    if (names.length === 0) throw new TypeError('a leaf needs a URI or DNS name');
    const san = encodeSequence(SAN_OID, DER_TRUE, encodeOctetString(encodeSequence(...names)));
    const extensions = encodeTlv(
      0xa3,
      encodeSequence(fields.keyEncipherment ? this.#fixedExtensionsRsa : this.#fixedExtensionsEc, san),
    );
    return encodeSequence(
      VERSION_3,
      encodeUnsignedInteger(fields.serial),
      this.#prefix,
      encodeSequence(encodeTime(fields.notBefore), encodeTime(fields.notAfter)),
      EMPTY_SUBJECT,
      fields.spki,
      extensions,
    );
  }

  /** Wraps a signed TBSCertificate into the Certificate DER. */
  assemble(tbs: Uint8Array, signature: Uint8Array): Uint8Array {
    return encodeSequence(tbs, this.signatureAlgorithm.identifier, encodeBitString(signature));
  }
}
