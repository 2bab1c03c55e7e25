//! In-process costs, without the network: one instantiation from `InstancePre` (pooling
//! allocator), and one whole `GET /products/{id}` request through `dispatch`, against the
//! same lookup done natively (rusqlite + serde_json) in the same run.
//!
//! Run: `cargo bench -p silo --bench instantiate` (after `make components`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use silo::host::Host;
use silo::manifest::Manifest;

const ITERATIONS: usize = 5000;

fn component(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../components/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} missing: run `make components`",
        p.display()
    );
    p
}

fn summary(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64;
    (
        mean,
        us(samples[samples.len() / 2]),
        us(samples[samples.len() * 99 / 100]),
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let manifest_path = dir.path().join("silo.toml");
    std::fs::write(
        &manifest_path,
        format!(
            "[services.hello]\ncomponent = \"{}\"\nroute = \"/hello\"\n\
             [services.products]\ncomponent = \"{}\"\nroute = \"/products\"\npublishes = [\"ProductCreated\", \"ProductUpdated\"]\n[services.products.stores.main]\n\
             [services.warm]\ncomponent = \"{}\"\nroute = \"/warm\"\npublishes = [\"ProductCreated\", \"ProductUpdated\"]\n[services.warm.stores.main]\n\
             [services.warm.limits]\ninstance-reuse = 64\n",
            component("hello").display(),
            component("products").display(),
            component("products").display()
        ),
    )
    .unwrap();
    let manifest = Manifest::load(&manifest_path).unwrap();
    let host = Arc::new(Host::new(&dir.path().join("data"), None).unwrap());
    host.load_manifest(&manifest_path, &manifest).await.unwrap();
    let routes = host.routes();

    println!("| what | mean µs | p50 µs | p99 µs |");
    println!("| --- | --- | --- | --- |");
    for name in ["hello", "products"] {
        let service = routes.route(&format!("/{name}")).unwrap().clone();
        let mut samples = Vec::with_capacity(ITERATIONS);
        for _ in 0..ITERATIONS {
            let mut store = service.new_store(Instant::now() + Duration::from_secs(5), &[]);
            let t = Instant::now();
            let proxy = service.pre.instantiate_async(&mut store).await.unwrap();
            samples.push(t.elapsed());
            drop((proxy, store));
        }
        let (mean, p50, p99) = summary(samples);
        println!("| instantiate `{name}` (store + instance) | {mean:.1} | {p50:.1} | {p99:.1} |");
    }

    // A whole request to the plain hello component, for the cost of the path itself.
    let hello = routes.route("/hello").unwrap().clone();
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let req = hyper::Request::get("http://hello.silo/hello")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let t = Instant::now();
        let resp = silo::runtime::dispatch::dispatch(&hello, req).await;
        let _ = resp.into_body().collect().await.unwrap();
        samples.push(t.elapsed());
    }
    let (mean, p50, p99) = summary(samples);
    println!("| `GET /hello` through silo, no network | {mean:.1} | {p50:.1} | {p99:.1} |");
    if std::env::var_os("SILO_BENCH_PROFILE_HELLO").is_some() {
        // A long loop of the same request, for `perf record`.
        for _ in 0..50_000 {
            let req = hyper::Request::get("http://hello.silo/hello")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = silo::runtime::dispatch::dispatch(&hello, req).await;
            let _ = resp.into_body().collect().await.unwrap();
        }
        return;
    }

    // Seed products through the service itself, then look them up.
    let products = routes.route("/products").unwrap().clone();
    let ids = seed_products(&products).await;
    let (silo_mean, p50, p99) = summary(lookups(&products, &ids).await);
    if std::env::var_os("SILO_BENCH_BREAKDOWN").is_some() {
        breakdown(&products, &ids).await;
    }
    println!(
        "| `GET /products/{{id}}` through silo, no network | {silo_mean:.1} | {p50:.1} | {p99:.1} |"
    );
    // The same with `instance-reuse = 64` (its own store, the same rows).
    let warm = routes.route("/warm").unwrap().clone();
    let warm_ids = seed_products(&warm).await;
    let (mean, p50, p99) = summary(lookups(&warm, &warm_ids).await);
    println!("| the same with `instance-reuse = 64` | {mean:.1} | {p50:.1} | {p99:.1} |");

    // The same lookup natively: the same file, statement and JSON shape.
    let conn = rusqlite::Connection::open(dir.path().join("data/stores/products/main.db")).unwrap();
    let mut samples = Vec::with_capacity(ITERATIONS);
    for i in 0..ITERATIONS {
        let t = Instant::now();
        let mut stmt = conn
            .prepare_cached("SELECT id, name, price, stock FROM products WHERE id = ?")
            .unwrap();
        let v = stmt
            .query_row([&ids[i % ids.len()]], |r| {
                Ok(serde_json::json!({
                    "id": r.get::<_, String>(0)?,
                    "name": r.get::<_, String>(1)?,
                    "price": r.get::<_, i64>(2)?,
                    "stock": r.get::<_, i64>(3)?,
                }))
            })
            .unwrap();
        let bytes = serde_json::to_vec(&v).unwrap();
        samples.push(t.elapsed());
        assert!(!bytes.is_empty());
    }
    let (native_mean, p50, p99) = summary(samples);
    println!(
        "| the same lookup natively (rusqlite + serde_json) | {native_mean:.1} | {p50:.1} | {p99:.1} |"
    );
    println!();
    println!(
        "in-process overhead of a request through silo: {:.1} µs ({:.0}× the native lookup)",
        silo_mean - native_mean,
        silo_mean / native_mean
    );
    lifecycle().await;
}

