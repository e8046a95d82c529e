/**
 * The injector's settings from flags (`meshca inject` and the CA's webhook share them): checked
 * once, every problem listed, so a typo never injects a sidecar that cannot start.
 */
import { isDns1123Subdomain } from '../authn/authenticator.js';
import { ConfigError } from '../errors.js';
import { DEFAULT_INJECTION_SETTINGS, type InjectionSettings } from '../inject/pod-injection.js';

export interface InjectionOptionValues {
  readonly sidecarImage?: string;
  readonly sidecarImagePullPolicy?: string;
  readonly sidecarCaAddress?: string;
  readonly rootConfigMap?: string;
}

const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;

export function parseInjectionSettings(values: InjectionOptionValues, version: string): InjectionSettings {
  const problems: string[] = [];
  const image = values.sidecarImage ?? `meshca:${version}`;
  // An image reference: [registry/]name[:tag][@digest]; whitespace or an empty name would only fail at pull time.
  if (!/^[a-z0-9][a-z0-9._\-/:]*(@sha256:[a-f0-9]{64})?$/i.test(image)) problems.push(`--sidecar-image ${JSON.stringify(image)} is not an image reference`);
  const pull = values.sidecarImagePullPolicy ?? DEFAULT_INJECTION_SETTINGS.imagePullPolicy;
  if (!(PULL_POLICIES as readonly string[]).includes(pull)) problems.push(`--sidecar-image-pull-policy must be one of ${PULL_POLICIES.join(', ')}, not ${JSON.stringify(pull)}`);
  const caAddress = values.sidecarCaAddress ?? DEFAULT_INJECTION_SETTINGS.caAddress;
  const hostPort = /^(.+):([0-9]{1,5})$/.exec(caAddress);
  if (!hostPort || Number(hostPort[2]) < 1 || Number(hostPort[2]) > 65535) problems.push(`--sidecar-ca-address ${JSON.stringify(caAddress)} must be host:port, e.g. meshca.meshca.svc:15012`);
  const rootConfigMap = values.rootConfigMap ?? DEFAULT_INJECTION_SETTINGS.rootConfigMap;
  if (!isDns1123Subdomain(rootConfigMap)) problems.push(`--root-configmap ${JSON.stringify(rootConfigMap)} is not a ConfigMap name`);
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({ ...DEFAULT_INJECTION_SETTINGS, image, imagePullPolicy: pull as InjectionSettings['imagePullPolicy'], caAddress, rootConfigMap, version });
}
