/**
 * One access-log record per proxied request: who asked, what, what the policy said and what
 * came back. Field names follow the project's log vocabulary (`spiffeId`) and Envoy's access log
 * where it has one (`bytesSent`, `durationMs`).
 */
import type { AuditMark, Decision } from '../policy/authorization-policy.js';

export type AccessVerdict = 'allow' | 'deny' | 'refused';

export interface AccessRecord {
  readonly direction: 'inbound' | 'outbound';
  /** The peer's SPIFFE ID (inbound: the client; outbound: the server, once known). */
  readonly spiffeId: string | undefined;
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** `refused`: the proxy answered before policy (framing, expired peer, upstream failure). */
  readonly verdict: AccessVerdict;
  readonly policy?: string | undefined;
  readonly rule?: number | undefined;
  readonly reason?: string | undefined;
  readonly audit?: AuditMark | undefined;
  /** Error code of a refusal or an upstream failure. */
  readonly code?: string | undefined;
  readonly durationMs: number;
  readonly bytesSent: number;
}

/** The decision's part of an access record. */
export function decisionFields(decision: Decision | undefined): Pick<AccessRecord, 'verdict' | 'policy' | 'rule' | 'reason' | 'audit'> {
  if (decision === undefined) return { verdict: 'allow', reason: 'no policy configured' };
  return {
    verdict: decision.allowed ? 'allow' : 'deny',
    policy: decision.policy,
    rule: decision.rule,
    reason: decision.reason,
    ...(decision.audit === undefined ? {} : { audit: decision.audit }),
  };
}
