"""Publishing events (`silo:service/events`): part of a transaction, so the event is
delivered if and only if the writes beside it commit."""

import json

from componentize_py_types import Err
from wit_world.imports import events as wit_events

from .http import JSON
from .store import store_error


def publish(tx, topic, key, value):
    """Publishes `value` as JSON on `topic` with `key` in `tx`. Returns the event id."""
    data = json.dumps(value, separators=(",", ":")).encode()
    return publish_raw(tx, topic, key, JSON, data)


def publish_raw(tx, topic, key, content_type, data):
    try:
        return wit_events.publish(tx.raw, topic, key, content_type, bytes(data))
    except Err as err:
        raise store_error(err) from None
