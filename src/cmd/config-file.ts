import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.js';

const camel = (key: string): string => key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * Applies a YAML/JSON config file under the command's options: flags and environment win, the
 * file fills in only what is still at its default. Unknown keys are errors, not silence.
 */
export async function applyConfigFile(command: Command, path: string): Promise<void> {
  let doc: unknown;
  try {
    doc = parseYaml(await readFile(path, 'utf8'));
  } catch (err) {
    throw new ConfigError([`--config ${path}: ${(err as Error).message}`], { cause: err });
  }
  if (doc === null || doc === undefined) return;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError([`--config ${path}: expected a mapping of option names to values`]);
  const known = new Map(command.options.map((o) => [o.attributeName(), o]));
  const problems: string[] = [];
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const name = camel(key);
    if (!known.has(name) || name === 'config') {
      problems.push(`--config ${path}: unknown option ${JSON.stringify(key)}`);
      continue;
    }
    if (command.getOptionValueSource(name) === 'default' || command.getOptionValueSource(name) === undefined) {
      command.setOptionValueWithSource(name, Array.isArray(value) ? value.join(',') : value, 'config');
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
