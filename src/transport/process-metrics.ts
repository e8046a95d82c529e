/**
 * The standard process metrics of Prometheus client libraries (`process_*`, read from /proc on
 * Linux as client_golang's are) and the Node.js runtime's (`nodejs_*`: heap, event-loop delay,
 * version), registered once per process's registry. Names follow prom-client's, which earlier
 * meshca releases exposed, so dashboards keep working; none is a gauge named `_total`, which
 * `promtool check metrics` refuses.
 */
import { readdir, readFile } from 'node:fs/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { Counter, Gauge, type Registry } from './prometheus.js';

const PAGE_SIZE = 4096;

/** Fields of /proc/self/stat after the command name, or undefined off Linux. */
async function procStat(): Promise<string[] | undefined> {
  try {
    const text = await readFile('/proc/self/stat', 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

async function openFds(): Promise<number | undefined> {
  try {
    return (await readdir('/proc/self/fd')).length - 1; // less the directory handle readdir holds
  } catch {
    return undefined;
  }
}

async function maxFds(): Promise<number | undefined> {
  try {
    const limits = await readFile('/proc/self/limits', 'utf8');
    const soft = /^Max open files\s+(\d+)/m.exec(limits)?.[1];
    return soft === undefined ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

let loopDelay: ReturnType<typeof monitorEventLoopDelay> | undefined;

/** One event-loop monitor per process, however many registries report it. */
function eventLoopDelay(): ReturnType<typeof monitorEventLoopDelay> {
  if (loopDelay === undefined) {
    loopDelay = monitorEventLoopDelay({ resolution: 20 });
    loopDelay.enable();
  }
  return loopDelay;
}

export function collectProcessMetrics(registry: Registry): void {
  const registers = [registry];
  const startTime = Math.round(Date.now() / 1000 - process.uptime());
  // Each counter adds what the process used since its last scrape (cpuUsage is monotonic).
  const cpuCounter = (name: string, help: string, read: (u: NodeJS.CpuUsage) => number): void => {
    let last = 0;
    new Counter({
      name,
      help,
      registers,
      collect() {
        const now = read(process.cpuUsage()) / 1e6;
        if (now > last) this.inc(now - last);
        last = Math.max(last, now);
      },
    });
  };
  cpuCounter('process_cpu_user_seconds_total', 'Total user CPU time spent in seconds.', (u) => u.user);
  cpuCounter('process_cpu_system_seconds_total', 'Total system CPU time spent in seconds.', (u) => u.system);
  cpuCounter('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', (u) => u.user + u.system);
  new Gauge({
    name: 'process_start_time_seconds',
    help: 'Start time of the process since unix epoch in seconds.',
    registers,
  }).set(startTime);
  new Gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes.',
    registers,
    async collect() {
      const stat = await procStat();
      this.set(stat === undefined ? process.memoryUsage.rss() : Number(stat[21]) * PAGE_SIZE);
    },
  });
  new Gauge({
    name: 'process_virtual_memory_bytes',
    help: 'Virtual memory size in bytes.',
    registers,
    async collect() {
      const stat = await procStat();
      if (stat === undefined) this.reset();
      else this.set(Number(stat[20]));
    },
  });
  new Gauge({
    name: 'process_open_fds',
    help: 'Number of open file descriptors.',
    registers,
    async collect() {
      const n = await openFds();
      if (n === undefined) this.reset();
      else this.set(n);
    },
  });
  new Gauge({
    name: 'process_max_fds',
    help: 'Maximum number of open file descriptors.',
    registers,
    async collect() {
      const n = await maxFds();
      if (n === undefined) this.reset();
      else this.set(n);
    },
  });
  const delay = eventLoopDelay();
  // Gauges rather than a summary: promtool allows `quantile` only on summaries, which also
  // need a count and sum this monitor does not keep. Reset after each scrape, as it is read.
  const stats: [string, (h: typeof delay) => number][] = [
    ['p50', (h) => h.percentile(50)],
    ['p90', (h) => h.percentile(90)],
    ['p99', (h) => h.percentile(99)],
    ['max', (h) => h.max],
    ['mean', (h) => h.mean],
  ];
  const lagGauges: Gauge[] = [];
  // Registered first: its collect() reads the monitor for the gauges rendered after it.
  new Gauge({
    name: 'nodejs_eventloop_lag_samples',
    help: 'Event loop delay samples behind the nodejs_eventloop_lag_* gauges.',
    registers,
    collect() {
      this.set(delay.count);
      stats.forEach(([, read], i) => (delay.count === 0 ? lagGauges[i]!.reset() : lagGauges[i]!.set(read(delay) / 1e9)));
      delay.reset();
    },
  });
  for (const [stat] of stats) lagGauges.push(new Gauge({ name: `nodejs_eventloop_lag_${stat}_seconds`, help: `The ${stat} of the event loop delay since the last scrape, in seconds.`, registers }));
  new Gauge({
    name: 'nodejs_heap_size_total_bytes',
    help: 'Process heap size from Node.js in bytes.',
    registers,
    collect() {
      this.set(process.memoryUsage().heapTotal);
    },
  });
  new Gauge({
    name: 'nodejs_heap_size_used_bytes',
    help: 'Process heap size used from Node.js in bytes.',
    registers,
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  new Gauge({
    name: 'nodejs_external_memory_bytes',
    help: 'Node.js external memory size in bytes.',
    registers,
    collect() {
      this.set(process.memoryUsage().external);
    },
  });
  new Gauge<'space'>({
    name: 'nodejs_heap_space_size_used_bytes',
    help: 'Process heap space size used from Node.js in bytes.',
    labelNames: ['space'],
    registers,
    collect() {
      this.reset();
      for (const s of getHeapSpaceStatistics()) this.set({ space: s.space_name.replace(/_space$/, '') }, s.space_used_size);
    },
  });
  const [major, minor, patch] = process.versions.node.split('.');
  new Gauge<'version' | 'major' | 'minor' | 'patch'>({
    name: 'nodejs_version_info',
    help: 'Node.js version info.',
    labelNames: ['version', 'major', 'minor', 'patch'],
    registers,
  }).set({ version: process.version, major: major ?? '', minor: minor ?? '', patch: patch ?? '' }, 1);
}
