import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { AuthzDeniedError, CaNotReadyError, CsrError, errorFromCode, IdentityError, isErrorCode, type ErrorCode } from '../../src/errors.js';
import { errorFromWire, GRPC_STATUS, HTTP_STATUS, toPublicError } from '../../src/transport/status.js';

const CODES = Object.keys(HTTP_STATUS) as ErrorCode[];

describe('the error vocabulary', () => {
  test('every code has an HTTP and a gRPC status, and rebuilds as a subclass carrying that code', () => {
    assert.deepEqual(Object.keys(GRPC_STATUS).sort(), [...CODES].sort());
    for (const code of CODES) {
      assert.ok(isErrorCode(code), code);
      const err = errorFromCode(code, 'why', { rule: 'r' });
      assert.ok(err instanceof IdentityError && err.constructor !== IdentityError, `${code} has its own class`);
      assert.equal(err.code, code);
      assert.equal(err.rule, 'r');
    }
  });

  test('a string that is not one of ours is not an ErrorCode', () => {
    for (const value of ['', 'ERR_NOPE', 'err_csr_invalid', 'ERR_TLS_CERT_ALTNAME_INVALID', 42, undefined, 'constructor', '__proto__']) assert.equal(isErrorCode(value), false, String(value));
  });

  test('the public error of a server fault is opaque, whatever the fault', () => {
    for (const err of [new TypeError('bug'), errorFromCode('ERR_CA_INVALID', 'key on disk'), errorFromCode('ERR_CONFIG_INVALID', 'flag'), errorFromCode('ERR_INTERNAL', 'detail')]) {
      assert.deepEqual(toPublicError(err), { code: 'ERR_INTERNAL', message: 'internal error', httpStatus: 500, grpcStatus: 13 });
    }
  });

  test('a client keeps the code the server sent; without one (Istio) it keeps what the status said', () => {
    const derived = new CsrError('CA at x rejected the certificate request: ttl too long', { rule: 'ca-rejected-request' });
    const ttl = errorFromWire('ERR_TTL_INVALID', derived);
    assert.equal(ttl.code, 'ERR_TTL_INVALID');
    assert.equal(ttl.message, derived.message);
    assert.equal(ttl.rule, 'ca-rejected-request');
    assert.equal(errorFromWire(undefined, derived), derived);
    assert.equal(errorFromWire('ERR_FROM_THE_FUTURE', derived), derived);
    assert.equal(errorFromWire(['ERR_TTL_INVALID'], derived), derived);
    const denied = errorFromWire('ERR_AUTHZ_DENIED', new CaNotReadyError('x', { rule: 'ca-denied' }));
    assert.ok(denied instanceof AuthzDeniedError);
  });

  test('a server fault the CA reports stays retryable for the client', () => {
    const derived = new CaNotReadyError('CA at x failed: INTERNAL', { rule: 'ca-error' });
    for (const code of ['ERR_INTERNAL', 'ERR_CA_NOT_READY', 'ERR_CA_INVALID', 'ERR_CONFIG_INVALID']) assert.equal(errorFromWire(code, derived), derived, code);
  });
});
