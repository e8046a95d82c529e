/**
 * `meshca ca rotate` and `meshca ca bundle`: operator entry points for CA rotation and for the
 * trust bundle a federated peer or an offline consumer needs.
 */
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import type { JWK } from 'jose';
import {
  AuthorityRotation,
  autoRotationStateOf,
  planAutoRotation,
  type AuthoritySnapshot,
  type NextAuthority,
  type RootSummary,
  type StoredAuthority,
  type RotationResult,
} from '../ca/authority-rotation.js';
import { JwtSvidIssuer } from '../ca/jwt-svid-issuer.js';
import { normalizeFingerprint } from '../ca/trust-bundle.js';
import { formatDuration, parseDurationSeconds } from '../config/duration.js';
import { ConfigError } from '../errors.js';
import { AUTHORITY_FILES } from '../files/authority-files.js';
import { readTextIfExists } from '../files/read-if-exists.js';
import { AUTHORITY_STATE_FILE, createFileAuthorityStore, loadAuthoritySnapshot, parseAuthorityState } from '../files/authority-slots.js';
import { isKeyKind, KEY_KINDS, type KeyKind } from '../pki/algorithms.js';
import { formatSpiffeBundleJwks } from '../spiffe/bundle-jwks.js';
import { parseTrustDomain, type TrustDomain } from '../spiffe/trust-domain.js';
import { dataDirOption, parseTrustDomainFlag, type CliIo } from './cli-common.js';

/** The CA's JWT-SVID key file (see ca-runtime.ts), read here only to publish its public half. */
const JWT_SIGNING_KEY_FILE = 'jwt-signing-key.json';

function trustDomainOption(): Option {
  return new Option('--trust-domain <name>', 'SPIFFE trust domain (default: the one recorded in the data directory)');
}

/**
 * The trust domain of a data directory: the flag, else $MESHCA_TRUST_DOMAIN, else the one
 * recorded by an earlier rotation, else the O= of a self-signed root (what `ca init` writes),
 * else cluster.local. A flag that disagrees with the recorded one is refused when loading.
 */
async function resolveTrustDomain(io: CliIo, dataDir: string, flag: string | undefined): Promise<TrustDomain> {
  const given = flag ?? io.env['MESHCA_TRUST_DOMAIN'];
  if (given !== undefined) return parseTrustDomainFlag(given);
  const stateText = await readTextIfExists(join(dataDir, AUTHORITY_STATE_FILE));
  if (stateText !== undefined) return parseTrustDomain(parseAuthorityState(stateText).trustDomain);
  const certPem = await readTextIfExists(join(dataDir, AUTHORITY_FILES.cert));
  if (certPem !== undefined) {
    try {
      const cert = new X509Certificate(certPem);
      const org = /^O=([^\n]+)$/.exec((cert.subject as string | undefined) ?? '')?.[1];
      if (cert.subject === cert.issuer && org) return parseTrustDomain(org);
    } catch {
      // Not a self-signed meshca root: fall through to the default.
    }
  }
  return parseTrustDomain('cluster.local');
}

function rootLine(root: RootSummary, role: string): string {
  return `${root.fingerprint}  ${role.padEnd(9)} ${root.subject}, valid until ${root.notAfter.toISOString()}`;
}

function describeBundle(result: RotationResult): string[] {
  const roleOf = (fp: string): string => {
    if (fp === result.activeRoot.fingerprint) return '(active)';
    if (result.next && fp === result.next.fingerprint) return '(next)';
    const retiring = result.retiring.find((r) => r.fingerprint === fp);
    return retiring ? '(retiring)' : '';
  };
  const lines = [`  bundle:       sequence ${result.sequence}, ${result.bundle.length} root${result.bundle.length === 1 ? '' : 's'}`];
  for (const root of result.bundle) lines.push(`                ${rootLine(root, roleOf(root.fingerprint))}`);
  for (const r of result.retiring) lines.push(`  retiring:     ${r.fingerprint} trusted until ${r.trustUntil.toISOString()}`);
  return lines;
}

