"""The SDK's pure parts: router, JSON requests and responses, the contract's error body, store
errors' statuses, SQL values and rows. No bindings: run with `python3 -m unittest`."""

import json
import os
import sys
import unittest
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from silo_sdk import (  # noqa: E402
    ApiError,
    Request,
    Response,
    Router,
    StoreError,
    Subscriptions,
    api_error_of,
    event_json,
    row_dicts,
    value_case,
)


def body(response):
    return json.loads(response.body)


class RouterTest(unittest.TestCase):
    def setUp(self):
        self.router = (
            Router()
            .get("/items/{id}", lambda req: Response.ok({"id": req.param("id")}))
            .post("/items", lambda req: Response.created(req.json()))
            .get("/items/{id}/parts/{part}", lambda req: dict(req.params))
        )

    def test_params_are_matched_and_percent_decoded(self):
        r = self.router.handle(Request("GET", "/items/a%20b"))
        self.assertEqual((r.status, body(r)), (200, {"id": "a b"}))
        r = self.router.handle(Request("GET", "/items/1/parts/2"))
        self.assertEqual(body(r), {"id": "1", "part": "2"})

    def test_a_trailing_slash_is_ignored_but_an_empty_param_is_not_a_match(self):
        self.assertEqual(self.router.handle(Request("GET", "/items/7/")).status, 200)
        r = self.router.handle(Request("GET", "/items/"))
        self.assertEqual(r.status, 405)  # `/items` exists, with POST

    def test_unknown_path_is_404_with_the_contract_body(self):
        r = self.router.handle(Request("GET", "/nope/1"))
        self.assertEqual(r.status, 404)
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertEqual(
            r.body, b'{"error":{"code":"not_found","message":"no route for GET /nope/1"}}'
        )

    def test_wrong_method_is_405_with_allow(self):
        r = self.router.handle(Request("DELETE", "/items/1"))
        self.assertEqual((r.status, body(r)["error"]["code"]), (405, "method_not_allowed"))
        self.assertEqual(r.header("allow"), "GET")

    def test_bad_json_body_is_400(self):
        r = self.router.handle(Request("POST", "/items", body=b"{nope"))
        self.assertEqual((r.status, body(r)["error"]["code"]), (400, "bad_request"))

    def test_json_body_round_trips_and_a_plain_value_is_200_json(self):
        r = self.router.handle(Request("POST", "/items", body=b'{"name":"\xc3\xa9"}'))
        self.assertEqual((r.status, body(r)), (201, {"name": "é"}))

    def test_an_unexpected_exception_is_500_internal(self):
        router = Router().get("/boom", lambda req: 1 / 0)
        r = router.handle(Request("GET", "/boom"))
        self.assertEqual(r.status, 500)
        self.assertEqual(body(r)["error"]["code"], "internal")
        self.assertIn("ZeroDivisionError", body(r)["error"]["message"])

    def test_decorator_form_registers_the_route(self):
        router = Router()

        @router.get("/hello/{name}")
        def hello(req):
            return {"hello": req.param("name")}

        self.assertEqual(body(router.handle(Request("GET", "/hello/ada"))), {"hello": "ada"})


class RequestTest(unittest.TestCase):
    def test_query_headers_and_path(self):
        req = Request("get", "/n?userId=u%201&x=1&x=2&empty=", [("Content-Type", b"text/plain")])
        self.assertEqual(req.method, "GET")
        self.assertEqual(req.path, "/n")
        self.assertEqual(req.query, {"userId": "u 1", "x": "1", "empty": ""})
        self.assertEqual(req.header("content-type"), "text/plain")


class ErrorTest(unittest.TestCase):
    def test_body_is_exactly_the_contract_shape(self):
        err = ApiError.not_found('no user "u1"')
        self.assertEqual(err.body(), '{"error":{"code":"not_found","message":"no user \\"u1\\""}}')
        r = Response.error(err)
        self.assertEqual((r.status, r.header("Content-Type")), (404, "application/json"))

    def test_store_errors_map_to_statuses_as_in_the_rust_sdk(self):
        cases = [
            ("constraint-violation", 409, "conflict"),
            ("access-denied", 403, "forbidden"),
            ("unavailable", 503, "unavailable"),
            ("limit-exceeded", 503, "unavailable"),
            ("bad-query", 500, "internal"),
            ("invalid-handle", 500, "internal"),
            ("other", 500, "internal"),
        ]
        for kind, status, code in cases:
            err = api_error_of(StoreError(kind, "x"))
            self.assertEqual((err.status, err.code), (status, code), kind)


class RowsTest(unittest.TestCase):
    def test_python_values_to_value_cases(self):
        self.assertEqual(value_case(None), ("null", None))
        self.assertEqual(value_case(True), ("integer", 1))
        self.assertEqual(value_case(7), ("integer", 7))
        self.assertEqual(value_case(1.5), ("real", 1.5))
        self.assertEqual(value_case("t"), ("text", "t"))
        self.assertEqual(value_case(bytearray(b"\x00")), ("blob", b"\x00"))
        with self.assertRaises(TypeError):
            value_case({"a": 1})

    def test_row_sets_become_dicts(self):
        v = SimpleNamespace
        row_set = v(
            columns=["id", "n", "gone"],
            rows=[[v(value="a"), v(value=2), v()], [v(value="b"), v(value=3), v(value=None)]],
        )
        self.assertEqual(
            row_dicts(row_set),
            [{"id": "a", "n": 2, "gone": None}, {"id": "b", "n": 3, "gone": None}],
        )


class SubscriptionsTest(unittest.TestCase):
    def test_first_matching_handler_wins_and_any_catches_the_rest(self):
        subs = Subscriptions().on("orders", "OrderApproved", "approved").on_any("rest")
        self.assertEqual(subs.handler_for("orders", "OrderApproved"), "approved")
        self.assertEqual(subs.handler_for("users", "UserUpdated"), "rest")
        self.assertIsNone(Subscriptions().on("a", "b", "h").handler_for("a", "c"))

    def test_event_json_names_the_event_when_data_is_bad(self):
        event = SimpleNamespace(id="evt_1", source="orders", topic="T", data=b"{")
        with self.assertRaisesRegex(ValueError, "orders/T event evt_1"):
            event_json(event)
        event.data = b'{"a":1}'
        self.assertEqual(event_json(event), {"a": 1})


if __name__ == "__main__":
    unittest.main()
