"""`Request` and `Response`: what a route handler takes and returns. Pure Python.

The wasi:http glue (`silo_sdk.wasi`) builds a `Request` from the incoming request and writes
a `Response` back; handlers never see wasi:http resources.
"""

import json
from urllib.parse import parse_qsl, unquote

from .errors import ApiError

JSON = "application/json"


class Request:
    """One HTTP request: `method` (upper case), `path` (without the query), `query` (a dict of
    the first value of each query parameter), `headers` (lower-case names), `body` (bytes) and
    `params` (the route's `{name}` segments, decoded)."""

    def __init__(self, method, path_with_query, headers=None, body=b""):
        self.method = method.upper()
        path, _, query = path_with_query.partition("?")
        self.path = path or "/"
        self.query_pairs = parse_qsl(query, keep_blank_values=True)
        self.query = {}
        for name, value in self.query_pairs:
            self.query.setdefault(name, value)
        self.headers = {name.lower(): value for name, value in (headers or [])}
        self.body = body
        self.params = {}

    def header(self, name):
        value = self.headers.get(name.lower())
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return value

    def param(self, name):
        """The route parameter `name`; a route without it is a bug: 500."""
        if name not in self.params:
            raise ApiError.internal(f"the route has no parameter {name!r}")
        return self.params[name]

    def json(self):
        """The body parsed as JSON; a body that does not parse is a 400 `bad_request`."""
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as err:
            raise ApiError.bad_request(f"the body is not valid JSON: {err}") from None


class Response:
    """An HTTP response: `status`, `headers` (a list of `(name, value)`) and `body` (bytes)."""

    def __init__(self, status=200, body=b"", headers=None):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else bytes(body)
        self.headers = list(headers or [])

    @classmethod
    def json(cls, value, status=200):
        """`value` as a compact JSON body with `content-type: application/json`."""
        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return cls(status, body, [("content-type", JSON)])

    @classmethod
    def ok(cls, value):
        return cls.json(value, 200)

    @classmethod
    def created(cls, value):
        return cls.json(value, 201)

    @classmethod
    def error(cls, err):
        """The contract's error response for an `ApiError`."""
        return cls(err.status, err.body(), [("content-type", JSON)])

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def decode_segment(segment):
    """A path segment with its percent-escapes decoded (`%20` → space)."""
    return unquote(segment)
