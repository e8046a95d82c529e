import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from '../clock.js';
import { silentLogger, type Logger } from '../log.js';
import type { KeyKind } from '../pki/algorithms.js';
import { exportPrivateKeyPem, generateKey } from '../pki/keys.js';
import type { CertificateAuthority } from './certificate-authority.js';

export interface ServingCertificate {
  /** Leaf first, then the issuer chain, as one PEM text. */
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly rootsPem: string;
  readonly serial: string;
  readonly notAfter: Date;
}

export interface ServingCertificateOptions {
  /** Read at each renewal, so a CA whose authority rotates can be passed as a delegating view. */
  readonly ca: Pick<CertificateAuthority, 'issueServingCertificate' | 'rootsPem'>;
  readonly dnsNames: readonly string[];
  /** IP addresses clients may dial the CA by (`--ca-address 127.0.0.1:15012`). */
  readonly ipAddresses?: readonly string[];
  readonly clock: Clock;
  /** Default 24 h, renewed at half its life like any workload SVID. */
  readonly ttlSeconds?: number;
  readonly keyKind?: KeyKind;
  readonly retryDelayMs?: number;
  readonly logger?: Logger;
}

/**
 * The CA's own TLS certificate, issued by itself and renewed before it expires, so clients
 * verify the CA with the same `root-cert.pem` they trust for workloads. Emits 'update'.
 */
export class ServingCertificateManager extends EventEmitter<{ update: [ServingCertificate] }> {
  readonly #options: ServingCertificateOptions;
  readonly #logger: Logger;
  #current: ServingCertificate | undefined;
  #timer: TimerHandle | undefined;
  #closed = false;

  constructor(options: ServingCertificateOptions) {
    super();
    if (options.dnsNames.length === 0) throw new TypeError('a serving certificate needs at least one DNS name');
    this.#options = options;
    this.#logger = (options.logger ?? silentLogger).child({ component: 'serving-certificate' });
  }

  get current(): ServingCertificate {
    if (!this.#current) throw new Error('serving certificate not issued yet: call start()');
    return this.#current;
  }

  async start(): Promise<ServingCertificate> {
    await this.#renew();
    return this.current;
  }

  /** Renews now (e.g. after the CA's authority changed) instead of at half-life. */
  async renew(): Promise<ServingCertificate> {
    if (this.#timer) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#renew();
    return this.current;
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #renew(): Promise<void> {
    const { ca, clock, dnsNames } = this.#options;
    const { privateKey, publicKey } = await generateKey(this.#options.keyKind ?? 'ec-p256');
    const issued = await ca.issueServingCertificate(publicKey, {
      dnsNames,
      ipAddresses: this.#options.ipAddresses ?? [],
      ttlSeconds: this.#options.ttlSeconds ?? 86_400,
    });
    this.#current = Object.freeze({
      certChainPem: issued.certChainPem.join(''),
      keyPem: exportPrivateKeyPem(privateKey),
      rootsPem: ca.rootsPem,
      serial: issued.serial,
      notAfter: issued.notAfter,
    });
    this.#logger.info({ serial: issued.serial, notAfter: issued.notAfter.toISOString(), dnsNames }, 'serving certificate issued');
    const halfLife = (issued.notAfter.getTime() - issued.notBefore.getTime()) / 2;
    const renewAt = issued.notBefore.getTime() + halfLife;
    this.#schedule(Math.max(0, renewAt - clock.now().getTime()));
    this.emit('update', this.#current);
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    this.#timer = this.#options.clock.setTimeout(() => {
      this.#renew().catch((err: unknown) => {
        this.#logger.error({ err }, 'serving certificate renewal failed; retrying');
        this.#schedule(this.#options.retryDelayMs ?? 60_000);
      });
    }, delayMs);
  }
}
