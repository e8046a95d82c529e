import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { parseAllDocuments, stringify } from 'yaml';
import { parseInjectionSettings, type InjectionOptionValues } from '../config/injection-config.js';
import { ConfigError } from '../errors.js';
import { injectManifest } from '../inject/manifest-injection.js';
import { envOption } from './agent-options.js';
import { readStdin, type CliIo } from './cli-common.js';
import { VERSION } from '../version.js';

/** The flags that say what to inject, shared with `ca serve --sidecar-injector`. */
export function addInjectionOptions(command: Command, io: CliIo): Command {
  return command
    .addOption(envOption(io, '--sidecar-image <ref>', `meshca image of the injected sidecar (default meshca:${VERSION})`, 'MESHCA_SIDECAR_IMAGE'))
    .addOption(envOption(io, '--sidecar-image-pull-policy <policy>', 'Always, IfNotPresent or Never (default IfNotPresent)', 'MESHCA_SIDECAR_IMAGE_PULL_POLICY'))
    .addOption(envOption(io, '--sidecar-ca-address <host:port>', "the CA's gRPC address as pods reach it (default meshca.meshca.svc:15012)", 'MESHCA_SIDECAR_CA_ADDRESS'))
    .addOption(envOption(io, '--root-configmap <name>', 'ConfigMap with the mesh root, key root-cert.pem (default meshca-root-cert; Istio: istio-ca-root-cert)', 'MESHCA_ROOT_CONFIGMAP'));
}

/** `meshca inject -f app.yaml`: like `istioctl kube-inject`, the manifest back with the sidecar added. */
export function buildInjectCommand(io: CliIo): Command {
  return addInjectionOptions(new Command('inject'), io)
    .addOption(new Option('-f, --filename <file>', 'Kubernetes YAML (multi-document; - for stdin)').makeOptionMandatory())
    .action(async (opts: InjectionOptionValues & { filename: string }) => {
      const settings = parseInjectionSettings(opts, VERSION);
      const text = opts.filename === '-' ? await readStdin(io) : await readFile(opts.filename, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new ConfigError([`-f ${opts.filename}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`], { cause: err });
      });
      const parsed = parseAllDocuments(text);
      const problems = parsed.flatMap((d, i) => d.errors.map((e) => `-f ${opts.filename}: document ${i + 1}: ${e.message.split('\n')[0]}`));
      if (problems.length > 0) throw new ConfigError(problems);
      const documents = parsed.map((d) => d.toJSON() as unknown);
      const { documents: out, notes } = injectManifest(documents, settings);
      // Empty documents (a trailing ---) are dropped, as kubectl does.
      io.stdout.write(out.filter((d) => d !== null && d !== undefined).map((d) => stringify(d, { lineWidth: 0 })).join('---\n'));
      for (const note of notes) io.stderr.write(`meshca inject: ${note}\n`);
    });
}