function describeResult(result: RotationResult, now: Date): string {
  const lines: string[] = [];
  switch (result.operation) {
    case 'prepare':
      lines.push('Prepared a new authority: its root is published in the trust bundle and signs nothing yet');
      if (result.next) lines.push(`  next:         ${result.next.fingerprint} (${result.next.subject}, valid until ${result.next.notAfter.toISOString()})`);
      break;
    case 'activate':
      lines.push('Activated the prepared authority: new SVIDs are signed by it');
      lines.push(`  now signing:  ${result.active.fingerprint} (${result.active.subject})`);
      break;
    case 'retire':
      lines.push(result.changed ? `Retired ${result.removed.length} root${result.removed.length === 1 ? '' : 's'} from the trust bundle` : 'Nothing retired');
      break;
    case 'distrust':
      lines.push(result.changed ? 'Distrusted a root: it left the trust bundle now' : 'Nothing distrusted');
      break;
  }
  for (const root of result.added) lines.push(`  added:        ${root.fingerprint}`);
  for (const root of result.removed) lines.push(`  removed:      ${root.fingerprint}`);
  lines.push(...describeBundle(result));
  for (const r of result.retiring) {
    if (result.operation === 'activate') {
      lines.push(`  next step:    \`meshca ca rotate --retire\` after ${r.trustUntil.toISOString()} (in ${formatDuration((r.trustUntil.getTime() - now.getTime()) / 1000)})`);
    }
  }
  if (result.operation === 'prepare') {
    lines.push('  next step:    `meshca ca rotate --activate` once every relying party has fetched this bundle');
  }
  return `${lines.join('\n')}\n`;
}

function describeStatus(snapshot: AuthoritySnapshot, now: Date, rotation: AuthorityRotation): string {
  const active = snapshot.authority.certificate;
  const lines = [
    `Trust domain ${snapshot.trustDomain.name}`,
    `  active:       ${active.fingerprint256}${snapshot.state.active?.activatedAt ? ` (signing since ${snapshot.state.active.activatedAt.toISOString()})` : ''}`,
    `                valid until ${snapshot.authority.notAfter.toISOString()}`,
  ];
  if (snapshot.next) {
    lines.push(
      `  next:         ${snapshot.next.authority.certificate.fingerprint256} ` +
        (snapshot.next.publishedAt ? `(published ${snapshot.next.publishedAt.toISOString()})` : '(staged, not published)'),
    );
  }
  lines.push(`  bundle:       sequence ${snapshot.bundle.sequence}, ${snapshot.bundle.roots.length} root(s)`);
  for (const root of snapshot.bundle.roots) lines.push(`                ${root.fingerprint256}`);
  for (const r of snapshot.state.retiring) lines.push(`  retiring:     ${r.fingerprint} trusted until ${r.trustUntil.toISOString()}`);
  for (const d of snapshot.state.distrusted) lines.push(`  distrusted:   ${d.fingerprint} since ${d.at.toISOString()}`);
  const plan = planAutoRotation(autoRotationStateOf(snapshot), now, rotation.autoRotationOptions);
  lines.push(`  planned:      ${plan.action}${plan.at ? ` at ${plan.at.toISOString()}` : ''} (${plan.reason})`);
  for (const note of snapshot.notes) lines.push(`  note:         ${note}`);
  return `${lines.join('\n')}\n`;
}

interface RotateFlags {
  readonly prepare?: boolean;
  readonly activate?: boolean;
  readonly retire?: boolean;
  readonly distrust?: string;
  readonly force?: boolean;
  readonly dataDir: string;
  readonly key: string;
  readonly validity: string;
  readonly maxTtl: string;
  readonly propagationDelay: string;
  readonly trustDomain?: string;
  readonly kubernetes?: boolean;
  readonly namespace: string;
  readonly secret: string;
  readonly kubeconfig?: string;
  readonly rootConfigmap: string;
}

/**
 * The trust domain recorded in a stored authority (its state, else the O= of a self-signed
 * root), as `resolveTrustDomain` reads it from a data directory.
 */
function trustDomainOfStored(stored: StoredAuthority): TrustDomain | undefined {
  if (stored.state) return parseTrustDomain(stored.state.trustDomain);
  try {
    const cert = new X509Certificate(stored.active.certPem);
    const org = /^O=([^\n]+)$/.exec((cert.subject as string | undefined) ?? '')?.[1];
    if (cert.subject === cert.issuer && org) return parseTrustDomain(org);
  } catch {
    // not a self-signed meshca root
  }
  return undefined;
}

