"""`Subscriptions`: a service's event handlers by source and topic, as the Rust SDK's
`Subscriptions::new().on(source, topic, handler)`. Pure Python.

The host calls the handler matching each delivered event with a `Tx` that already holds the
event's inbox record; the handler's writes commit with that record when it returns, so an
event never applies twice. A raised exception discards them and the host retries later.
"""

import json


class Subscriptions:
    def __init__(self):
        self._handlers = []

    def on(self, source, topic, handler=None):
        """Handles `topic` events published by the service `source`; without a handler, a
        decorator."""
        if handler is None:
            return lambda fn: (self.on(source, topic, fn), fn)[1]
        self._handlers.append((source, topic, handler))
        return self

    def on_any(self, handler):
        """Handles every event no earlier subscription took (belongs last)."""
        self._handlers.append((None, None, handler))
        return self

    def handler_for(self, source, topic):
        """The first matching handler, or None (a mismatch with the manifest)."""
        for s, t, handler in self._handlers:
            if s is None or (s == source and t == topic):
                return handler
        return None


def event_json(event):
    """The event's data parsed as JSON; data that does not parse raises `ValueError` naming
    the event (the host then retries it: accept every payload publishers ever sent)."""
    try:
        return json.loads(bytes(event.data))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{event.source}/{event.topic} event {event.id}: invalid JSON data: {err}"
        ) from None
