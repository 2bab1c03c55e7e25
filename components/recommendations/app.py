"""recommendations: "bought together" counts from orders' `OrderApproved` events, in Python.

When user U's approved order for product P arrives, every other product Q that U bought
before gets count(P,Q) and count(Q,P) raised by one; the host's inbox applies each event once.
`GET /recommendations/{productId}` lists the products bought together with it, most often
first. Built with componentize-py against silo's WIT (see the Makefile's `python` target).
"""

from silo_sdk import ApiError, Response, Router, Subscriptions, event_json
from silo_sdk.component import Db, Service, exports

SCHEMA = """
CREATE TABLE purchases (
    user_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    PRIMARY KEY (user_id, product_id)
);
CREATE TABLE bought_together (
    product_id TEXT NOT NULL,
    other_id TEXT NOT NULL,
    times INTEGER NOT NULL,
    PRIMARY KEY (product_id, other_id)
)
"""

BUMP = (
    "INSERT INTO bought_together (product_id, other_id, times) VALUES (?, ?, 1) "
    "ON CONFLICT (product_id, other_id) DO UPDATE SET times = bought_together.times + 1"
)


def recommendations(req):
    product_id = req.param("productId")
    rows = Db.open("main").query(
        "SELECT other_id, times FROM bought_together WHERE product_id = ? "
        "ORDER BY times DESC, other_id ASC",
        [product_id],
    )
    also = [{"productId": r["other_id"], "count": r["times"]} for r in rows]
    return Response.ok({"productId": product_id, "alsoBought": also})


def order_approved(event, tx):
    order = event_json(event)
    user, product = order.get("userId"), order.get("productId")
    if not isinstance(user, str) or not isinstance(product, str):
        raise ApiError.bad_request(f"OrderApproved {event.id} lacks userId or productId")
    others = tx.query(
        "SELECT product_id FROM purchases WHERE user_id = ? AND product_id <> ?",
        [user, product],
    )
    for row in others:
        tx.execute(BUMP, [product, row["product_id"]])
        tx.execute(BUMP, [row["product_id"], product])
    tx.execute(
        "INSERT INTO purchases (user_id, product_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [user, product],
    )


class Recommendations(Service):
    @classmethod
    def router(cls):
        return Router().get("/recommendations/{productId}", recommendations)

    @classmethod
    def migrations(cls):
        return [("main", 1, "purchases and bought-together counts", SCHEMA)]

    @classmethod
    def subscriptions(cls):
        return Subscriptions().on("orders", "OrderApproved", order_approved)


IncomingHandler, Migrations, EventHandler, CommandHandler, SagaHandler = exports(Recommendations)
