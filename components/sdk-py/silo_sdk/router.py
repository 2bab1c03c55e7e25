"""`Router`: maps a method and a path pattern such as `/recommendations/{productId}` to a
handler, like the Rust SDK's router. Pure Python.

Routes are tried in the order they were added; the first whose pattern matches the path and
whose method matches wins. A path some route matches with another method is a 405 with an
`allow` header; a path no route matches is a 404. A single trailing slash is ignored. Errors
are the contract's JSON body; an exception other than `ApiError` is a 500.
"""

from .errors import ApiError, api_error_of
from .http import Response, decode_segment


def _split(path):
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path.split("/")[1:] if path.startswith("/") else path.split("/")


class Router:
    def __init__(self):
        self._routes = []

    def route(self, method, pattern, handler=None):
        """Adds `handler` for `method` on `pattern`; without a handler, a decorator."""
        if handler is None:
            return lambda fn: (self.route(method, pattern, fn), fn)[1]
        segments = []
        for part in _split(pattern):
            if part.startswith("{") and part.endswith("}") and len(part) > 2:
                segments.append(("param", part[1:-1]))
            else:
                segments.append(("literal", part))
        self._routes.append((method.upper(), segments, handler))
        return self

    def get(self, pattern, handler=None):
        return self.route("GET", pattern, handler)

    def post(self, pattern, handler=None):
        return self.route("POST", pattern, handler)

    def put(self, pattern, handler=None):
        return self.route("PUT", pattern, handler)

    def patch(self, pattern, handler=None):
        return self.route("PATCH", pattern, handler)

    def delete(self, pattern, handler=None):
        return self.route("DELETE", pattern, handler)

    def match(self, method, path):
        """`(handler, params)` for the route matching, or raises the 404/405 `ApiError`."""
        parts = _split(path)
        allowed = []
        for route_method, segments, handler in self._routes:
            params = _match(segments, parts)
            if params is None:
                continue
            if route_method == method.upper():
                return handler, params
            if route_method not in allowed:
                allowed.append(route_method)
        if allowed:
            err = ApiError.method_not_allowed(f"{method} is not allowed on {path}")
            err.allow = ", ".join(allowed)
            raise err
        raise ApiError.not_found(f"no route for {method} {path}")

    def handle(self, request):
        """The response to `request`: the handler's, or the contract's error JSON."""
        try:
            handler, params = self.match(request.method, request.path)
            request.params = params
            response = handler(request)
            if not isinstance(response, Response):
                response = Response.json(response)
            return response
        except Exception as exc:  # every failure becomes the contract's error body
            err = api_error_of(exc)
            response = Response.error(err)
            if getattr(err, "allow", None):
                response.headers.append(("allow", err.allow))
            return response


def _match(segments, parts):
    if len(segments) != len(parts):
        return None
    params = {}
    for (kind, name), part in zip(segments, parts):
        if kind == "literal":
            if name != part:
                return None
        else:
            if part == "":
                return None
            params[name] = decode_segment(part)
    return params
