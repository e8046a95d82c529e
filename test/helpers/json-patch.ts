/**
 * RFC 6902 JSON Patch, the operations a mutating webhook's patch may hold (add, remove, replace,
 * test), applied as the API server does: to a copy, failing on a path that does not resolve.
 * For checking what a webhook's patch turns an object into.
 */
type Json = unknown;

function unescape(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

function parent(doc: Json, path: string): { container: Record<string, Json> | Json[]; key: string } {
  if (!path.startsWith('/')) throw new Error(`JSON pointer ${JSON.stringify(path)} must start with /`);
  const tokens = path.slice(1).split('/').map(unescape);
  const key = tokens.pop()!;
  let cur = doc;
  for (const t of tokens) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (typeof cur === 'object' && cur !== null && t in cur) cur = (cur as Record<string, Json>)[t];
    else throw new Error(`path ${path}: ${t} does not exist`);
  }
  if (typeof cur !== 'object' || cur === null) throw new Error(`path ${path}: parent is not a container`);
  return { container: cur as Record<string, Json> | Json[], key };
}

export function applyJsonPatch(document: Json, patch: readonly unknown[]): Json {
  const doc = structuredClone(document);
  for (const raw of patch) {
    const op = raw as { op: string; path: string; value?: Json };
    const { container, key } = parent(doc, op.path);
    if (Array.isArray(container)) {
      const index = key === '-' ? container.length : Number(key);
      if (!Number.isInteger(index) || index < 0 || index > container.length) throw new Error(`path ${op.path}: bad index`);
      if (op.op === 'add') container.splice(index, 0, structuredClone(op.value));
      else if (op.op === 'replace') container[index] = structuredClone(op.value);
      else if (op.op === 'remove') container.splice(index, 1);
      else throw new Error(`unsupported op ${op.op}`);
    } else {
      if (op.op === 'add') container[key] = structuredClone(op.value);
      else if (op.op === 'replace' && key in container) container[key] = structuredClone(op.value);
      else if (op.op === 'remove' && key in container) delete container[key];
      else throw new Error(`op ${op.op} at ${op.path} does not apply`);
    }
  }
  return doc;
}
