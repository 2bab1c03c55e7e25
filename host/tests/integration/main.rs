//! Integration tests: the real `silo` binary, real components from `components/`, real
//! HTTP over loopback and real SQLite files. One test binary, so compiled components are
//! shared through one code cache (see `support::shared_cache`).

mod calls;
mod cli;
mod corpus;
mod dashboard;
mod demo;
mod deploy;
mod events;
mod forged;
mod isolation;
mod kv;
mod metrics;
mod polyglot;
mod postgres;
mod sagas;
mod sandbox;
mod scaffold;
mod shared;
mod startup;
mod support;
mod trace_flow;
mod traces;

/// The demo manifest, pointing at the built components.
pub const DEMO: &str = r#"
[services.users]
component = "{c:users}"
route = "/users"
publishes = ["UserCreated", "UserUpdated"]
[services.users.stores.main]

[services.products]
component = "{c:products}"
route = "/products"
publishes = ["ProductCreated", "ProductUpdated"]
commands = ["reserve", "release"]
[services.products.stores.main]

[services.orders]
component = "{c:orders}"
route = "/orders"
calls = ["users", "products", "reference"]
publishes = ["OrderApproved", "OrderRejected"]
saga-participants = ["products", "payments"]
subscribes = [
  { source = "users", topic = "UserCreated" },
  { source = "users", topic = "UserUpdated" },
  { source = "products", topic = "ProductCreated" },
  { source = "products", topic = "ProductUpdated" },
]
[services.orders.stores.main]

[services.payments]
component = "{c:payments}"
route = "/payments"
commands = ["charge", "refund"]
[services.payments.stores.main]

[services.sessions]
component = "{c:sessions}"
route = "/sessions"
[services.sessions.kv.sessions]

[services.reference]
component = "{c:reference}"
route = "/reference"
[services.reference.stores.main]
"#;
