"""silo_sdk: write a silo service in Python — routes, JSON, SQL rows, kv and events.

Pure parts (importable anywhere, tested by `make test`): `ApiError`, `StoreError`,
`Request`, `Response`, `Router`, `Subscriptions`, `row_dicts`. The parts over the
bindings componentize-py generates from `wit/` (`Db`, `Tx`, `Kv`, `publish`, `exports`)
load only inside a component: import them from `silo_sdk.component`.
"""

from .errors import ApiError, StoreError, api_error_of
from .http import Request, Response
from .router import Router
from .rows import row_dicts, value_case
from .subscriptions import Subscriptions, event_json

__all__ = [
    "ApiError",
    "Request",
    "Response",
    "Router",
    "StoreError",
    "Subscriptions",
    "api_error_of",
    "event_json",
    "row_dicts",
    "value_case",
]
