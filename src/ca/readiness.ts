/**
 * When the CA should receive traffic. `/readyz` answers from this, so a Kubernetes Service
 * stops sending calls to a replica that would only refuse them, and takes it back by itself.
 */
export interface ReadinessInput {
  readonly now: Date;
  /** Set from the moment shutdown starts: in-flight calls finish, new ones go elsewhere. */
  readonly draining: boolean;
  /** The active signing authority's end: past it, every issuance fails. */
  readonly authorityNotAfter: Date;
  /** The TLS serving certificate's end, when the CA serves TLS: past it, clients cannot connect. */
  readonly servingNotAfter?: Date;
  /** Why the authentication backend cannot give verdicts (TokenReview unreachable), if it cannot. */
  readonly authBackendProblem?: string | undefined;
}

/** Why the CA cannot serve right now, or undefined when it can. */
export function caNotReadyReason(input: ReadinessInput): string | undefined {
  if (input.draining) return 'shutting down';
  const now = input.now.getTime();
  if (now >= input.authorityNotAfter.getTime()) {
    return `the CA certificate expired at ${input.authorityNotAfter.toISOString()}; activate a new authority (meshca ca rotate)`;
  }
  if (input.servingNotAfter && now >= input.servingNotAfter.getTime()) {
    return `the serving certificate expired at ${input.servingNotAfter.toISOString()} and could not be renewed`;
  }
  if (input.authBackendProblem !== undefined) return input.authBackendProblem;
  return undefined;
}
