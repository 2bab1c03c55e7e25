"""`Service` and `exports`: a service is a class with a router, migrations and
subscriptions; `exports(MyService)` gives the five classes componentize-py looks for in the
app module (`IncomingHandler`, `Migrations`, `EventHandler`, `CommandHandler`,
`SagaHandler`), as the Rust SDK's `service!` macro exports all four silo interfaces and
`wasi:http/incoming-handler` whether or not the service uses them.
"""

import traceback

from componentize_py_types import Err
from wit_world import exports as wit_exports
from wit_world.exports import command_handler as wit_commands
from wit_world.exports import migrations as wit_migrations

from .errors import ApiError
from .http import Response
from .store import Tx
from .subscriptions import Subscriptions
from .wasi import read_request, write_response


class Service:
    """Override `router`; the rest are optional."""

    @classmethod
    def router(cls):
        raise NotImplementedError

    @classmethod
    def migrations(cls):
        """`[(store, version, description, statements), …]`, oldest first."""
        return []

    @classmethod
    def subscriptions(cls):
        return Subscriptions()


def _failure(exc):
    """An export's `err` string: the exception and where it came from, for the host's log."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def exports(service):
    """The export classes for `service`:
    `IncomingHandler, Migrations, EventHandler, CommandHandler, SagaHandler = exports(S)`."""

    class IncomingHandler(wit_exports.IncomingHandler):
        def handle(self, request, response_out):
            try:
                req = read_request(request)
            except ApiError as err:
                response = Response.error(err)
            else:
                response = service.router().handle(req)
            write_response(response, response_out)

    class Migrations(wit_exports.Migrations):
        def migrations(self):
            return [wit_migrations.Migration(*step) for step in service.migrations()]

    class EventHandler(wit_exports.EventHandler):
        def handle(self, event, tx):
            handler = service.subscriptions().handler_for(event.source, event.topic)
            if handler is None:
                raise Err(f"no handler for {event.source}/{event.topic}")
            try:
                handler(event, Tx(tx))
            except Exception as exc:  # the host retries the event later
                raise Err(_failure(exc)) from None

    class CommandHandler(wit_exports.CommandHandler):
        def handle(self, command, tx):
            raise Err(f"no handler for command {command.name}")

    class SagaHandler(wit_exports.SagaHandler):
        def finished(self, saga, tx):
            return None

    _ = wit_commands  # the Reply types live there, for services that add commands
    return IncomingHandler, Migrations, EventHandler, CommandHandler, SagaHandler
