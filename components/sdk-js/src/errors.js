// ApiError: the one error a handler throws, and how it becomes the contract's JSON body
// `{"error":{"code":"…","message":"…"}}` (as the Rust SDK's components/sdk/src/error.rs).
// Pure JavaScript: no bindings.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.detail = message;
  }

  static badRequest(message) { return new ApiError(400, 'bad_request', message); }
  static forbidden(message) { return new ApiError(403, 'forbidden', message); }
  static notFound(message) { return new ApiError(404, 'not_found', message); }
  static methodNotAllowed(message) { return new ApiError(405, 'method_not_allowed', message); }
  static conflict(message) { return new ApiError(409, 'conflict', message); }
  static payloadTooLarge(message) { return new ApiError(413, 'payload_too_large', message); }
  static unprocessable(message) { return new ApiError(422, 'unprocessable', message); }
  static internal(message) { return new ApiError(500, 'internal', message); }
  static unavailable(message) { return new ApiError(503, 'unavailable', message); }

  /** The JSON body: `{"error":{"code":"…","message":"…"}}`. */
  body() {
    return JSON.stringify({ error: { code: this.code, message: this.detail } });
  }
}

/** A store capability failed: `kind` is the WIT `types.error` case (`access-denied`,
 * `constraint-violation`, `bad-query`, `limit-exceeded`, `unavailable`, `invalid-handle`,
 * `other`), `detail` the host's explanation. */
export class StoreError extends Error {
  constructor(kind, detail) {
    super(`${kind}: ${detail}`);
    this.kind = kind;
    this.detail = detail;
  }
}

// How a store failure reaches the client (the Rust SDK's `From<SqlError> for ApiError`).
const STORE_STATUS = {
  'constraint-violation': [409, 'conflict'],
  'access-denied': [403, 'forbidden'],
  unavailable: [503, 'unavailable'],
  'limit-exceeded': [503, 'unavailable'],
};

/** The ApiError a client sees for anything a handler threw: an ApiError as is, a
 * StoreError by kind, anything else a 500 `internal`. */
export function apiErrorOf(err) {
  if (err instanceof ApiError) return err;
  if (err instanceof StoreError) {
    const [status, code] = STORE_STATUS[err.kind] ?? [500, 'internal'];
    return new ApiError(status, code, err.message);
  }
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return ApiError.internal(text);
}

/** A StoreError from what a binding threw (componentize-js puts the WIT error variant in
 * `payload`, `{tag, val}`); anything else is returned unchanged. */
export function storeErrorOf(err) {
  const payload = err?.payload;
  if (payload && typeof payload.tag === 'string') return new StoreError(payload.tag, String(payload.val));
  return err;
}
