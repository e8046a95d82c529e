import { createHash, type X509Certificate } from 'node:crypto';
import type { SpiffeId } from '../spiffe/spiffe-id.js';

export const XFCC_HEADER = 'x-forwarded-client-cert';

/**
 * The `x-forwarded-client-cert` value Envoy sends upstream: who terminated TLS (`By`), a hash of
 * the client certificate, and the client's SPIFFE ID (`URI`). Values are quoted only when they
 * contain a separator, as Envoy does.
 */
export function formatXfcc(server: SpiffeId, client: SpiffeId, clientLeaf: X509Certificate | undefined): string {
  const parts = [`By=${server.toString()}`];
  if (clientLeaf) parts.push(`Hash=${createHash('sha256').update(clientLeaf.raw).digest('hex')}`);
  parts.push(`URI=${client.toString()}`);
  return parts.join(';');
}
