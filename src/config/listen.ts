/** A listen address as flags take it: `host:port`, `[v6]:port`, or `:port` for every interface. */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Parses `value` for `flag`; on a bad value pushes one problem and returns undefined. */
export function parseListen(value: unknown, flag: string, problems: string[]): ListenAddress | undefined {
  const text = String(value);
  const match = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/i.exec(text);
  const port = match ? Number(match[3]) : Number.NaN;
  if (!match || port > 65535) {
    problems.push(`${flag} ${JSON.stringify(text)} must be host:port (e.g. 127.0.0.1:15006, 0.0.0.0:15006, [::1]:15006)`);
    return undefined;
  }
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}
