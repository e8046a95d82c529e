/**
 * Prometheus metrics in the text exposition format 0.0.4 (prometheus.io/docs/instrumenting/
 * exposition_formats): counters, gauges and histograms with labels, on registries that render
 * themselves for `/metrics`. meshca's own, rather than prom-client: a sidecar's metrics are a
 * dozen series, and prom-client with its dependencies cost ~1.7 MB of heap in every process.
 * `promtool check metrics` passes on what this renders (test/integration/sidecar.test.ts).
 */

export type LabelValues<L extends string> = Partial<Record<L, string | number>>;

interface Metric {
  readonly name: string;
  render(): Promise<string> | string;
}

export class Registry {
  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8';
  readonly #metrics = new Map<string, Metric>();

  register(metric: Metric): void {
    if (this.#metrics.has(metric.name)) throw new Error(`a metric named ${metric.name} is already registered`);
    this.#metrics.set(metric.name, metric);
  }

  /** The names registered, in registration order. */
  names(): string[] {
    return [...this.#metrics.keys()];
  }

  async metrics(): Promise<string> {
    const parts: string[] = [];
    for (const metric of this.#metrics.values()) parts.push(await metric.render());
    return parts.join('');
  }
}

interface MetricOptions<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
  readonly registers?: readonly Registry[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

abstract class LabelledMetric<L extends string, S> implements Metric {
  readonly name: string;
  readonly help: string;
  readonly #labelNames: readonly L[];
  /** Series by their rendered label set (`{a="x",b="y"}`), which is also the key. */
  protected readonly series = new Map<string, S>();

  constructor(protected readonly type: 'counter' | 'gauge' | 'histogram', options: MetricOptions<L>) {
    if (!NAME.test(options.name)) throw new TypeError(`invalid metric name ${JSON.stringify(options.name)}`);
    const labelNames = options.labelNames ?? [];
    for (const label of labelNames) if (!LABEL.test(label) || label.startsWith('__') || label === 'le') throw new TypeError(`invalid label name ${JSON.stringify(label)}`);
    this.name = options.name;
    this.help = options.help;
    this.#labelNames = labelNames;
    for (const registry of options.registers ?? []) registry.register(this);
  }

  /** The label set as it is written in a sample line; refuses labels the metric does not have. */
  protected key(labels: LabelValues<L> | undefined): string {
    if (labels === undefined) return '';
    let out = '';
    for (const name of this.#labelNames) {
      const value = labels[name];
      if (value === undefined) continue;
      out += `${out === '' ? '' : ','}${name}="${escapeLabel(String(value))}"`;
    }
    for (const name in labels) if (!this.#labelNames.includes(name as L)) throw new TypeError(`${this.name} has no label ${name}`);
    return out === '' ? '' : `{${out}}`;
  }

  reset(): void {
    this.series.clear();
  }

  protected header(): string {
    return `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
  }

  abstract render(): Promise<string> | string;
}

export interface CounterOptions<L extends string> extends MetricOptions<L> {
  /** Runs before each render, e.g. to add what a monotonic source used since the last one. */
  readonly collect?: (this: Counter<L>) => void;
}

export class Counter<L extends string = never> extends LabelledMetric<L, { value: number }> {
  readonly #collect: CounterOptions<L>['collect'];

  constructor(options: CounterOptions<L>) {
    super('counter', options);
    this.#collect = options.collect;
    // A counter without labels exists from the start, at 0, as clients conventionally expose it.
    if ((options.labelNames ?? []).length === 0) this.series.set('', { value: 0 });
  }

  inc(labels?: LabelValues<L> | number, value = 1): void {
    const [set, amount] = typeof labels === 'number' ? [undefined, labels] : [labels, value];
    if (!(amount >= 0)) throw new RangeError(`${this.name}: a counter only goes up (got ${amount})`);
    const key = this.key(set);
    const series = this.series.get(key);
    if (series === undefined) this.series.set(key, { value: amount });
    else series.value += amount;
  }

  render(): string {
    this.#collect?.call(this);
    let out = this.header();
    for (const [key, { value }] of this.series) out += `${this.name}${key} ${formatValue(value)}\n`;
    return out;
  }
}

export interface GaugeOptions<L extends string> extends MetricOptions<L> {
  /** Runs before each render, to set the gauge from its source. */
  readonly collect?: (this: Gauge<L>) => void | Promise<void>;
}

export class Gauge<L extends string = never> extends LabelledMetric<L, { value: number }> {
  readonly #collect: GaugeOptions<L>['collect'];

  constructor(options: GaugeOptions<L>) {
    super('gauge', options);
    this.#collect = options.collect;
  }

  set(labels: LabelValues<L> | number, value?: number): void {
    const [set, amount] = typeof labels === 'number' ? [undefined, labels] : [labels, value ?? 0];
    this.series.set(this.key(set), { value: amount });
  }

  async render(): Promise<string> {
    await this.#collect?.call(this);
    let out = this.header();
    for (const [key, { value }] of this.series) out += `${this.name}${key} ${formatValue(value)}\n`;
    return out;
  }
}

export interface HistogramOptions<L extends string> extends MetricOptions<L> {
  /** Upper bounds, ascending; `+Inf` is added. */
  readonly buckets: readonly number[];
}

interface HistogramSeries {
  readonly counts: number[];
  sum: number;
  count: number;
}

export class Histogram<L extends string = never> extends LabelledMetric<L, HistogramSeries> {
  readonly #buckets: readonly number[];

  constructor(options: HistogramOptions<L>) {
    super('histogram', options);
    const buckets = [...options.buckets];
    if (buckets.length === 0 || buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= buckets[i - 1]!))) {
      throw new TypeError(`${options.name}: buckets must be finite and ascending`);
    }
    this.#buckets = buckets;
  }

  observe(labels: LabelValues<L> | number, value?: number): void {
    const [set, amount] = typeof labels === 'number' ? [undefined, labels] : [labels, value ?? 0];
    const key = this.key(set);
    let series = this.series.get(key);
    if (series === undefined) {
      series = { counts: new Array<number>(this.#buckets.length).fill(0), sum: 0, count: 0 };
      this.series.set(key, series);
    }
    const buckets = this.#buckets;
    for (let i = 0; i < buckets.length; i++) {
      if (amount <= buckets[i]!) {
        series.counts[i]!++;
        break;
      }
    }
    series.sum += amount;
    series.count++;
  }

  render(): string {
    let out = this.header();
    for (const [key, series] of this.series) {
      const inner = key === '' ? '' : `${key.slice(1, -1)},`;
      let cumulative = 0;
      for (let i = 0; i < this.#buckets.length; i++) {
        cumulative += series.counts[i]!;
        out += `${this.name}_bucket{${inner}le="${formatValue(this.#buckets[i]!)}"} ${cumulative}\n`;
      }
      out += `${this.name}_bucket{${inner}le="+Inf"} ${series.count}\n`;
      out += `${this.name}_sum${key} ${formatValue(series.sum)}\n${this.name}_count${key} ${series.count}\n`;
    }
    return out;
  }
}
