/**
 * Schema checks for Kubernetes objects in tests: kubernetes-models validates types and required
 * fields, and `unknownFields` (walking @kubernetes/client-node's attribute maps) finds the fields
 * the API server would silently drop, a typo kubernetes-models lets through.
 */
import * as clientNode from '@kubernetes/client-node';

type AttributeMap = () => readonly { readonly baseName: string; readonly type: string }[];
const CLIENT_MODELS = clientNode as unknown as Record<string, { getAttributeTypeMap?: AttributeMap } | undefined>;
const LEAF_TYPES = new Set(['string', 'number', 'boolean', 'any', 'object', 'Date', 'V1MicroTime', 'IntOrString']);

export function unknownFields(value: unknown, type: string, path: string, out: string[]): void {
  if (value === null || value === undefined || LEAF_TYPES.has(type)) return;
  if (type.startsWith('Array<')) {
    const inner = type.slice('Array<'.length, -1);
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, inner, `${path}[${i}]`, out));
    return;
  }
  const mapMatch = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (mapMatch) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) unknownFields(v, mapMatch[1]!, `${path}.${k}`, out);
    return;
  }
  const attributes = CLIENT_MODELS[type]?.getAttributeTypeMap?.();
  if (attributes === undefined || typeof value !== 'object') return;
  const known = new Map(attributes.map((a) => [a.baseName, a.type]));
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const childType = known.get(key);
    if (childType === undefined) out.push(`${path}.${key}`);
    else unknownFields(child, childType, `${path}.${key}`, out);
  }
}

