//! The dashboard in a real browser: Debian's Chromium driven through ChromeDriver (the
//! `fantoccini` crate) against a real host on the demo manifest. It loads the page with the
//! token in the fragment, sees the services on the map, watches an order's saga finish,
//! replays a dead letter and rolls back a deploy with the page's buttons, and opens a trace's
//! waterfall. Each view is saved as a PNG under `target/dashboard-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::DEMO;
use crate::support::{TestHost, component, repo_root, request_bytes};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(60);

/// The demo, a publisher whose subscriber gives up after three attempts (so a poison event
/// becomes a dead letter within the test), and a service to deploy a second version of.
const EXTRA: &str = r#"
[services.pub]
component = "{c:events_probe}"
route = "/pub"
publishes = ["Ping"]
[services.pub.stores.main]

[services.sub2]
component = "{c:events_probe}"
route = "/sub2"
subscribes = [{ source = "pub", topic = "Ping" }]
[services.sub2.stores.main]
[services.sub2.events]
max-attempts = 3
backoff-ms = 10
max-backoff-ms = 50

[services.greeter]
component = "{c:hello}"
route = "/greeter"
"#;

/// Whether Chromium and ChromeDriver are installed (`make tools` installs them). If not,
/// the test says it was SKIPPED — or fails under `SILO_REQUIRE_BACKENDS=1`.
fn browser_installed() -> bool {
    let there = Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file();
    if !there {
        assert!(
            std::env::var("SILO_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "{CHROMIUM} and {CHROMEDRIVER} are required (SILO_REQUIRE_BACKENDS=1): `make tools`"
        );
        eprintln!("SKIPPED: Chromium or ChromeDriver is not installed; this test did not run");
    }
    there
}

/// A ChromeDriver process on a free port, and a headless Chromium session through it with
/// a fresh profile. Both end when this is dropped.
struct Browser {
    driver: Child,
    client: Option<Client>,
    profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            client: None,
            profile,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < WAIT, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1366,768",
            &format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session through chromedriver");
        browser.client = Some(client);
        browser
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Runs `script` (a function body; `arguments[0]` is `arg`) until it returns something
    /// other than null or false, and returns that; panics after [`WAIT`] naming `what`.
    async fn until(&self, what: &str, script: &str, arg: &str) -> Value {
        let start = Instant::now();
        loop {
            let last = match self.c().execute(script, vec![json!(arg)]).await {
                Ok(v) if !v.is_null() && v != json!(false) => return v,
                Ok(v) => v,
                Err(e) => json!(e.to_string()),
            };
            if start.elapsed() > WAIT {
                let shot = self.shot("failure").await;
                panic!("{what}: not seen within {WAIT:?} (last: {last}; page at {shot})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an element matching `css` and clicks it (through the page's own click, so
    /// a re-render between finding and clicking cannot leave a stale element).
    async fn click(&self, css: &str) {
        self.until(
            &format!("clicking {css}"),
            "const e = document.querySelector(arguments[0]); if (!e || e.disabled) return false; e.click(); return true;",
            css,
        )
        .await;
    }

    /// The text of every element matching `css`, once there is at least one.
    async fn texts(&self, css: &str) -> Vec<String> {
        let v = self
            .until(
                &format!("elements {css}"),
                "const l = [...document.querySelectorAll(arguments[0])].map(e => e.textContent); return l.length ? l : null;",
                css,
            )
            .await;
        serde_json::from_value(v).unwrap()
    }

    /// Saves the page as `target/dashboard-screenshots/NAME.png`; returns the path.
    async fn shot(&self, name: &str) -> String {
        let dir = repo_root().join("target/dashboard-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path: PathBuf = dir.join(format!("{name}.png"));
        match self.c().screenshot().await {
            Ok(png) => {
                std::fs::write(&path, png).unwrap();
                path.display().to_string()
            }
            Err(e) => format!("(no screenshot: {e})"),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session's Chromium ends with its driver's process group; the driver is ours.
        if let Some(c) = self.client.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            tokio::task::block_in_place(|| {
                let _ = handle.block_on(tokio::time::timeout(Duration::from_secs(10), c.close()));
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A host on the demo manifest and the extras, a user with money and a product in stock.
async fn demo_host() -> (TestHost, String, String) {
    let h = TestHost::start(&format!("{DEMO}{EXTRA}")).await;
    let u = h
        .post("/users", r#"{"email":"ada@example.com","name":"Ada"}"#)
        .await;
    assert_eq!(u.status, 201, "{}", u.text());
    let user = u.json()["id"].as_str().unwrap().to_string();
    let r = h
        .post(
            "/payments/accounts",
            &json!({ "userId": user, "balance": 100_000 }).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let p = h
        .post("/products", r#"{"name":"Engine","price":1250,"stock":5}"#)
        .await;
    assert_eq!(p.status, 201, "{}", p.text());
    let product = p.json()["id"].as_str().unwrap().to_string();
    (h, user, product)
}

/// Places an order; returns the id of the saga it started.
async fn place_order(h: &TestHost, user: &str, product: &str) -> String {
    let body = json!({ "userId": user, "productId": product, "quantity": 2 }).to_string();
    let r = h.post("/orders", &body).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let order = r.json()["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let sagas = h.admin_get("/admin/sagas", Some(&h.token)).await.json();
        let found = sagas["sagas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == order.as_str())
            .map(|s| s["id"].as_str().unwrap().to_string());
        if let Some(id) = found {
            return id;
        }
        assert!(start.elapsed() < WAIT, "no saga for order {order}: {sagas}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_demo_and_its_buttons_act() {
    if !browser_installed() {
        return;
    }
    let (h, user, product) = demo_host().await;
    let b = Browser::start().await;
    let c = b.c();

    // The page itself needs no token; the data does, and the fragment gives it.
    let page = crate::support::request("GET", &h.admin, "/", None, &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>silo dashboard</title>"));
    c.goto(&format!("http://{}/#token={}", h.admin, h.token))
        .await
        .unwrap();
    let names = b.texts("#map g.node .name").await;
    let start = Instant::now();
    let mut names = names;
    while names.len() < 9 && start.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        names = b.texts("#map g.node .name").await;
    }
    names.sort();
    assert_eq!(
        names,
        [
            "greeter",
            "orders",
            "payments",
            "products",
            "pub",
            "reference",
            "sessions",
            "sub2",
            "users"
        ]
    );
    let orders = b
        .texts("#map g.node[data-service='orders'] text")
        .await
        .join(" ");
    assert!(
        orders.contains("v1") && orders.contains("/orders") && orders.contains("main: sqlite"),
        "{orders}"
    );
    // Declared calls and subscriptions are edges.
    let call_edges = b.texts("#map path.edge.call[data-from='orders']").await;
    assert_eq!(
        call_edges.len(),
        3,
        "orders calls users, products, reference"
    );
    b.until(
        "a subscription edge users → orders",
        "return !!document.querySelector(arguments[0]);",
        "#map path.edge.sub[data-from='users'][data-to='orders']",
    )
    .await;
    // The token left the address bar at once and is in no request the page made.
    let url = c.current_url().await.unwrap();
    assert!(url.fragment().is_none(), "{url}");
    let urls: Vec<String> = serde_json::from_value(
        c.execute(
            "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert!(
        urls.iter().any(|u| u.ends_with("/admin/services")),
        "{urls:?}"
    );
    assert!(
        urls.iter().all(|u| !u.contains(&h.token)),
        "the token is in a URL: {urls:?}"
    );

    // An order's saga appears and completes in the sagas view; its steps are a timeline.
    let saga = place_order(&h, &user, &product).await;
    b.click("#tab-sagas").await;
    let row = format!("#saga-list tr[data-saga-id='{saga}'][data-state='completed']");
    b.click(&row).await;
    let steps = b
        .texts(&format!(
            ".saga-detail[data-saga-id='{saga}'] .step .step-title"
        ))
        .await;
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(
        steps[0].contains("products") && steps[0].contains("reserve"),
        "{steps:?}"
    );
    assert!(
        steps[1].contains("payments") && steps[1].contains("charge"),
        "{steps:?}"
    );
    b.click("#saga-counts button[data-state='completed']").await;
    b.texts(&format!("#saga-list tr[data-saga-id='{saga}']"))
        .await;
    b.shot("sagas").await;
    b.click("#saga-counts button[data-state='all']").await;

    // A poison event becomes a dead letter; the Replay button delivers it after the fix.
    let r = h
        .post(
            "/pub/publish",
            &json!({ "topic": "Ping", "key": "p", "data": "poison", "count": 1 }).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    b.click("#tab-events").await;
    let errors = b.texts("#dead-letters tr[data-id] td.error").await;
    assert!(errors[0].contains("poisoned"), "{errors:?}");
    b.texts("#subscriptions .card[data-subscription='sub2:pub/Ping'] svg.chart")
        .await;
    b.shot("events").await;
    assert_eq!(h.post("/sub2/fix?key=p", "").await.status, 200);
    b.click("#dead-letters button.replay").await;
    b.until(
        "the dead letter gone from the page",
        "return document.querySelector(arguments[0]) ? false : true;",
        "#dead-letters tr[data-id]",
    )
    .await;
    let start = Instant::now();
    loop {
        let got = h.get("/sub2/applied").await.json();
        if got["p"] == 1 {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "the replayed event never applied: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A second version of greeter, rolled back with the button (after its confirm).
    let auth = format!("Bearer {}", h.token);
    let r = request_bytes(
        "POST",
        &h.admin,
        "/admin/services/greeter",
        std::fs::read(component("spin")).unwrap(),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(h.get("/greeter/ok").await.text(), "ok\n");
    b.click("#tab-deploys").await;
    b.texts("#deploys .card[data-service='greeter'] tr.active[data-version='2']")
        .await;
    b.shot("deploys").await;
    let button = "#deploys button.rollback[data-service='greeter']";
    b.until(
        "an enabled Rollback button",
        "const e = document.querySelector(arguments[0]); return !!e && !e.disabled;",
        button,
    )
    .await;
    let start = Instant::now();
    loop {
        // The view re-renders every poll: find and click again if the element went stale.
        let clicked = match c.find(Locator::Css(button)).await {
            Ok(e) => e.click().await.is_ok(),
            Err(_) => false,
        };
        if clicked {
            break;
        }
        assert!(start.elapsed() < WAIT, "could not click Rollback");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = c.get_alert_text().await.unwrap();
    assert!(text.contains("greeter") && text.contains("v2"), "{text}");
    c.accept_alert().await.unwrap();
    b.texts("#deploys .card[data-service='greeter'] tr.active[data-version='1']")
        .await;
    assert_eq!(h.get("/greeter/ok").await.text(), "hello\n");
    let svc = h
        .admin_get("/admin/services/greeter", Some(&h.token))
        .await
        .json();
    assert_eq!(svc["active"], 1, "{svc}");

    b.click("#tab-isolation").await;
    b.texts("#isolation tr[data-service='orders']").await;
    b.shot("isolation").await;
    b.click("#tab-map").await;
    b.texts("#map g.node").await;
    b.shot("map").await;

    // A token the host refuses brings the form back; the right one opens the page again.
    // (The reload may end the script's own answer: what counts is the page after it.)
    let _ = c
        .execute(
            "sessionStorage.setItem('silo.adminToken', 'wrong'); location.reload();",
            vec![],
        )
        .await;
    b.until(
        "the token form after a 401",
        "const f = document.querySelector(arguments[0]); return !!f && !f.closest('[hidden]');",
        "#token-form",
    )
    .await;
    c.find(Locator::Css("#token-input"))
        .await
        .unwrap()
        .send_keys(&h.token)
        .await
        .unwrap();
    b.click("#token-submit").await;
    b.texts("#map g.node[data-service='orders']").await;
    let stored: Value = c
        .execute("return sessionStorage.getItem('silo.adminToken');", vec![])
        .await
        .unwrap();
    assert_eq!(stored, json!(h.token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_an_orders_trace_as_a_waterfall() {
    if !browser_installed() {
        return;
    }
    let (h, user, product) = demo_host().await;
    let saga = place_order(&h, &user, &product).await;
    let b = Browser::start().await;
    b.c()
        .goto(&format!("http://{}/#token={}", h.admin, h.token))
        .await
        .unwrap();
    b.click("#tab-traces").await;
    // The trace whose root is the POST of the order.
    b.until(
        "a trace rooted at POST /orders",
        "const r = [...document.querySelectorAll('#trace-list tr.trace')]
           .find(r => r.cells[0].title.includes(arguments[0]) && r.cells[2].textContent.trim() === 'orders');
         if (!r) return false; r.click(); return true;",
        "POST",
    )
    .await;
    let names = b.texts("#waterfall .span-row .span-name").await;
    let services = b.texts("#waterfall .span-row .span-name .svc").await;
    assert!(names.len() >= 2, "{names:?}");
    for s in ["orders", "users", "products"] {
        assert!(services.iter().any(|x| x == s), "{s} missing: {services:?}");
    }
    b.click("#waterfall .span-row").await;
    let attrs = b.texts("#span-attributes").await;
    assert!(attrs[0].contains('{'), "{attrs:?}");
    b.shot("traces").await;
    // The saga links to its trace.
    b.click("#tab-sagas").await;
    b.click(&format!("#saga-list tr[data-saga-id='{saga}']"))
        .await;
    b.click(".saga-detail button.trace-link").await;
    b.texts("#waterfall .span-row").await;
}
