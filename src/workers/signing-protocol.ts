import { errorFromCode, type ErrorCode } from '../errors.js';

/** Messages between the signing pool and its workers (structured-clone safe). */
export interface SignJob {
  readonly id: number;
  readonly csr: string | Uint8Array;
  readonly identity: string;
  readonly ttlSeconds: number | undefined;
  /** The main thread's clock, so an injected clock governs validity in workers too. */
  readonly nowMs: number;
}

export interface SignSuccess {
  readonly id: number;
  readonly ok: true;
  readonly certificate: Uint8Array;
  readonly certChainPem: readonly string[];
  readonly serial: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

export interface SignFailure {
  readonly id: number;
  readonly ok: false;
  readonly code: ErrorCode | undefined;
  readonly rule: string | undefined;
  readonly message: string;
}

export type SignReply = SignSuccess | SignFailure;

/** Rebuilds the coded error a worker reported, so callers see the same error as in-process. */
export function reviveError(failure: SignFailure): Error {
  if (failure.code === undefined) return new Error(failure.message);
  return errorFromCode(failure.code, failure.message, { rule: failure.rule });
}
