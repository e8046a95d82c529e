/**
 * Shared set-up for the mTLS integration tests: trust domains with roots made at test time,
 * SVID sources, servers on 127.0.0.1:0, and clients that report what happened instead of
 * throwing, so tests assert on outcomes (status, body, error code).
 */
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:net';
import * as tls from 'node:tls';
import { authorizeId } from '../../src/policy/authorizer.js';
import { parseSpiffeId, parseTrustDomain, parseX509Svid, X509Bundle, X509BundleSet } from '../../src/spiffe/index.js';
import type { X509Svid } from '../../src/spiffe/index.js';
import type { Authorizer, X509Source } from '../../src/tls/index.js';
import type { TestCertificate, TestCertificateOptions, TestKeyAlg } from '../helpers/test-ca.js';
import { createTestLeaf, createTestRoot } from '../helpers/test-ca.js';

export interface TestDomain {
  readonly name: string;
  readonly root: TestCertificate;
  readonly bundle: X509Bundle;
}

export async function createTestDomain(name: string, keyAlg?: TestKeyAlg): Promise<TestDomain> {
  const root = await createTestRoot({ trustDomain: name, ...(keyAlg ? { keyAlg } : {}) });
  return { name, root, bundle: new X509Bundle(parseTrustDomain(name), [root.cert]) };
}

export function bundleSet(...domains: readonly TestDomain[]): X509BundleSet {
  return new X509BundleSet(domains.map((d) => d.bundle));
}

export interface TestSvid {
  readonly leaf: TestCertificate;
  readonly svid: X509Svid;
}

/** A leaf for `spiffe://<domain>/<path>` signed by the domain's root, parsed as an SVID. */
export async function createTestSvid(domain: TestDomain, path: string, options: TestCertificateOptions = {}): Promise<TestSvid> {
  const leaf = await createTestLeaf(domain.root, { uris: [`spiffe://${domain.name}${path}`], ...options });
  return { leaf, svid: parseX509Svid(leaf.pem, leaf.keyPem) };
}

/** Allows exactly one SPIFFE ID, given as a string. */
export function allowId(expected: string): Authorizer {
  return authorizeId(parseSpiffeId(expected));
}

/** Resolves on the source's next `update` event. */
export function nextUpdate(source: X509Source): Promise<void> {
  return new Promise((resolve) => {
    const listener = (): void => {
      source.off('update', listener);
      resolve();
    };
    source.on('update', listener);
  });
}

/** Fingerprint of the certificate this side of `socket` presented. */
export function localCertificateFingerprint(socket: tls.TLSSocket): string {
  return (socket.getCertificate() as tls.PeerCertificate | null)?.fingerprint256 ?? '';
}

export async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** Closes the server, dropping kept-alive connections so the test does not wait for them. */
export async function closeServer(server: Server): Promise<void> {
  const closed = once(server, 'close');
  server.close();
  (server as Partial<https.Server>).closeAllConnections?.();
  await closed;
}

export interface HttpOutcome {
  readonly status?: number;
  readonly headers?: IncomingMessage['headers'];
  readonly body?: string;
  readonly error?: NodeJS.ErrnoException & { rule?: string };
}

/** One GET through `agent`; resolves with the response or the error, never rejects. */
export function get(port: number, agent: https.Agent, path = '/'): Promise<HttpOutcome> {
  return new Promise((resolve) => {
    const request = https.get({ host: '127.0.0.1', port, path, agent }, (response: IncomingMessage) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body }));
      response.on('error', (error: NodeJS.ErrnoException) => resolve({ error }));
    });
    request.on('error', (error: NodeJS.ErrnoException) => resolve({ error }));
  });
}

export interface RawOutcome {
  /** What the server sent back, if anything. */
  readonly response: string;
  readonly error?: NodeJS.ErrnoException;
  /** True if the client finished its side of the handshake. */
  readonly secureConnected: boolean;
  readonly protocol?: string | null;
}

/**
 * A plain node TLS client (no meshca code) sending one HTTP/1.1 request; for presenting
 * certificates meshca would refuse to load, or none at all.
 */
export function rawRequest(port: number, options: tls.ConnectionOptions): Promise<RawOutcome> {
  return new Promise((resolve) => {
    let response = '';
    let secureConnected = false;
    let protocol: string | null | undefined;
    let error: NodeJS.ErrnoException | undefined;
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => {
      secureConnected = true;
      protocol = socket.getProtocol();
      socket.write('GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n');
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (response += chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err));
    socket.on('close', () => resolve({ response, secureConnected, protocol, ...(error ? { error } : {}) }));
  });
}
