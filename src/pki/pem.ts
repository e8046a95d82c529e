/**
 * PEM armour (RFC 7468), strict where it matters: every BEGIN must close with its END over a
 * base64 body, so a truncated or corrupted block is an error instead of silently missing (a
 * root dropped from root-cert.pem would otherwise go unnoticed). Labels are the caller's check.
 */

export interface PemBlock {
  readonly label: string;
  readonly der: Uint8Array;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n([A-Za-z0-9+/=\r\n\t ]*?)-----END ([A-Z0-9 ]{1,40})-----/g;

export class PemError extends Error {
  override readonly name = 'PemError';
}

/** Decodes every PEM block in `text`. Text outside blocks (comments, as openssl writes) is ignored. */
export function decodePem(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  const begins = text.match(/-----BEGIN /g)?.length ?? 0;
  for (const match of text.matchAll(BLOCK)) {
    const [, label, body, endLabel] = match;
    if (label !== endLabel) throw new PemError(`PEM block BEGIN ${label} ends with END ${endLabel}`);
    const compact = body!.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 !== 0) {
      throw new PemError(`PEM block ${label} has invalid base64`);
    }
    blocks.push({ label: label!, der: new Uint8Array(Buffer.from(compact, 'base64')) });
  }
  if (blocks.length !== begins) {
    throw new PemError(`${begins - blocks.length} of ${begins} PEM blocks are malformed or not terminated`);
  }
  return blocks;
}

export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}