/** The store and activation gate of `--kubernetes`: the CA Secret, and every namespace's root ConfigMap. */
async function kubernetesRotationParts(io: CliIo, opts: RotateFlags) {
  const [{ createKubeConfig }, { createSecretAuthorityStore }, { findNamespacesWithoutRoot }] = await Promise.all([
    import('./ca-kubernetes.js'),
    import('../k8s/authority-secret-store.js'),
    import('../k8s/root-publisher.js'),
  ]);
  const kubeConfig = createKubeConfig(opts.kubeconfig);
  const store = createSecretAuthorityStore({ kubeConfig, namespace: opts.namespace, name: opts.secret });
  const given = opts.trustDomain ?? io.env['MESHCA_TRUST_DOMAIN'];
  const trustDomain = given !== undefined ? parseTrustDomainFlag(given) : (trustDomainOfStored(await store.read()) ?? parseTrustDomain('cluster.local'));
  const activationGate = async (next: NextAuthority): Promise<string | undefined> => {
    const missing = await findNamespacesWithoutRoot({ kubeConfig, fingerprint: next.anchor.fingerprint256, configMapName: opts.rootConfigmap });
    return missing.length === 0 ? undefined : `the ${opts.rootConfigmap} ConfigMap of ${missing.length} namespace(s) (${missing.slice(0, 5).join(', ')}) does not hold the prepared root yet`;
  };
  return { store, trustDomain, activationGate };
}

export function buildCaRotateCommand(io: CliIo): Command {
  return new Command('rotate')
    .description('rotate the CA without downtime: --prepare publishes a new root, --activate starts signing with it, --retire drops old roots')
    .option('--prepare', 'create a new root and publish it in the trust bundle (it signs nothing yet)')
    .option('--activate', 'sign with the prepared authority; the old root stays trusted until every SVID it signed expired')
    .option('--retire', 'drop roots whose SVIDs have all expired')
    .option('--distrust <sha256-fingerprint>', 'emergency: drop a compromised root from the bundle now')
    .option('--force', 'with --retire: drop retiring roots before their SVIDs expired; with --activate: do not wait for the root to reach every namespace')
    .addOption(new Option('--kubernetes', "rotate the CA in its Secret (the CA's --kubernetes mode): every replica follows it").env('MESHCA_KUBERNETES'))
    .addOption(new Option('--namespace <ns>', '--kubernetes: the CA namespace').env('POD_NAMESPACE').default('meshca'))
    .option('--secret <name>', '--kubernetes: the self-signed CA Secret', 'meshca-ca-secret')
    .addOption(new Option('--kubeconfig <path>', '--kubernetes: kubeconfig (default: in-cluster or $KUBECONFIG)'))
    .addOption(new Option('--root-configmap <name>', '--kubernetes: the root ConfigMap --activate checks in every namespace').env('MESHCA_ROOT_CONFIGMAP').default('meshca-root-cert'))
    .addOption(dataDirOption(io))
    .addOption(trustDomainOption())
    .addOption(new Option('--key <kind>', 'key type of a prepared root').choices([...KEY_KINDS]).default('ec-p256'))
    .option('--validity <duration>', 'lifetime of a prepared root', '87600h')
    .addOption(new Option('--max-ttl <duration>', 'longest SVID lifetime the CA issues').env('MESHCA_MAX_TTL').default('168h'))
    .option('--propagation-delay <duration>', 'how long a prepared root should be published before it signs', '1h')
    .action(async (opts: RotateFlags) => {
      const actions = [opts.prepare && '--prepare', opts.activate && '--activate', opts.retire && '--retire', opts.distrust !== undefined && '--distrust'].filter(
        (a): a is string => typeof a === 'string',
      );
      const problems: string[] = [];
      if (actions.length > 1) problems.push(`choose one of ${actions.join(', ')}`);
      if (opts.force && !opts.retire && !opts.activate) problems.push('--force applies to --retire and --activate only');
      let fingerprint: string | undefined;
      if (opts.distrust !== undefined) {
        try {
          fingerprint = normalizeFingerprint(opts.distrust);
        } catch (err) {
          problems.push(`--distrust: ${(err as Error).message}`);
        }
      }
      const seconds = (text: string, flag: string): number => {
        try {
          return parseDurationSeconds(text, flag);
        } catch (err) {
          problems.push(...(err as ConfigError).problems);
          return 0;
        }
      };
      const validitySeconds = seconds(opts.validity, '--validity');
      const maxSvidTtlSeconds = seconds(opts.maxTtl, '--max-ttl');
      const propagationDelaySeconds = seconds(opts.propagationDelay, '--propagation-delay');
      if (!isKeyKind(opts.key)) problems.push(`--key ${opts.key} is not one of ${KEY_KINDS.join(', ')}`);
      if (maxSvidTtlSeconds <= 0 && problems.length === 0) problems.push('--max-ttl must be positive');
      if (problems.length > 0) throw new ConfigError(problems);

      let rotation: AuthorityRotation;
      if (opts.kubernetes) {
        const { store, trustDomain, activationGate } = await kubernetesRotationParts(io, opts);
        rotation = new AuthorityRotation({ store, trustDomain, maxSvidTtlSeconds, propagationDelaySeconds, activationGate });
      } else {
        const trustDomain = await resolveTrustDomain(io, opts.dataDir, opts.trustDomain);
        const store = createFileAuthorityStore(opts.dataDir, {
          onRecovered: (outcome) =>
            io.stderr.write(
              outcome === 'completed'
                ? 'meshca: completed a rotation that was interrupted earlier\n'
                : 'meshca: discarded an interrupted rotation that had not been committed\n',
            ),
        });
        rotation = new AuthorityRotation({ store, trustDomain, maxSvidTtlSeconds, propagationDelaySeconds });
      }
      const now = io.clock.now();
      let result: RotationResult;
      if (opts.prepare) {
        result = await rotation.prepare({ now, keyKind: opts.key as KeyKind, validityDays: validitySeconds / 86400 });
      } else if (opts.activate) {
        result = await rotation.activate({ now, force: opts.force === true });
      } else if (opts.retire) {
        result = await rotation.retire({ now, force: opts.force === true });
      } else if (fingerprint !== undefined) {
        result = await rotation.distrust(fingerprint, { now });
      } else {
        io.stdout.write(describeStatus(await rotation.status(now), now, rotation));
        return;
      }
      io.stdout.write(describeResult(result, now));
      for (const warning of result.warnings) io.stderr.write(`meshca: warning: ${warning}\n`);
    });
}