/// Start-up with every demo service, with an empty code cache and then a warm one, and the
/// time from a deploy call to the new version serving.
async fn lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silo.toml");
    let mut manifest = String::new();
    for (name, calls) in [
        ("users", ""),
        ("products", ""),
        (
            "orders",
            "calls = [\"users\", \"products\", \"reference\"]\n",
        ),
        ("reference", ""),
    ] {
        manifest.push_str(&format!(
            "[services.{name}]\ncomponent = \"{}\"\nroute = \"/{name}\"\n{calls}[services.{name}.stores.main]\n",
            component(name).display()
        ));
    }
    std::fs::write(&path, manifest).unwrap();
    let parsed = Manifest::load(&path).unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    println!();
    println!("| start-up, 4 demo services | ms |");
    println!("| --- | --- |");
    for (label, data) in [
        ("cold (empty code cache, new data folder)", "d1"),
        ("cached (same code cache, new data folder)", "d2"),
    ] {
        let t = Instant::now();
        let host = Host::new(&dir.path().join(data), Some(&cache)).unwrap();
        host.load_manifest(&path, &parsed).await.unwrap();
        println!("| {label} | {:.0} |", t.elapsed().as_secs_f64() * 1e3);
    }
    let host = Host::new(&dir.path().join("d3"), Some(&cache)).unwrap();
    host.load_manifest(&path, &parsed).await.unwrap();
    composition(&host).await;
    let bytes = std::fs::read(component("products")).unwrap();
    let mut other = bytes.clone();
    // A different digest each time (a custom section), so nothing is deduplicated.
    other.extend_from_slice(&[0, 4, 1, b'x', 0, 0]);
    println!();
    println!("| deploy `products` until the new version serves | ms |");
    println!("| --- | --- |");
    for (label, b) in [
        ("new component (compiled)", &other),
        ("component seen before (code cache)", &bytes),
    ] {
        let t = Instant::now();
        host.deploy("products", b, Default::default())
            .await
            .unwrap();
        println!("| {label} | {:.0} |", t.elapsed().as_secs_f64() * 1e3);
    }
}

/// Creates 200 products through `service`'s own API; returns their ids.
async fn seed_products(service: &Arc<silo::runtime::service::Service>) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..200 {
        let body = format!(r#"{{"name":"Product {i}","price":{i},"stock":100}}"#);
        let req = hyper::Request::post(format!("http://{}.silo/products", service.name))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = silo::runtime::dispatch::dispatch(service, req).await;
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["id"].is_string(), "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids
}

/// Times `ITERATIONS` lookups of `ids` through `service`.
async fn lookups(service: &Arc<silo::runtime::service::Service>, ids: &[String]) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(ITERATIONS);
    for i in 0..ITERATIONS {
        let req = hyper::Request::get(format!(
            "http://{}.silo/products/{}",
            service.name,
            ids[i % ids.len()]
        ))
        .body(Full::new(Bytes::new()))
        .unwrap();
        let t = Instant::now();
        let resp = silo::runtime::dispatch::dispatch(service, req).await;
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        samples.push(t.elapsed());
        assert!(bytes.starts_with(b"{\"id\""));
    }
    samples
}

