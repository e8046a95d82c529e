/**
 * Loads authorization policies from a YAML file written the way users write them for Istio or
 * Cilium: one or more `---`-separated documents, each an AuthorizationPolicy, a
 * CiliumNetworkPolicy or a `List` of them (`kubectl get ... -o yaml`). Every problem in every
 * document is reported at once, as `<file>:<line> (document <n>, <object>) <path>: <message>`.
 */
import { readFile } from 'node:fs/promises';
import { LineCounter, parseAllDocuments, type Document } from 'yaml';
import { ConfigError } from '../errors.js';
import { policyId, readPolicyDocuments, type PolicyDocument } from '../policy/authorization-policy.js';
import type { ParsePolicyOptions } from '../policy/istio-policy.js';
import { formatProblem, type ProblemPath } from '../policy/policy-input.js';

export interface LoadedPolicies {
  /** The file path or the name given to `parsePolicyYaml`. */
  readonly source: string;
  /** In file order; empty for a file without documents (which allows every request). */
  readonly policies: readonly PolicyDocument[];
}

export type LoadPolicyFileOptions = ParsePolicyOptions;

/** Reads and parses a policy file. Throws `ConfigError` listing every problem, or if unreadable. */
export async function loadPolicyFile(path: string, options: LoadPolicyFileOptions = {}): Promise<LoadedPolicies> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : err instanceof Error ? err.message : String(err);
    throw new ConfigError([`${path}: cannot read policy file: ${reason}`], { cause: err, rule: 'policy-file' });
  }
  return parsePolicyYaml(text, path, options);
}

/** Parses policy YAML; `sourceName` labels problems (a path, or e.g. `inline`). */
export function parsePolicyYaml(text: string, sourceName: string, options: LoadPolicyFileOptions = {}): LoadedPolicies {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  const lineCounter = new LineCounter();
  const documents = parseAllDocuments(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const problems: string[] = [];
  const policies: PolicyDocument[] = [];
  const firstSeen = new Map<string, string>();
  const lineOf = (offset: number): number => lineCounter.linePos(offset).line;
  // The document's own range starts at its `---`; its content is where readers look.
  const startOf = (doc: Document.Parsed): number => (doc.contents as { range?: readonly number[] } | null)?.range?.[0] ?? doc.range[0];

  const docs: readonly Document.Parsed[] = Array.isArray(documents) ? documents : [];
  docs.forEach((doc, index) => {
    const label = `document ${index + 1}`;
    if (doc.errors.length > 0) {
      for (const error of doc.errors) {
        const line = lineOf(error.pos[0]);
        problems.push(`${sourceName}:${line} (${label}) invalid YAML: ${error.message.split('\n')[0]}`);
      }
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      problems.push(`${sourceName}:${lineOf(startOf(doc))} (${label}) invalid YAML: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    // A document holding only comments, or a stray `---` at the end.
    if (value === null || value === undefined) return;
    const result = readPolicyDocuments(value, options);
    for (const problem of result.problems) {
      problems.push(`${sourceName}:${locate(doc, problem.path, lineOf)} (${label}, ${problem.subject}) ${formatProblem(problem)}`);
    }
    if (result.problems.length > 0) return;
    for (const policy of result.documents) {
      const key = `${policy.kind} ${policyId(policy)}`;
      const previous = firstSeen.get(key);
      if (previous !== undefined) {
        problems.push(`${sourceName}:${lineOf(startOf(doc))} (${label}) ${key} is defined again (first in ${previous})`);
        continue;
      }
      firstSeen.set(key, label);
      policies.push(policy);
    }
  });
  if (problems.length > 0) throw new ConfigError(problems, { rule: 'policy-file' });
  return Object.freeze({ source: sourceName, policies: Object.freeze(policies) });
}

/** The line of the deepest node on `path` that exists in the document. */
function locate(doc: Document.Parsed, path: ProblemPath, lineOf: (offset: number) => number): number {
  for (let length = path.length; length > 0; length--) {
    const node: unknown = doc.getIn(path.slice(0, length), true);
    const range = (node as { range?: readonly number[] } | undefined)?.range;
    if (range !== undefined && typeof range[0] === 'number') return lineOf(range[0]);
  }
  const contents = doc.contents as { range?: readonly number[] } | null;
  return lineOf(contents?.range?.[0] ?? doc.range[0]);
}
