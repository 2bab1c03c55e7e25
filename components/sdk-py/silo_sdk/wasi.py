"""The wasi:http edge: reads an `incoming-request` into a `Request` and writes a `Response`
to the `response-outparam`. Nothing else in the SDK touches wasi:http."""

from componentize_py_types import Err, Ok
from wit_world.imports import streams
from wit_world.imports import wasi_http_types as http

from .errors import ApiError
from .http import Request

MAX_BODY_BYTES = 1024 * 1024
READ_CHUNK = 64 * 1024
WRITE_CHUNK = 4096


def _method(method):
    if isinstance(method, http.Method_Other):
        return method.value
    return type(method).__name__.removeprefix("Method_").upper()


def read_request(incoming):
    path = incoming.path_with_query() or "/"
    with incoming.headers() as fields:
        headers = fields.entries()
    request = Request(_method(incoming.method()), path, headers)
    body = incoming.consume()
    stream = body.stream()
    chunks, size = [], 0
    try:
        while True:
            try:
                chunk = stream.blocking_read(READ_CHUNK)
            except Err as err:
                if isinstance(err.value, streams.StreamError_Closed):
                    break
                raise ApiError.bad_request("reading the request body failed") from None
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ApiError.payload_too_large(
                    f"the request body is larger than {MAX_BODY_BYTES} bytes"
                )
            chunks.append(chunk)
    finally:
        # The stream is a child of the body: it goes first.
        stream.__exit__(None, None, None)
        http.IncomingBody.finish(body).__exit__(None, None, None)
    request.body = b"".join(chunks)
    return request


def write_response(response, out):
    headers = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in response.headers]
    if response.header("content-length") is None:
        headers.append(("content-length", str(len(response.body)).encode()))
    try:
        fields = http.Fields.from_list(headers)
    except Err:
        # A header the host refuses is a bug in the service; answer without its headers.
        fields = http.Fields.from_list([("content-length", str(len(response.body)).encode())])
    outgoing = http.OutgoingResponse(fields)
    try:
        outgoing.set_status_code(response.status)
    except Err:
        outgoing.set_status_code(500)
    body = outgoing.body()
    http.ResponseOutparam.set(out, Ok(outgoing))
    stream = body.write()
    try:
        data = response.body
        for start in range(0, len(data), WRITE_CHUNK):
            stream.blocking_write_and_flush(data[start : start + WRITE_CHUNK])
    except Err:
        pass  # the client went away; nothing is left to tell it
    finally:
        stream.__exit__(None, None, None)
    http.OutgoingBody.finish(body, None)
