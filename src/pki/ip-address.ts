/**
 * IP addresses as the 4 or 16 bytes of an X.509 iPAddress name (RFC 5280 4.2.1.6), parsed
 * strictly: dotted-quad IPv4 without leading zeros, IPv6 in RFC 4291 text form (one `::`, an
 * optional dotted-quad tail), no zone identifiers.
 */

const V4_OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

function parseV4(text: string): number[] | undefined {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => V4_OCTET.test(p))) return undefined;
  return parts.map(Number);
}

function parseV6(text: string): number[] | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (part: string, last: boolean): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const items = part.split(':');
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (last && i === items.length - 1 && item.includes('.')) {
        const v4 = parseV4(item);
        if (v4 === undefined) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(item)) {
        out.push(parseInt(item, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const compressed = halves.length === 2;
  const head = groups(halves[0]!, !compressed);
  const tail = compressed ? groups(halves[1]!, true) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (compressed ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array<number>(compressed ? missing : 0).fill(0), ...tail];
  const bytes: number[] = [];
  for (const g of all) bytes.push(g >> 8, g & 0xff);
  return bytes;
}

/** The address's bytes, or undefined when `text` is not an IP address. */
export function ipAddressBytes(text: string): Uint8Array | undefined {
  const bytes = parseV4(text) ?? (text.includes(':') ? parseV6(text) : undefined);
  return bytes === undefined ? undefined : Uint8Array.from(bytes);
}

export function isIpAddress(text: string): boolean {
  return ipAddressBytes(text) !== undefined;
}