interface BundleFlags {
  readonly format: string;
  readonly dataDir: string;
  readonly trustDomain?: string;
  readonly refreshHint: string;
}

async function readJwtAuthority(dataDir: string): Promise<JWK | undefined> {
  const text = await readTextIfExists(join(dataDir, JWT_SIGNING_KEY_FILE));
  if (text === undefined) return undefined;
  try {
    return (await JwtSvidIssuer.fromPrivateJwk(JSON.parse(text) as JWK)).publicJwk();
  } catch (err) {
    throw new ConfigError([`${join(dataDir, JWT_SIGNING_KEY_FILE)} is not a usable JWT-SVID signing key`], { cause: err });
  }
}

export function buildCaBundleCommand(io: CliIo): Command {
  return new Command('bundle')
    .description('print the trust bundle: every trusted root (PEM, as root-cert.pem) or the SPIFFE bundle (JWKS) for federation')
    .addOption(new Option('--format <format>', 'output format').choices(['pem', 'jwks']).default('pem'))
    .addOption(dataDirOption(io))
    .addOption(trustDomainOption())
    .option('--refresh-hint <duration>', 'spiffe_refresh_hint in the JWKS', '5m')
    .action(async (opts: BundleFlags) => {
      const refreshHintSeconds = parseDurationSeconds(opts.refreshHint, '--refresh-hint');
      const trustDomain = await resolveTrustDomain(io, opts.dataDir, opts.trustDomain);
      const snapshot = await loadAuthoritySnapshot(opts.dataDir, { trustDomain, now: io.clock.now() });
      for (const note of snapshot.notes) io.stderr.write(`meshca: note: ${note}\n`);
      if (opts.format === 'pem') {
        io.stdout.write(snapshot.bundle.toPem());
        return;
      }
      const jwt = await readJwtAuthority(opts.dataDir);
      const jwks = formatSpiffeBundleJwks(snapshot.bundle.roots, {
        sequence: snapshot.bundle.sequence,
        refreshHintSeconds,
        ...(jwt ? { jwtAuthorities: [jwt as Record<string, unknown>] } : {}),
      });
      io.stdout.write(`${JSON.stringify(jwks, null, 2)}\n`);
    });
}
