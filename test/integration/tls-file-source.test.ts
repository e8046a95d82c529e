import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import type { IdentityError } from '../../src/errors.js';
import { writeFileAtomic } from '../../src/files/atomic-write.js';
import { parseTrustDomain } from '../../src/spiffe/index.js';
import { createHttpsServer, createMtlsAgent, createStaticX509Source, createX509SourceFromFiles, getPeerSpiffeId } from '../../src/tls/index.js';
import type { FileX509Source } from '../../src/tls/index.js';
import { chainPem, createTestIntermediate, createTestLeaf } from '../helpers/test-ca.js';
import {
  allowId,
  bundleSet,
  closeServer,
  createTestDomain,
  createTestSvid,
  get,
  listen,
  localCertificateFingerprint,
  nextUpdate,
} from './tls-fixtures.js';

const domain = await createTestDomain('a.test');
const intermediate = await createTestIntermediate(domain.root);
const first = await createTestLeaf(intermediate, { uris: ['spiffe://a.test/ns/default/sa/api'] });
const second = await createTestLeaf(intermediate, { uris: ['spiffe://a.test/ns/default/sa/api'] });
const dirs: string[] = [];

after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

interface Files {
  readonly dir: string;
  readonly certChainPath: string;
  readonly keyPath: string;
  readonly bundlePath: string;
}

/** Writes the agent's three files the way the agent does (atomic renames). */
async function agentFiles(leaf = first): Promise<Files> {
  const dir = await mkdtemp(join(tmpdir(), 'meshca-svid-'));
  dirs.push(dir);
  const files = {
    dir,
    certChainPath: join(dir, 'cert-chain.pem'),
    keyPath: join(dir, 'key.pem'),
    bundlePath: join(dir, 'root-cert.pem'),
  };
  await writeFileAtomic(files.certChainPath, chainPem(leaf, intermediate));
  await writeFileAtomic(files.keyPath, leaf.keyPem, 0o600);
  await writeFileAtomic(files.bundlePath, domain.root.pem);
  return files;
}

function errors(): { onError: (err: Error) => void; next: () => Promise<Error> } {
  const queue: Error[] = [];
  const waiters: Array<(err: Error) => void> = [];
  return {
    onError: (err) => {
      const waiter = waiters.shift();
      if (waiter) waiter(err);
      else queue.push(err);
    },
    next: () => {
      const queued = queue.shift();
      return queued ? Promise.resolve(queued) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

describe('createX509SourceFromFiles', () => {
  it("loads the agent's cert-chain.pem, key.pem and root-cert.pem", async () => {
    const files = await agentFiles();
    const source = await createX509SourceFromFiles({ ...files, trustDomain: 'a.test', watch: false });
    try {
      const svid = source.getX509Svid();
      assert.equal(svid.id.toString(), 'spiffe://a.test/ns/default/sa/api');
      assert.equal(svid.certificates.length, 2);
      assert.ok(svid.privateKey);
      assert.ok(source.getX509BundleForTrustDomain(parseTrustDomain('a.test'))?.hasAuthority(domain.root.cert));
      assert.equal(source.getX509Bundles().length, 1);
    } finally {
      await source.close();
    }
  });

  it('rejects unusable files with the parser error', async () => {
    const files = await agentFiles();
    await writeFile(files.keyPath, second.keyPem);
    await assert.rejects(createX509SourceFromFiles({ ...files, trustDomain: 'a.test', watch: false }), (err: IdentityError) => {
      assert.equal(err.code, 'ERR_SVID_INVALID');
      assert.equal(err.rule, 'key-mismatch');
      return true;
    });
    await assert.rejects(createX509SourceFromFiles({ ...files, keyPath: join(files.dir, 'missing.pem'), trustDomain: 'a.test' }), {
      code: 'ENOENT',
    });
  });

  it('reload() reports whether the material changed', async () => {
    const files = await agentFiles();
    const source = await createX509SourceFromFiles({ ...files, trustDomain: 'a.test', watch: false });
    try {
      assert.equal(await source.reload(), false);
      await writeFileAtomic(files.certChainPath, chainPem(second, intermediate));
      await writeFileAtomic(files.keyPath, second.keyPem);
      const updated = nextUpdate(source);
      assert.equal(await source.reload(), true);
      await updated;
      assert.equal(source.getX509Svid().certificates[0]!.fingerprint256, second.cert.fingerprint256);
    } finally {
      await source.close();
    }
  });

  it('follows a rotation written to disk, ignoring the half-written state in between', async () => {
    const files = await agentFiles();
    const { onError, next } = errors();
    const source: FileX509Source = await createX509SourceFromFiles({ ...files, trustDomain: 'a.test', debounceMs: 5, onError });
    try {
      // The new chain alone does not match the old key: the old SVID stays in use.
      await writeFileAtomic(files.certChainPath, chainPem(second, intermediate));
      const err = (await next()) as IdentityError;
      assert.equal(err.rule, 'key-mismatch');
      assert.equal(source.getX509Svid().certificates[0]!.fingerprint256, first.cert.fingerprint256);
      const updated = nextUpdate(source);
      await writeFileAtomic(files.keyPath, second.keyPem, 0o600);
      await updated;
      assert.equal(source.getX509Svid().certificates[0]!.fingerprint256, second.cert.fingerprint256);
    } finally {
      await source.close();
    }
  });

  it('lets an https server follow the files: new connections get the rotated certificate', async () => {
    const files = await agentFiles();
    // The key lands before its chain, so one reload in between may fail: expected, not a warning.
    const source = await createX509SourceFromFiles({ ...files, trustDomain: 'a.test', debounceMs: 5, onError: () => undefined });
    const server = createHttpsServer(source, {}, (request, response) => {
      response.setHeader('x-server-cert', localCertificateFingerprint(request.socket as TLSSocket));
      response.end(getPeerSpiffeId(request).toString());
    });
    const port = await listen(server);
    const client = createStaticX509Source({ svid: (await createTestSvid(domain, '/client')).svid, bundles: bundleSet(domain) });
    const agent = createMtlsAgent(client, { authorizer: allowId('spiffe://a.test/ns/default/sa/api') });
    try {
      const before = await get(port, agent);
      assert.equal(before.body, 'spiffe://a.test/client');
      assert.equal(before.headers?.['x-server-cert'], first.cert.fingerprint256);
      const updated = nextUpdate(source);
      await writeFileAtomic(files.keyPath, second.keyPem, 0o600);
      await writeFileAtomic(files.certChainPath, chainPem(second, intermediate));
      await updated;
      const afterRotation = await get(port, agent);
      assert.equal(afterRotation.status, 200);
      assert.equal(afterRotation.headers?.['x-server-cert'], second.cert.fingerprint256);
    } finally {
      agent.destroy();
      await closeServer(server);
      await source.close();
    }
  });
});
