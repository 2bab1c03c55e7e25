"""`ApiError`: the one error a handler raises, and how it becomes the contract's JSON body.

Every error a client sees has the body `{"error":{"code":"…","message":"…"}}` with a 4xx or
5xx status, as in the Rust SDK (`components/sdk/src/error.rs`). Pure Python: no bindings.
"""

import json


class ApiError(Exception):
    """A failed request: an HTTP `status`, a `snake_case` `code` and a human `message`."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def bad_request(cls, message):
        return cls(400, "bad_request", message)

    @classmethod
    def forbidden(cls, message):
        return cls(403, "forbidden", message)

    @classmethod
    def not_found(cls, message):
        return cls(404, "not_found", message)

    @classmethod
    def method_not_allowed(cls, message):
        return cls(405, "method_not_allowed", message)

    @classmethod
    def conflict(cls, message):
        return cls(409, "conflict", message)

    @classmethod
    def payload_too_large(cls, message):
        return cls(413, "payload_too_large", message)

    @classmethod
    def unprocessable(cls, message):
        return cls(422, "unprocessable", message)

    @classmethod
    def internal(cls, message):
        return cls(500, "internal", message)

    @classmethod
    def unavailable(cls, message):
        return cls(503, "unavailable", message)

    def body(self):
        """The JSON body: `{"error":{"code":"…","message":"…"}}` (compact, like the Rust SDK)."""
        return json.dumps(
            {"error": {"code": self.code, "message": self.message}},
            separators=(",", ":"),
            ensure_ascii=False,
        )


class StoreError(Exception):
    """A store capability failed: `kind` is the WIT `types.error` case (`access-denied`,
    `constraint-violation`, `bad-query`, `limit-exceeded`, `unavailable`, `invalid-handle`,
    `other`), `message` the host's explanation."""

    def __init__(self, kind, message):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


# How a store failure reaches the client (the Rust SDK's `From<SqlError> for ApiError`).
_STORE_STATUS = {
    "constraint-violation": (409, "conflict"),
    "access-denied": (403, "forbidden"),
    "unavailable": (503, "unavailable"),
    "limit-exceeded": (503, "unavailable"),
}


def api_error_of(err):
    """The `ApiError` a client sees for any exception a handler let through: an `ApiError`
    as is, a `StoreError` mapped by kind, anything else a 500 `internal`."""
    if isinstance(err, ApiError):
        return err
    if isinstance(err, StoreError):
        status, code = _STORE_STATUS.get(err.kind, (500, "internal"))
        return ApiError(status, code, str(err))
    return ApiError.internal(f"{type(err).__name__}: {err}")
