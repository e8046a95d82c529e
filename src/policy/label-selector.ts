/**
 * Kubernetes label selectors (`matchLabels` + `matchExpressions`), as used by Istio's
 * `selector` and Cilium's `endpointSelector` / `fromEndpoints`. `matchLabels` entries become
 * `In` requirements with one value, so matching has one code path.
 */
import {
  checkKeys,
  describeValue,
  type ProblemCollector,
  type ProblemPath,
  readList,
  readRecord,
  readString,
} from './policy-input.js';

/** Labels of the workload a policy protects, e.g. `{ app: 'httpbin', version: 'v1' }`. */
export type WorkloadLabels = Readonly<Record<string, string>>;

export type LabelOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface LabelRequirement {
  readonly key: string;
  readonly operator: LabelOperator;
  /** For In / NotIn; empty for Exists / DoesNotExist. */
  readonly values: readonly string[];
}

export interface LabelSelector {
  /** All must hold; an empty list selects everything. */
  readonly requirements: readonly LabelRequirement[];
}

export interface ReadLabelSelectorOptions {
  /** Istio's WorkloadSelector has only matchLabels. */
  readonly allowExpressions: boolean;
  /** Maps a key as written to the key matched (Cilium's `k8s:app` → `app`), or returns an error message. */
  readonly normalizeKey?: (key: string) => string | { readonly error: string };
}

const OPERATORS: readonly LabelOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

export function readLabelSelector(
  value: unknown,
  path: ProblemPath,
  problems: ProblemCollector,
  options: ReadLabelSelectorOptions,
): LabelSelector {
  const requirements: LabelRequirement[] = [];
  const obj = readRecord(value, path, problems);
  if (obj === undefined) return { requirements };
  checkKeys(obj, path, problems, options.allowExpressions ? ['matchLabels', 'matchExpressions'] : ['matchLabels']);
  const keyOf = (raw: string, at: ProblemPath): string | undefined => {
    if (options.normalizeKey === undefined) return raw;
    const key = options.normalizeKey(raw);
    if (typeof key === 'string') return key;
    problems.add(at, key.error);
    return undefined;
  };

  if (obj['matchLabels'] !== undefined && obj['matchLabels'] !== null) {
    const labels = readRecord(obj['matchLabels'], [...path, 'matchLabels'], problems);
    for (const [rawKey, labelValue] of Object.entries(labels ?? {})) {
      const at = [...path, 'matchLabels', rawKey];
      if (typeof labelValue !== 'string') {
        // YAML turns `version: 1` or `enabled: true` into non-strings; Kubernetes would refuse them.
        problems.add(at, `label values must be strings (quote them in YAML), found ${describeValue(labelValue)}`);
        continue;
      }
      if (labelValue.includes('*')) {
        problems.add(at, 'wildcards are not supported in label selectors');
        continue;
      }
      const key = keyOf(rawKey, at);
      if (key !== undefined) requirements.push({ key, operator: 'In', values: [labelValue] });
    }
  }

  if (options.allowExpressions && obj['matchExpressions'] !== undefined) {
    const expressions = readList(obj['matchExpressions'], [...path, 'matchExpressions'], problems) ?? [];
    expressions.forEach((item, i) => {
      const at: ProblemPath = [...path, 'matchExpressions', i];
      const expr = readRecord(item, at, problems);
      if (expr === undefined) return;
      checkKeys(expr, at, problems, ['key', 'operator', 'values']);
      const rawKey = readString(expr['key'], [...at, 'key'], problems);
      const operator = expr['operator'];
      if (typeof operator !== 'string' || !OPERATORS.includes(operator as LabelOperator)) {
        problems.add([...at, 'operator'], `must be one of ${OPERATORS.join(', ')}, found ${describeValue(operator)}`);
        return;
      }
      const op = operator as LabelOperator;
      const needsValues = op === 'In' || op === 'NotIn';
      const values: string[] = [];
      if (needsValues) {
        const list = readList(expr['values'], [...at, 'values'], problems) ?? [];
        if (list.length === 0) problems.add([...at, 'values'], `must not be empty for operator ${op}`);
        list.forEach((v, j) => {
          if (typeof v === 'string') values.push(v);
          else problems.add([...at, 'values', j], `must be a string, found ${describeValue(v)}`);
        });
      } else if (expr['values'] !== undefined && !(Array.isArray(expr['values']) && expr['values'].length === 0)) {
        problems.add([...at, 'values'], `must be empty for operator ${op}`);
      }
      const key = rawKey === undefined ? undefined : keyOf(rawKey, [...at, 'key']);
      if (key !== undefined) requirements.push({ key, operator: op, values });
    });
  }
  return { requirements };
}

/** Kubernetes semantics: NotIn and DoesNotExist hold when the label is absent. */
export function requirementHolds(requirement: LabelRequirement, value: string | undefined): boolean {
  switch (requirement.operator) {
    case 'In':
      return value !== undefined && requirement.values.includes(value);
    case 'NotIn':
      return value === undefined || !requirement.values.includes(value);
    case 'Exists':
      return value !== undefined;
    case 'DoesNotExist':
      return value === undefined;
  }
}

export function selectorMatches(selector: LabelSelector, labels: WorkloadLabels): boolean {
  return selector.requirements.every((r) =>
    requirementHolds(r, Object.hasOwn(labels, r.key) ? labels[r.key] : undefined),
  );
}
