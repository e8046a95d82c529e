import { Command } from 'commander';
import { systemClock } from '../clock.js';
import type { CliIo } from './cli-common.js';
import { reportCliError } from './errors.js';

import { VERSION } from '../version.js';

export { VERSION };

interface Subcommand {
  readonly name: string;
  readonly description: string;
  readonly load: () => Promise<(io: CliIo) => Command>;
}

/**
 * Every subcommand, loaded only when it is the one being run: a sidecar never loads the CA's
 * Kubernetes client, and `meshca --help` loads none of them. The descriptions live here, once,
 * because the top-level help lists them without loading the commands.
 */
const SUBCOMMANDS: readonly Subcommand[] = [
  { name: 'ca', description: 'manage and run the certificate authority', load: async () => (await import('./ca-commands.js')).buildCaCommand },
  {
    name: 'inspect',
    description: 'show certificates and CSRs in PEM files, SPIFFE-aware (SPIFFE ID, time left, key, extensions)',
    load: async () => (await import('./inspect-command.js')).buildInspectCommand,
  },
  {
    name: 'agent',
    description: "obtain and rotate this workload's X.509-SVID from the CA; write it to files and serve the SPIFFE Workload API",
    load: async () => (await import('./agent-command.js')).buildAgentCommand,
  },
  {
    name: 'sidecar',
    description: "a pod's one meshca process: the agent, the inbound proxy (mTLS + policy in front of the app) and the outbound proxy, sharing the SVID in memory",
    load: async () => (await import('./sidecar-command.js')).buildSidecarCommand,
  },
  {
    name: 'proxy',
    description: 'terminate mTLS in front of a plain HTTP app and enforce policy (or, with --outbound, originate mTLS)',
    load: async () => (await import('./proxy-command.js')).buildProxyCommand,
  },
  {
    name: 'inject',
    description: 'add the meshca sidecar to the workloads of a Kubernetes manifest (like istioctl kube-inject)',
    load: async () => (await import('./inject-command.js')).buildInjectCommand,
  },
  {
    name: 'token',
    description: 'print a Kubernetes-shaped service-account token signed by the dev issuer (for --auth dev)',
    load: async () => (await import('./token-command.js')).buildTokenCommand,
  },
  {
    name: 'demo',
    description: 'run meshca end to end on this machine: CA, agents, mTLS and policy (no cluster needed)',
    load: async () => (await import('./demo.js')).buildDemoCommand,
  },
];

/** The subcommand `argv` runs (`meshca <name> …` or `meshca help <name>`), if any. */
function selected(argv: readonly string[]): Subcommand | undefined {
  const first = argv.findIndex((a) => !a.startsWith('-'));
  const name = argv[first] === 'help' ? argv[first + 1] : argv[first];
  return SUBCOMMANDS.find((c) => c.name === name);
}

/**
 * The program with the subcommand `argv` selects fully built, and the others as names with
 * their descriptions (enough for the top-level help and for commander's unknown-command error).
 */
export async function buildProgram(io: CliIo, argv: readonly string[] = []): Promise<Command> {
  const program = new Command('meshca')
    .description('SPIFFE certificate authority and mutual-TLS identity for Kubernetes')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();
  const chosen = selected(argv);
  for (const sub of SUBCOMMANDS) {
    const command = sub === chosen ? (await sub.load())(io) : new Command(sub.name);
    program.addCommand(command.description(sub.description));
  }
  return program;
}

/** Runs the CLI and returns the exit code; never throws. */
export async function runCli(argv: readonly string[], io: Partial<CliIo> = {}): Promise<number> {
  const full: CliIo = {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    clock: io.clock ?? systemClock,
    env: io.env ?? process.env,
    stdin: io.stdin ?? process.stdin,
  };
  const configure = (cmd: Command): void => {
    cmd.exitOverride().configureOutput({ writeOut: (s) => full.stdout.write(s), writeErr: (s) => full.stderr.write(s) });
    cmd.commands.forEach(configure);
  };
  try {
    const program = await buildProgram(full, argv);
    configure(program);
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
