import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { CoreV1Api } from '@kubernetes/client-node';

import { AuthorityRotation } from '../../src/ca/authority-rotation.js';
import { CaInvalidError } from '../../src/errors.js';
import { loadAuthoritySnapshot, mirrorStoredAuthority } from '../../src/files/authority-slots.js';
import { loadOrCreateAuthoritySecret } from '../../src/k8s/authority-secret.js';
import { createSecretAuthorityStore } from '../../src/k8s/authority-secret-store.js';
import { createSelfSignedRoot } from '../../src/pki/authority.js';
import { parseTrustDomain } from '../../src/spiffe/trust-domain.js';
import { KubeApiServer } from '../fixtures/kube-api-server.js';

const td = parseTrustDomain('cluster.local');

describe('the CA Secret as the rotation store (against the loopback API server)', () => {
  let api: KubeApiServer;
  let dir: string;
  before(async () => {
    api = await KubeApiServer.start({ namespaces: ['meshca'] });
    dir = await mkdtemp(join(tmpdir(), 'meshca-secret-store-'));
    await loadOrCreateAuthoritySecret({
      kubeConfig: api.kubeConfig(),
      namespace: 'meshca',
      create: async () => {
        const root = await createSelfSignedRoot({ trustDomain: td.name, now: new Date() });
        return { ...root, rootPem: root.certPem };
      },
    });
  });
  after(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  const store = () => createSecretAuthorityStore({ kubeConfig: api.kubeConfig(), namespace: 'meshca' });
  const secretKeys = () => Object.keys((api.getObject('secrets', 'meshca', 'meshca-ca-secret') as unknown as { data: Record<string, string> }).data).sort();

  test('two replicas preparing at once: one prepared authority, the other told so; the Secret holds the slots', async () => {
    const now = new Date();
    const [a, b] = [new AuthorityRotation({ store: store(), trustDomain: td }), new AuthorityRotation({ store: store(), trustDomain: td })];
    const outcomes = await Promise.allSettled([a.prepare({ now }), b.prepare({ now })]);
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    assert.equal(won.length, 1, JSON.stringify(outcomes.map((o) => o.status)));
    assert.ok(lost[0]!.reason instanceof CaInvalidError && lost[0]!.reason.rule === 'already-prepared', String(lost[0]?.reason));
    assert.deepEqual(secretKeys(), ['authority-state.json', 'ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'next-ca-cert.pem', 'next-ca-key.pem', 'next-cert-chain.pem', 'next-root-cert.pem', 'root-cert.pem']);
    const status = await a.status(now);
    assert.equal(status.bundle.roots.length, 2, 'the loser did not add a third root');
    assert.equal(status.bundle.sequence, 2);
  });

  test('a write between the read and the replace (409) makes the decision again on the new contents', async () => {
    const admin = api.kubeConfig().makeApiClient(CoreV1Api);
    let decisions = 0;
    const s = store();
    await s.update(async (current) => {
      decisions++;
      if (decisions === 1) {
        // Someone else writes now: an operator labelling the Secret.
        const secret = await admin.readNamespacedSecret({ name: 'meshca-ca-secret', namespace: 'meshca' });
        await admin.replaceNamespacedSecret({ name: 'meshca-ca-secret', namespace: 'meshca', body: { ...secret, metadata: { ...secret.metadata, labels: { team: 'platform' } } } });
      }
      return { change: { state: { ...current.state!, sequence: current.state!.sequence + 1 } }, result: undefined };
    });
    assert.equal(decisions, 2);
    const secret = api.getObject('secrets', 'meshca', 'meshca-ca-secret') as unknown as { metadata: { labels: Record<string, string> } };
    assert.equal(secret.metadata.labels['team'], 'platform', 'the other write is kept');
    assert.equal((await s.read()).state?.sequence, 3);
  });

  test('a replica mirrors the Secret into its data dir: the same authority, prepared root and bundle; again is a no-op', async () => {
    const stored = await store().read();
    assert.equal(await mirrorStoredAuthority(dir, stored), 'changed');
    const snapshot = await loadAuthoritySnapshot(dir, { trustDomain: td, now: new Date() });
    const fromSecret = await new AuthorityRotation({ store: store(), trustDomain: td }).status(new Date());
    assert.equal(snapshot.authority.certificate.fingerprint256, fromSecret.authority.certificate.fingerprint256);
    assert.equal(snapshot.next?.authority.certificate.fingerprint256, fromSecret.next?.authority.certificate.fingerprint256);
    assert.deepEqual(snapshot.bundle.fingerprints, fromSecret.bundle.fingerprints);
    assert.equal(snapshot.bundle.sequence, fromSecret.bundle.sequence);
    assert.equal(await mirrorStoredAuthority(dir, stored), 'unchanged');
  });
});
