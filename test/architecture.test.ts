import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';

/**
 * Keeps the layering of shared/STYLE.md visible: imports only point down, and frameworks stay
 * at the edge. A failure names the file, the import and the rule it breaks.
 */
const SRC = fileURLToPath(new URL('../src/', import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

function importsOf(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  return [...text.matchAll(/(?:^|;)\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gm), ...text.matchAll(/(?:^|;)\s*import\s+'([^']+)'/gm), ...text.matchAll(/import\('([^']+)'\)/g)].map((m) => m[1]!);
}

function layerOf(file: string): number {
  const rel = relative(SRC, file).replace(/\\/g, '/');
  if (['errors.ts', 'clock.ts', 'log.ts', 'version.ts'].includes(rel)) return 0;
  if (/^(spiffe|pki|policy)\//.test(rel)) return 1;
  if (/^(ca|agent|proxy|config|inject)\//.test(rel) || rel === 'authn/authenticator.ts') return 2;
  if (/^cmd\//.test(rel) || rel === 'index.ts') return 4;
  return 3;
}

const sources = files(SRC).filter((f) => !relative(SRC, f).startsWith('generated/'));
const NO_IO = /^(node:)?(fs|fs\/promises|net|http|https|http2|tls|child_process|worker_threads|dgram|timers|timers\/promises)$/;

describe('architecture (STYLE.md layers)', () => {
  test('imports only point down a layer', () => {
    const problems: string[] = [];
    for (const file of sources) {
      const layer = layerOf(file);
      for (const spec of importsOf(file)) {
        if (!spec.startsWith('.')) continue;
        const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
        if (relative(SRC, target).startsWith('generated/')) continue;
        if (layerOf(target) > layer) problems.push(`${relative(SRC, file)} (L${layer}) imports ${spec} (L${layerOf(target)})`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test('the domain core and the services do no I/O and import no framework', () => {
    const problems: string[] = [];
    for (const file of sources.filter((f) => layerOf(f) <= 2)) {
      for (const spec of importsOf(file)) {
        if (NO_IO.test(spec) || /^(fastify|@grpc\/|@kubernetes\/|pino$)/.test(spec)) {
          if (relative(SRC, file) === 'log.ts' && spec === 'pino') continue;
          problems.push(`${relative(SRC, file)} imports ${spec}`);
        }
      }
    }
    assert.deepEqual(problems, []);
  });

  test('fastify and grpc-js live in transport/ (and the cmd roots); the Kubernetes client in k8s/ and TokenReview', () => {
    const problems: string[] = [];
    for (const file of sources) {
      const rel = relative(SRC, file).replace(/\\/g, '/');
      for (const spec of importsOf(file)) {
        if (/^(fastify|fastify-plugin|@grpc\/)/.test(spec) && !/^(transport|cmd)\//.test(rel)) problems.push(`${rel} imports ${spec}`);
        if (/^@kubernetes\//.test(spec) && !/^(k8s|cmd)\//.test(rel) && rel !== 'authn/token-review.ts') problems.push(`${rel} imports ${spec}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test('nothing in src/ imports test code', () => {
    const problems = sources.flatMap((file) => importsOf(file).filter((s) => s.includes('/test/') || s.startsWith('../../test')).map((s) => `${relative(SRC, file)} imports ${s}`));
    assert.deepEqual(problems, []);
  });
});
