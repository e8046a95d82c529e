import { Command } from 'commander';
import { systemClock } from '../clock.js';
import { buildAgentCommand } from './agent-command.js';
import { buildCaCommand, type CliIo } from './ca-commands.js';
import { buildDemoCommand } from './demo.js';
import { reportCliError } from './errors.js';
import { buildInspectCommand } from './inspect-command.js';
import { buildProxyCommand } from './proxy-command.js';
import { buildTokenCommand } from './token-command.js';

export const VERSION = '0.1.0';

export function buildProgram(io: CliIo): Command {
  const program = new Command('meshca')
    .description('SPIFFE certificate authority and mutual-TLS identity for Kubernetes')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();
  program.addCommand(buildCaCommand(io));
  program.addCommand(buildInspectCommand(io));
  program.addCommand(buildAgentCommand(io));
  program.addCommand(buildProxyCommand(io));
  program.addCommand(buildTokenCommand(io));
  program.addCommand(buildDemoCommand(io));
  return program;
}

/** Runs the CLI and returns the exit code; never throws. */
export async function runCli(argv: readonly string[], io: Partial<CliIo> = {}): Promise<number> {
  const full: CliIo = {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    clock: io.clock ?? systemClock,
    env: io.env ?? process.env,
  };
  const program = buildProgram(full);
  const configure = (cmd: Command): void => {
    cmd.exitOverride().configureOutput({ writeOut: (s) => full.stdout.write(s), writeErr: (s) => full.stderr.write(s) });
    cmd.commands.forEach(configure);
  };
  configure(program);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    const e = err as { code?: string; exitCode?: number };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
      // Commander already printed help, version or the usage error.
      return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2;
    }
    return reportCliError(err, full.stderr);
  }
}
