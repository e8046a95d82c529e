/** meshca's Prometheus registry renders the text format that promtool accepts, with exact values. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { collectProcessMetrics } from '../../../src/transport/process-metrics.js';
import { Counter, Gauge, Histogram, Registry } from '../../../src/transport/prometheus.js';

function promtool(text: string): void {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error === undefined) assert.equal(r.status, 0, r.stdout + r.stderr);
}

describe('Prometheus registry', () => {
  test('counters, gauges and histograms render with labels escaped, and pass promtool', async () => {
    const registry = new Registry();
    const requests = new Counter({ name: 'demo_requests_total', help: 'Requests.\nSecond "line" \\', labelNames: ['code', 'path'], registers: [registry] });
    const plain = new Counter({ name: 'demo_plain_total', help: 'Plain.', registers: [registry] });
    const temp = new Gauge({ name: 'demo_temperature', help: 'Temp.', registers: [registry], collect() { this.set(-1.5); } });
    const latency = new Histogram({ name: 'demo_duration_seconds', help: 'Latency.', labelNames: ['kind'], buckets: [0.1, 1], registers: [registry] });
    requests.inc({ code: 200, path: '/a"b\\c\nd' });
    requests.inc({ code: 200, path: '/a"b\\c\nd' }, 2);
    plain.inc();
    latency.observe({ kind: 'x' }, 0.05);
    latency.observe({ kind: 'x' }, 0.5);
    latency.observe({ kind: 'x' }, 5);
    void temp;
    const text = await registry.metrics();
    assert.equal(
      text,
      [
        '# HELP demo_requests_total Requests.\\nSecond "line" \\\\',
        '# TYPE demo_requests_total counter',
        'demo_requests_total{code="200",path="/a\\"b\\\\c\\nd"} 3',
        '# HELP demo_plain_total Plain.',
        '# TYPE demo_plain_total counter',
        'demo_plain_total 1',
        '# HELP demo_temperature Temp.',
        '# TYPE demo_temperature gauge',
        'demo_temperature -1.5',
        '# HELP demo_duration_seconds Latency.',
        '# TYPE demo_duration_seconds histogram',
        'demo_duration_seconds_bucket{kind="x",le="0.1"} 1',
        'demo_duration_seconds_bucket{kind="x",le="1"} 2',
        'demo_duration_seconds_bucket{kind="x",le="+Inf"} 3',
        'demo_duration_seconds_sum{kind="x"} 5.55',
        'demo_duration_seconds_count{kind="x"} 3',
        '',
      ].join('\n'),
    );
    promtool(text);
  });

  test('refuses what would render an invalid exposition', () => {
    const registry = new Registry();
    new Counter({ name: 'dup_total', help: 'x', registers: [registry] });
    assert.throws(() => new Counter({ name: 'dup_total', help: 'x', registers: [registry] }), /already registered/);
    assert.throws(() => new Counter({ name: 'bad-name', help: 'x' }), /invalid metric name/);
    assert.throws(() => new Counter({ name: 'ok_total', help: 'x', labelNames: ['le' as never] }), /invalid label name/);
    assert.throws(() => new Histogram({ name: 'h', help: 'x', buckets: [1, 1] }), /ascending/);
    const c = new Counter<'a'>({ name: 'c_total', help: 'x', labelNames: ['a'] });
    assert.throws(() => c.inc({ b: 1 } as never), /no label b/);
    assert.throws(() => c.inc({ a: 1 }, -1), /only goes up/);
  });

  test('the process metrics report this process, once per registry, and pass promtool', async () => {
    const registry = new Registry();
    collectProcessMetrics(registry);
    const text = await registry.metrics();
    const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.ok(value('process_resident_memory_bytes') > 10 * 1024 * 1024, text);
    assert.ok(Math.abs(value('process_start_time_seconds') - (Date.now() / 1000 - process.uptime())) < 2);
    assert.ok(value('process_cpu_seconds_total') > 0);
    assert.ok(value('process_open_fds') > 0 && value('process_open_fds') <= value('process_max_fds'));
    assert.match(text, new RegExp(`^nodejs_version_info\\{version="${process.version}",`, 'm'));
    // CPU counters never go back, scrape after scrape.
    const first = value('process_cpu_seconds_total');
    for (let i = 0; i < 1e6; i++) Math.sqrt(i);
    const again = await registry.metrics();
    assert.ok(Number(/^process_cpu_seconds_total (\S+)$/m.exec(again)?.[1]) >= first);
    promtool(again);
  });
});
