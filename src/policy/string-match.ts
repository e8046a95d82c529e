/**
 * Istio's string patterns for authorization rules, compiled once into plain comparisons:
 *
 * - exact `abc` matches only `abc`;
 * - prefix `abc*` matches `abc` and `abcd`;
 * - suffix `*abc` matches `abc` and `xabc`;
 * - presence `*` matches any non-empty value.
 *
 * A `*` anywhere else is rejected at parse time rather than taken literally (Istio would treat
 * `a*b` as the exact string `a*b`, which is almost never what its author meant, and a DENY rule
 * that silently matches nothing is a hole). No regular expression is involved, so matching is
 * linear in the value and allocation-free.
 */

export type StringPatternKind = 'exact' | 'prefix' | 'suffix' | 'presence';

export interface StringPattern {
  readonly kind: StringPatternKind;
  /** The literal part: the whole value, the prefix, the suffix, or `''` for presence. */
  readonly value: string;
}

/** Parses one pattern; returns an error message instead when it is not a valid pattern. */
export function parseStringPattern(raw: string): StringPattern | string {
  if (raw.length === 0) return 'must not be empty';
  if (raw === '*') return { kind: 'presence', value: '' };
  const first = raw.indexOf('*');
  if (first === -1) return { kind: 'exact', value: raw };
  const last = raw.lastIndexOf('*');
  if (first === 0 && last === 0) return { kind: 'suffix', value: raw.slice(1) };
  if (first === raw.length - 1) return { kind: 'prefix', value: raw.slice(0, -1) };
  return `${JSON.stringify(raw)}: "*" is only allowed once, as the whole value, the first character (suffix match) or the last character (prefix match)`;
}

/** A compiled set of patterns; `matches(v)` is true when any pattern matches `v`. */
export type StringMatcher = (value: string) => boolean;

const NEVER: StringMatcher = () => false;
const NON_EMPTY: StringMatcher = (value) => value.length > 0;

/**
 * Compiles valid patterns (see `parseStringPattern`) into one matcher. Exact values go into a
 * Set; prefixes and suffixes into arrays scanned with startsWith/endsWith. With
 * `caseInsensitive`, patterns are lowercased here and callers pass lowercased values.
 */
export function compileStringMatcher(patterns: readonly StringPattern[], options: { caseInsensitive?: boolean } = {}): StringMatcher {
  const norm = options.caseInsensitive === true ? (s: string) => s.toLowerCase() : (s: string) => s;
  if (patterns.some((p) => p.kind === 'presence')) return NON_EMPTY;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const suffixes: string[] = [];
  for (const p of patterns) {
    if (p.kind === 'exact') exact.add(norm(p.value));
    else if (p.kind === 'prefix') prefixes.push(norm(p.value));
    else suffixes.push(norm(p.value));
  }
  if (prefixes.length === 0 && suffixes.length === 0) {
    if (exact.size === 0) return NEVER;
    if (exact.size === 1) {
      const only = exact.values().next().value as string;
      return (value) => value === only;
    }
    return (value) => exact.has(value);
  }
  return (value) => {
    if (exact.has(value)) return true;
    for (let i = 0; i < prefixes.length; i++) if (value.startsWith(prefixes[i]!)) return true;
    for (let i = 0; i < suffixes.length; i++) if (value.endsWith(suffixes[i]!)) return true;
    return false;
  };
}