/// Where the time of one lookup goes: the steps of `dispatch`, timed one by one.
#[allow(dead_code)]
pub async fn breakdown(products: &Arc<silo::runtime::service::Service>, ids: &[String]) {
    use wasmtime_wasi_http::WasiHttpView;
    use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
    let mut t_store = Duration::ZERO;
    let mut t_res = Duration::ZERO;
    let mut t_inst = Duration::ZERO;
    let mut t_call = Duration::ZERO;
    let mut t_body = Duration::ZERO;
    for i in 0..ITERATIONS {
        let req = hyper::Request::get(format!(
            "http://products.silo/products/{}",
            ids[i % ids.len()]
        ))
        .body(Full::new(Bytes::new()))
        .unwrap();
        let t0 = Instant::now();
        let mut store = products.new_store(Instant::now() + Duration::from_secs(5), &[]);
        let t1 = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .unwrap();
        let out = store.data_mut().http().new_response_outparam(tx).unwrap();
        let t2 = Instant::now();
        let proxy = products.pre.instantiate_async(&mut store).await.unwrap();
        let t3 = Instant::now();
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
            .unwrap();
        let t4 = Instant::now();
        let resp = rx.await.unwrap().unwrap();
        let _ = resp.into_body().collect().await.unwrap();
        drop(store);
        let t5 = Instant::now();
        t_store += t1 - t0;
        t_res += t2 - t1;
        t_inst += t3 - t2;
        t_call += t4 - t3;
        t_body += t5 - t4;
    }
    let n = ITERATIONS as f64;
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
    println!(
        "breakdown µs: new_store {:.1}, request resources {:.1}, instantiate {:.1}, handle {:.1}, body + drop {:.1}",
        us(t_store),
        us(t_res),
        us(t_inst),
        us(t_call),
        us(t_body)
    );
}

async fn send(
    routes: &silo::runtime::dispatch::RouteTable,
    svc: &str,
    method: &str,
    path: String,
    body: Option<String>,
) -> serde_json::Value {
    let service = routes.route(&format!("/{svc}")).unwrap().clone();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{svc}.silo{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let resp = silo::runtime::dispatch::dispatch(&service, req).await;
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default()
}

/// API composition: `GET /orders/{id}/details` (orders calls users and products, in-process,
/// concurrently) against the single-service `GET /orders/{id}`, in the same run.
async fn composition(host: &Host) {
    let routes = host.routes();
    let routes = &*routes;
    let user = send(
        routes,
        "users",
        "POST",
        "/users".into(),
        Some(r#"{"email":"b@x.y","name":"B"}"#.into()),
    )
    .await;
    let product = send(
        routes,
        "products",
        "POST",
        "/products".into(),
        Some(r#"{"name":"P","price":5,"stock":9}"#.into()),
    )
    .await;
    let body = format!(
        r#"{{"userId":"{}","productId":"{}","quantity":1}}"#,
        user["id"].as_str().unwrap(),
        product["id"].as_str().unwrap()
    );
    let order = send(routes, "orders", "POST", "/orders".into(), Some(body)).await;
    let id = order["id"].as_str().expect("an order").to_string();
    println!();
    println!("| request (in-process, no network) | mean µs | p50 µs | p99 µs |");
    println!("| --- | --- | --- | --- |");
    for (label, path) in [
        ("`GET /orders/{id}` (one service)", format!("/orders/{id}")),
        (
            "`GET /orders/{id}/details` (orders + users + products)",
            format!("/orders/{id}/details"),
        ),
    ] {
        let mut samples = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let t = Instant::now();
            let v = send(routes, "orders", "GET", path.clone(), None).await;
            samples.push(t.elapsed());
            assert!(v.is_object(), "{v}");
        }
        let (mean, p50, p99) = summary(samples);
        println!("| {label} | {mean:.1} | {p50:.1} | {p99:.1} |");
    }
}
