import { execFile } from 'node:child_process';

export interface OpensslResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the real `openssl` binary; never throws on a non-zero exit so tests can assert on it. */
export function openssl(args: readonly string[], input?: string | Uint8Array): Promise<OpensslResult> {
  return new Promise((resolve, reject) => {
    const child = execFile('openssl', [...args], { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === 'string') {
        reject(err);
        return;
      }
      resolve({
        code: err ? ((err as { code?: number }).code ?? 1) : 0,
        stdout: stdout.toString('utf8'),
        stderr: stderr.toString('utf8'),
      });
    });
    // openssl may exit before reading its input (a usage error, or a command that reads none);
    // the resulting EPIPE belongs to this call's result, not to the process as an uncaught error.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input ?? '');
  });
}

/** A CSR made by `openssl req` (the operator's tool), with any key openssl can make. */
export async function opensslCsr(newkey: readonly string[], extra: readonly string[] = []): Promise<{ csrPem: string; keyPem: string }> {
  const result = await openssl(['req', '-new', ...newkey, '-nodes', '-subj', '/', '-keyout', '-', '-out', '-', ...extra]);
  if (result.code !== 0) throw new Error(`openssl req failed: ${result.stderr}`);
  const keyPem = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n/.exec(result.stdout)?.[0];
  const csrPem = /-----BEGIN CERTIFICATE REQUEST-----[\s\S]+?-----END CERTIFICATE REQUEST-----\n/.exec(result.stdout)?.[0];
  if (!keyPem || !csrPem) throw new Error('openssl req printed no key or CSR');
  return { csrPem, keyPem };
}

/** Writes PEM texts to a temporary directory for commands that need file paths; removes it after. */
export async function withPemFiles<T>(files: Readonly<Record<string, string>>, fn: (paths: Record<string, string>) => Promise<T>): Promise<T> {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'meshca-openssl-'));
  try {
    const paths: Record<string, string> = {};
    for (const [name, text] of Object.entries(files)) {
      paths[name] = join(dir, `${name}.pem`);
      await writeFile(paths[name]!, text);
    }
    return await fn(paths);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * `openssl verify -x509_strict` of a chain (leaf first, then intermediates) against a root.
 * Resolves to openssl's result so tests assert both success and the refusal text.
 * `at` hands openssl the instant the certificates were made for (`-attime`): a test on a manual
 * clock must pass it, or openssl judges them by today's date and the test rots.
 */
export function opensslVerify(rootPem: string, leafPem: string, options: { untrustedPem?: string; purpose?: string; at?: Date } = {}): Promise<OpensslResult> {
  return withPemFiles({ root: rootPem, leaf: leafPem, untrusted: options.untrustedPem ?? '' }, (p) =>
    openssl([
      'verify',
      '-x509_strict',
      ...(options.purpose ? ['-purpose', options.purpose] : []),
      ...(options.at ? ['-attime', String(Math.floor(options.at.getTime() / 1000))] : []),
      '-CAfile',
      p['root']!,
      ...(options.untrustedPem ? ['-untrusted', p['untrusted']!] : []),
      p['leaf']!,
    ]),
  );
}
