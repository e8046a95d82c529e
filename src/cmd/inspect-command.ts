import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { ConfigError } from '../errors.js';
import { readStdin, type CliIo } from './cli-common.js';
import { formatDescriptions } from './output.js';

export function buildInspectCommand(io: CliIo): Command {
  return new Command('inspect')
    .argument('<files...>', 'PEM files (- for stdin)')
    .option('--json', 'print JSON instead of text', false)
    .action(async (files: string[], opts: { json: boolean }) => {
      const [{ describePem }, { PemError }] = await Promise.all([import('../pki/describe.js'), import('../pki/pem.js')]);
      const all = [];
      for (const file of files) {
        let text: string;
        try {
          text = file === '-' ? await readStdin(io) : await readFile(file, 'utf8');
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          throw new ConfigError([`${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'permission denied' : (err as Error).message}`], { cause: err });
        }
        let descriptions;
        try {
          descriptions = describePem(text, io.clock.now());
        } catch (err) {
          // Hostile or damaged files are the point of an inspector: say what is wrong, never crash.
          const what = err instanceof PemError ? err.message : `not a readable certificate or CSR (${(err as Error).message})`;
          throw new ConfigError([`${file}: ${what}`], { cause: err });
        }
        if (descriptions.length === 0) throw new ConfigError([`${file}: no PEM certificate or certificate request found`]);
        if (opts.json) all.push({ file, items: descriptions });
        else io.stdout.write(formatDescriptions(descriptions, file));
      }
      if (opts.json) io.stdout.write(JSON.stringify(all, null, 2) + '\n');
    });
}
