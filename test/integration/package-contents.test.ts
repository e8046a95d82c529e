/**
 * What `npm install meshca` gets: the files `npm pack` ships (docs/api.md lists them), source maps
 * that work without src/, and an `engines` range every production dependency accepts (npm warns
 * EBADENGINE otherwise, and the package may not run where it says it does).
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; engines: { node: string }; files: string[] };

type Version = readonly [number, number, number];

function parseVersion(s: string): Version {
  const [a = 0, b = 0, c = 0] = s.replace(/\.(x|\*)/g, '').split('.').map(Number);
  return [a, b, c];
}

function compare(a: Version, b: Version): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/** Whether `version` satisfies an engines range of the forms npm packages use (>=, >, ^, ~, x-ranges, ||, spaces). */
function satisfies(version: Version, range: string): boolean {
  return range.split('||').some((alternative) => {
    const parts = alternative.trim().replace(/(>=|<=|>|<|\^|~)\s+/g, '$1').split(/\s+/).filter(Boolean);
    return parts.every((part) => {
      const m = /^(>=|<=|>|<|\^|~)?v?(\d+(?:\.(?:\d+|x|\*))*)$/.exec(part);
      assert.ok(m, `engines range ${JSON.stringify(range)}: cannot read ${JSON.stringify(part)}`);
      const bound = parseVersion(m[2]!);
      const c = compare(version, bound);
      const segments = m[2]!.split('.').filter((x) => /^\d+$/.test(x)).length;
      switch (m[1]) {
        case '>=': return c >= 0;
        case '>': return c > 0;
        case '<=': return c <= 0;
        case '<': return c < 0;
        case '^': return c >= 0 && version[0] === bound[0];
        case '~': return c >= 0 && version[0] === bound[0] && version[1] === bound[1];
        default: // x-range or exact: the given segments must match
          return version.slice(0, segments).every((v, i) => v === bound[i]);
      }
    });
  });
}

describe('the npm package', () => {
  it('every production dependency runs on the oldest Node that engines allows', () => {
    const floor = parseVersion(/^>=\s*(\d+(?:\.\d+){0,2})$/.exec(pkg.engines.node)?.[1] ?? assert.fail(`engines.node ${pkg.engines.node} is not >=X.Y`));
    assert.ok(satisfies(parseVersion(process.versions.node), pkg.engines.node), `this Node ${process.versions.node} is within engines`);
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; engines?: { node?: string } | string[] }> };
    const refused = Object.entries(lock.packages)
      .filter(([path, p]) => path !== '' && !p.dev && !Array.isArray(p.engines) && p.engines?.node !== undefined)
      .filter(([, p]) => !satisfies(floor, (p.engines as { node: string }).node))
      .map(([path, p]) => `${path.replace(/^.*node_modules\//, '')} needs node ${(p.engines as { node: string }).node}`);
    assert.deepEqual(refused, []);
  });

  it('the range check itself refuses what it should', () => {
    assert.equal(satisfies([20, 16, 0], '>=22'), false);
    assert.equal(satisfies([20, 10, 0], '>= 20.16.0'), false);
    assert.equal(satisfies([20, 16, 0], '6.* || 8.* || >= 10.*'), true);
    assert.equal(satisfies([20, 16, 0], '^18.17.0 || >=20.5.0'), true);
    assert.equal(satisfies([20, 16, 0], '^18.17.0'), false);
  });

  const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  const built = existsSync(join(ROOT, 'dist/cmd/meshca.js'));
  it('ships the CLI, the library, the protos, LICENSE and README, and no sources, tests or benches', { skip: built ? false : 'dist/ is not built (npm run build)' }, () => {
    assert.equal(pack.status, 0, pack.stderr);
    const files = (JSON.parse(pack.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    for (const required of ['LICENSE', 'README.md', 'package.json', 'bin/meshca.js', 'dist/cmd/meshca.js', 'dist/index.js', 'dist/index.d.ts', 'proto/istio/v1/auth/ca.proto', 'proto/meshca/v1/jwt_svid.proto', 'proto/spiffe/workload/workload.proto']) {
      assert.ok(files.includes(required), `ships ${required}`);
    }
    assert.deepEqual(files.filter((f) => !/^(dist|proto|bin)\//.test(f) && !['LICENSE', 'README.md', 'package.json'].includes(f)), []);
    assert.deepEqual(files.filter((f) => /\.test\.|^dist\/(test|bench)\//.test(f) || f.endsWith('.ts') && !f.endsWith('.d.ts')), []);
    // Source maps carry their sources: src/ is not shipped.
    const maps = files.filter((f) => f.endsWith('.js.map'));
    assert.ok(maps.length > 50);
    const missing = maps.filter((f) => !((JSON.parse(readFileSync(join(ROOT, f), 'utf8')) as { sourcesContent?: unknown[] }).sourcesContent?.length));
    assert.deepEqual(missing, []);
  });
});
