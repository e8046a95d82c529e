import { ConfigError } from '../errors.js';

const UNITS: Readonly<Record<string, number>> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/**
 * Parses a Go/Kubernetes-style duration ("24h", "90m", "1h30m", "3600s", "7d") into seconds.
 * A bare number is seconds. Fractions of a second are rounded down.
 */
export function parseDurationSeconds(text: string, what = 'duration'): number {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let consumed = 0;
  for (const match of trimmed.matchAll(re)) {
    total += Number(match[1]) * UNITS[match[2]!]!;
    consumed += match[0].length;
  }
  if (trimmed.length === 0 || consumed !== trimmed.length) {
    throw new ConfigError([`${what} ${JSON.stringify(text)} is not a duration (examples: 24h, 90m, 1h30m, 3600s)`]);
  }
  return Math.floor(total);
}

/** "23h 59m", "5m 3s", "12s": the two most significant units, for people. */
export function formatDuration(seconds: number): string {
  const sign = seconds < 0 ? '-' : '';
  let rest = Math.abs(Math.floor(seconds));
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= size || (unit === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return sign + parts.slice(0, 2).join(' ');
}
