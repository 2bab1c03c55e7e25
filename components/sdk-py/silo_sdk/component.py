"""The parts of the SDK over the generated bindings (`wit_world`): only inside a component."""

from .events import publish, publish_raw
from .service import Service, exports
from .store import Db, Kv, Tx

__all__ = ["Db", "Kv", "Service", "Tx", "exports", "publish", "publish_raw"]
