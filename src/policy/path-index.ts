/**
 * A character trie over the exact and prefix `paths` of many rules, so that a request visits
 * only rules whose paths can match instead of running every rule's matcher.
 *
 * A rule is indexed by its *path guard*: the exact paths and prefixes of which the request path
 * must match at least one for the rule to have any chance (every `to` operation of the rule
 * lists `paths`, none of them a suffix or presence pattern). The guard is only a necessary
 * condition; a rule that passes it is still evaluated in full. Rules without a guard are always
 * evaluated. Marking walks the trie along the path once, in O(path length), and writes into
 * caller-owned arrays that are reused, so a decision allocates nothing. Chains of single-child
 * nodes are merged into one edge (a radix tree), so API paths sharing a long stem cost one
 * comparison, not one map lookup per character.
 */

export interface PathGuard {
  readonly exact: readonly string[];
  readonly prefixes: readonly string[];
}

interface TrieNode {
  /** The characters leading here from the parent (one while building, more once merged). */
  edge: string;
  next: Map<number, TrieNode> | undefined;
  /** Rules with a prefix ending at this node: every path through here matches them. */
  readonly prefixRules: number[];
  /** Rules with an exact path ending at this node. */
  readonly exactRules: number[];
}

function node(edge: string): TrieNode {
  return { edge, next: undefined, prefixRules: [], exactRules: [] };
}

/** Merges each child that has no rules and a single child of its own into that child. */
function compress(at: TrieNode): void {
  if (at.next === undefined) return;
  for (const [c, child] of at.next) {
    let merged = child;
    while (merged.prefixRules.length === 0 && merged.exactRules.length === 0 && merged.next?.size === 1) {
      const only = merged.next.values().next().value as TrieNode;
      only.edge = merged.edge + only.edge;
      merged = only;
    }
    at.next.set(c, merged);
    compress(merged);
  }
}

export class PathIndex {
  /** 1 for rules with a guard (consult the stamps), 0 for rules always evaluated. */
  readonly guarded: Uint8Array;
  readonly size: number;
  readonly #root: TrieNode = node('');

  /** `guards[i]` is rule i's guard, or undefined when rule i cannot be indexed. */
  constructor(guards: readonly (PathGuard | undefined)[]) {
    this.size = guards.length;
    this.guarded = new Uint8Array(guards.length);
    guards.forEach((guard, rule) => {
      if (guard === undefined) return;
      this.guarded[rule] = 1;
      for (const path of guard.exact) this.#insert(path).exactRules.push(rule);
      for (const prefix of guard.prefixes) this.#insert(prefix).prefixRules.push(rule);
    });
    compress(this.#root);
  }

  get empty(): boolean {
    return !this.guarded.includes(1);
  }

  #insert(key: string): TrieNode {
    let at = this.#root;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      at.next ??= new Map();
      let child = at.next.get(c);
      if (child === undefined) {
        child = node(key[i]!);
        at.next.set(c, child);
      }
      at = child;
    }
    return at;
  }

  /**
   * Appends to `found` every guarded rule whose guard admits `path`, once each: `stamps[rule]`
   * is set to `epoch` as a rule is found (a rule can sit at several nodes along one path).
   */
  mark(path: string, stamps: Uint32Array, epoch: number, found: number[]): void {
    let at: TrieNode = this.#root;
    let i = 0;
    for (;;) {
      collect(at.prefixRules, stamps, epoch, found);
      if (i === path.length) {
        collect(at.exactRules, stamps, epoch, found);
        return;
      }
      const child = at.next?.get(path.charCodeAt(i));
      // Rules sit only at node boundaries, so a path that leaves or ends inside an edge
      // matches nothing further down.
      if (child === undefined || !path.startsWith(child.edge, i)) return;
      i += child.edge.length;
      at = child;
    }
  }
}

function collect(rules: readonly number[], stamps: Uint32Array, epoch: number, found: number[]): void {
  for (let k = 0; k < rules.length; k++) {
    const rule = rules[k]!;
    if (stamps[rule] !== epoch) {
      stamps[rule] = epoch;
      found.push(rule);
    }
  }
}
