//! The demo services' contract endpoints and error cases, and where their data lives.

use crate::DEMO;
use crate::support::TestHost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_endpoints_and_errors() {
    let h = TestHost::start(DEMO).await;
    let r = h
        .post("/users", r#"{"email":"ada@example.com","name":"Ada"}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let ada = r.json();
    let id = ada["id"].as_str().expect("string id").to_string();
    assert_eq!(ada["email"], "ada@example.com");
    assert_eq!(ada["name"], "Ada");

    let r = h.get(&format!("/users/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"], "Ada");

    let r = h
        .put(&format!("/users/{id}"), r#"{"name":"Ada Lovelace"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "Ada Lovelace");
    assert_eq!(r.json()["email"], "ada@example.com");

    let r = h
        .post("/users", r#"{"email":"alan@example.com","name":"Alan"}"#)
        .await;
    assert_eq!(r.status, 201);
    let r = h.get("/users").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json().as_array().unwrap().len(), 2);

    // Unique email: 409, and the existing row is untouched.
    let r = h
        .post("/users", r#"{"email":"ada@example.com","name":"Impostor"}"#)
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error_code(), "conflict");
    let r = h
        .put(&format!("/users/{id}"), r#"{"email":"alan@example.com"}"#)
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        h.get(&format!("/users/{id}")).await.json()["email"],
        "ada@example.com"
    );

    // Bad bodies: 400 with the contract's error body, never 500.
    for body in [
        "{not json",
        "",
        "[]",
        r#"{"email":"x@example.com"}"#,
        r#"{"name":"No Email"}"#,
        r#"{"email":42,"name":"Num"}"#,
        r#"{"email":"x@example.com","name":null}"#,
        r#"{"email":"","name":"Empty"}"#,
        r#"{"email":"not-an-email","name":"Bad"}"#,
    ] {
        let r = h.post("/users", body).await;
        assert_eq!(r.status, 400, "body {body:?}: {}", r.text());
        assert_eq!(r.error_code(), "bad_request");
    }
    let r = h.put(&format!("/users/{id}"), r#"{"name":7}"#).await;
    assert_eq!(r.status, 400);

    // Unknown ids: 404.
    let r = h.get("/users/does-not-exist").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
    let r = h.put("/users/does-not-exist", r#"{"name":"X"}"#).await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_endpoints_search_and_validation() {
    let h = TestHost::start(DEMO).await;
    let r = h
        .post(
            "/products",
            r#"{"name":"Blue Widget","price":1250,"stock":10}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let widget = r.json();
    let id = widget["id"].as_str().unwrap().to_string();
    assert_eq!(widget["price"], 1250);
    assert_eq!(widget["stock"], 10);
    h.post("/products", r#"{"name":"Red Gadget","price":99,"stock":0}"#)
        .await;
    h.post(
        "/products",
        r#"{"name":"100% wool_sock","price":500,"stock":3}"#,
    )
    .await;

    assert_eq!(h.get("/products").await.json().as_array().unwrap().len(), 3);
    let found = h.get("/products?q=widget").await.json();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["name"], "Blue Widget");
    // LIKE wildcards in the query are literal.
    let found = h.get("/products?q=%25").await.json();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let found = h.get("/products?q=_").await.json();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");

    let r = h.put(&format!("/products/{id}"), r#"{"stock":7}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["stock"], 7);
    assert_eq!(r.json()["price"], 1250);

    for body in [
        r#"{"name":"Neg","price":-1,"stock":1}"#,
        r#"{"name":"Neg","price":1,"stock":-5}"#,
        r#"{"name":"Frac","price":1.5,"stock":1}"#,
        r#"{"name":"Str","price":"1","stock":1}"#,
        r#"{"price":1,"stock":1}"#,
        "nope",
    ] {
        let r = h.post("/products", body).await;
        assert_eq!(r.status, 400, "body {body:?}: {}", r.text());
        assert_eq!(r.error_code(), "bad_request");
    }
    assert_eq!(
        h.put(&format!("/products/{id}"), r#"{"price":-3}"#)
            .await
            .status,
        400
    );
    assert_eq!(h.get("/products/nope").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_endpoints_and_validation() {
    let h = TestHost::start(DEMO).await;
    let id_of = |r: crate::support::Resp| r.json()["id"].as_str().unwrap().to_string();
    let u1 = id_of(
        h.post("/users", r#"{"email":"one@x.y","name":"One"}"#)
            .await,
    );
    let u2 = id_of(
        h.post("/users", r#"{"email":"two@x.y","name":"Two"}"#)
            .await,
    );
    let p1 = id_of(
        h.post("/products", r#"{"name":"P","price":5,"stock":9}"#)
            .await,
    );
    let r = h
        .post(
            "/orders",
            &format!(r#"{{"userId":"{u1}","productId":"{p1}","quantity":2}}"#),
        )
        .await;
    assert!(r.status == 201 || r.status == 202, "{}", r.text());
    let order = r.json();
    let id = order["id"].as_str().unwrap().to_string();
    assert_eq!(order["userId"], u1.as_str());
    assert_eq!(order["quantity"], 2);
    assert!(order["status"].is_string());

    let got = h.get(&format!("/orders/{id}")).await;
    assert_eq!(got.status, 200);
    let got = got.json();
    for key in [
        "id",
        "userId",
        "productId",
        "quantity",
        "amount",
        "userName",
        "userEmail",
        "productName",
        "status",
    ] {
        assert!(got.get(key).is_some(), "missing {key} in {got}");
    }
    h.post(
        "/orders",
        &format!(r#"{{"userId":"{u2}","productId":"{p1}","quantity":1}}"#),
    )
    .await;
    let mine = h.get(&format!("/orders?userId={u1}")).await.json();
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["id"], id.as_str());

    for body in [
        r#"{"userId":"u1","productId":"p1","quantity":0}"#,
        r#"{"userId":"u1","productId":"p1","quantity":-2}"#,
        r#"{"userId":"u1","productId":"p1","quantity":"2"}"#,
        r#"{"userId":"u1","quantity":2}"#,
        "{",
    ] {
        let r = h.post("/orders", body).await;
        assert_eq!(r.status, 400, "body {body:?}: {}", r.text());
        assert_eq!(r.error_code(), "bad_request");
    }
    assert_eq!(h.get("/orders/unknown").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_keeps_its_data_in_its_own_database_file() {
    let h = TestHost::start(DEMO).await;
    assert_eq!(
        h.post("/users", r#"{"email":"a@b.c","name":"A"}"#)
            .await
            .status,
        201
    );
    assert_eq!(
        h.post("/products", r#"{"name":"P","price":1,"stock":1}"#)
            .await
            .status,
        201
    );
    let data = h.data_dir();
    let tables = |service: &str| -> Vec<String> {
        let path = data.join("stores").join(service).join("main.db");
        assert!(path.is_file(), "{} missing", path.display());
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE '\\_silo\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite_%'")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let users = tables("users");
    let products = tables("products");
    let orders = tables("orders");
    assert!(users.iter().any(|t| t == "users"), "{users:?}");
    assert!(products.iter().any(|t| t == "products"), "{products:?}");
    assert!(orders.iter().any(|t| t == "orders"), "{orders:?}");
    assert!(!users.iter().any(|t| t == "products" || t == "orders"));
    assert!(!products.iter().any(|t| t == "users" || t == "orders"));
    assert!(!orders.iter().any(|t| t == "users" || t == "products"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_graceful_restart_and_migrations_run_once() {
    let h = TestHost::start(DEMO).await;
    let r = h
        .post("/users", r#"{"email":"keep@example.com","name":"Keep"}"#)
        .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let (status, dir, manifest) = h.stop();
    assert!(status.success(), "SIGTERM must exit 0, got {status:?}");
    let h = TestHost::start_in(dir, manifest).await;
    let r = h.get(&format!("/users/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["email"], "keep@example.com");
    let conn = rusqlite::Connection::open(h.data_dir().join("stores/users/main.db")).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM _silo_migrations", [], |r| r.get(0))
        .unwrap();
    let max: i64 = conn
        .query_row("SELECT max(version) FROM _silo_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, max, "each migration recorded exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_oversized_bodies_get_json_errors() {
    let h = TestHost::start(DEMO).await;
    let r = h.get("/nowhere").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "no_route");
    let r = h.get("/usersx").await;
    assert_eq!(r.status, 404);
    // A declared length over the limit is refused before the body is read. (A raw socket,
    // because a client still sending the body may see the early answer as a reset.)
    let answer = raw_exchange(
        &h.http,
        "POST /users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2097152\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    // A chunked body (no declared length) is cut at the limit while it streams.
    let chunk = "x".repeat(64 << 10);
    let mut head = String::from(
        "POST /users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    for _ in 0..20 {
        head.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    head.push_str("0\r\n\r\n");
    let answer = raw_exchange(&h.http, &head).await;
    assert!(
        answer.starts_with("HTTP/1.1 413") || answer.starts_with("HTTP/1.1 400"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    // Nothing was stored.
    assert_eq!(h.get("/users").await.json().as_array().unwrap().len(), 0);
}

/// Writes `head` to a fresh connection and reads the answer until the server closes it or
/// stops sending.
async fn raw_exchange(addr: &str, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    while let Ok(Ok(n)) =
        tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The manifests the README tells people to run (`make run`, `make run-polyglot`) are valid
/// and name components the build makes: a scratch manifest committed over one of them once
/// broke `make run` with every test still green.
#[test]
fn the_repos_own_manifests_load_and_name_built_components() {
    for name in ["silo.toml", "silo-polyglot.toml"] {
        let path = crate::support::repo_root().join(name);
        let manifest = silo::manifest::Manifest::load(&path)
            .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        assert!(
            manifest.services.contains_key("orders") && manifest.services.contains_key("users"),
            "{name} is not the demo"
        );
        for (service, spec) in &manifest.services {
            let component = path.parent().unwrap().join(&spec.component);
            assert!(
                component.is_file(),
                "{name}: services.{service}.component names {}, which the build does not make",
                component.display()
            );
            assert!(
                component.starts_with(crate::support::repo_root()),
                "{name}: services.{service}.component points outside the repository: {}",
                component.display()
            );
        }
    }
}
