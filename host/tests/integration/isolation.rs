//! The isolation catalogue, one test per attack: each asserts that the attack fails *and*
//! that the victim (the users service) answered correctly throughout, with a p99 latency
//! within `silo::isolation::victim_bound` of its quiet baseline measured in the same test.

use silo::isolation::{CATALOGUE, Judge, SERVER_CATALOGUE, Servers, Target, Victim, run_attack};

use crate::support::{TestHost, component, resolve, write_manifest};

/// A host whose SQLite backend records its statement texts into `host-sql.jsonl` of the
/// test's folder and whose log goes to `host.log` there, and a target that can read them,
/// the data folder and the host's memory.
async fn recording_host(manifest: &str) -> (TestHost, Target) {
    let (dir, path) = write_manifest(manifest);
    let record = dir.path().join("host-sql.jsonl");
    let log = dir.path().join("host.log");
    let h = TestHost::start_logging(
        dir,
        path,
        &[
            ("SILO_RECORD_HOST_SQL", record.to_str().unwrap()),
            // As `silo demo isolation` runs its host: the log the flood is measured in holds
            // the guests' lines and warnings, not the victim's request lines.
            ("SILO_LOG", "warn,silo::guest=info"),
        ],
        Some(&log),
    )
    .await;
    let target = Target::local(&h.http, &h.data_dir(), &record).with_host(&log, h.pid());
    (h, target)
}

async fn attack(name: &str) {
    let dir = component("intruder").parent().unwrap().to_path_buf();
    let (_h, target) = recording_host(&silo::isolation::manifest(&dir, None)).await;
    let victim = Victim::prepare(&target).await.expect("a victim");
    let attack = CATALOGUE
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no attack {name} in the catalogue"));
    let o = run_attack(&target, &victim, attack).await;
    // The figures, as the demo prints them (`--nocapture` shows them).
    eprintln!(
        "{name}: {} (victim p99 {:?}, bound {:?}, quiet {:?})",
        o.observed, o.victim_p99, o.bound, victim.baseline_p99
    );
    assert!(o.blocked, "{name} got through: {}", o.observed);
    assert!(o.victim_correct, "{name}: the victim answered wrongly");
    assert!(
        o.victim_p99 <= o.bound,
        "{name}: victim p99 {:?} over the bound {:?} (baseline {:?})",
        o.victim_p99,
        o.bound,
        victim.baseline_p99
    );
}

macro_rules! attacks {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                attack($name).await;
            }
        )*

        /// Every attack of the catalogue has its test here.
        #[test]
        fn every_catalogue_entry_is_tested() {
            let tested = [$($name),*];
            for a in CATALOGUE {
                assert!(tested.contains(&a.name), "attack {} has no test", a.name);
            }
        }
    };
}

attacks! {
    open_another_services_store => "open-other-store",
    guess_store_names => "guess-store-names",
    use_a_finished_transaction => "stale-handle",
    forge_a_resource_handle => "forged-handle",
    use_a_handle_of_the_wrong_type => "wrong-type-handle",
    keep_a_transaction_across_commit => "stale-transaction",
    drop_a_handle_twice => "double-drop",
    plant_a_table_in_the_host_namespace => "plant-host-table",
    attach_another_file => "attach",
    vacuum_into_a_file => "vacuum-into",
    load_an_extension => "load-extension",
    change_pragmas => "pragmas",
    uri_filenames => "uri-filename",
    reach_the_host_tables => "host-tables",
    tamper_with_the_schema => "schema-tamper",
    call_an_undeclared_service => "call-undeclared",
    call_outside_hosts => "call-external",
    open_files => "wasi-files",
    open_sockets => "wasi-sockets",
    read_the_environment => "wasi-env",
    huge_result_set => "huge-result",
    huge_blobs => "huge-blob",
    fill_the_disk_quota => "fill-disk",
    runaway_recursive_sql => "runaway-sql",
    publish_on_undeclared_topics => "publish-undeclared",
    start_a_saga_on_undeclared_participants => "saga-undeclared",
    open_another_services_kv_store => "kv-other-store",
    reuse_the_hosts_statements => "host-statements",
    temp_objects_in_every_spelling => "temp-objects",
    read_the_file_through_dbstat => "file-views",
    fill_the_write_ahead_log => "fill-wal",
    infinite_loop => "infinite-loop",
    memory_growth => "memory-growth",
    deep_recursion => "deep-recursion",
    flood_of_concurrent_requests => "request-flood",
    statements_of_the_whole_budget_back_to_back => "slow-statements",
    a_slow_event_handler => "slow-handler",
    calls_whose_bodies_never_end => "slow-call-bodies",
    a_fan_out_of_calls => "call-fanout",
    request_bodies_that_never_end => "slow-bodies",
    // Fair sharing.
    costly_sql_functions => "costly-function",
    flood_the_hosts_log => "log-flood",
    host_memory_through_http_fields => "host-fields",
}

/// The intruder reports exactly the attacks the catalogue judges by report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intruder_implements_the_catalogue() {
    let dir = component("intruder").parent().unwrap().to_path_buf();
    let h = TestHost::start(&silo::isolation::manifest(&dir, None)).await;
    let listed = h.get("/intruder/attacks").await.json();
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for a in CATALOGUE
        .iter()
        .filter(|a| matches!(a.judge, Judge::Report))
    {
        assert!(listed.contains(&a.name), "the intruder lacks {}", a.name);
    }
}

/// Every statement text the host runs in a full demo run (migrations, events, an approved
/// and a rejected order saga with its commands and compensations, dead letters' tables),
/// sent back as guest SQL by the intruder: each must be `access-denied`. The texts are the
/// host's own, recorded as it ran them, so a new host statement is covered the day it is
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_host_statement_text_works_as_guest_sql() {
    let manifest = format!(
        "{}{}",
        crate::DEMO,
        r#"
[services.intruder]
component = "{c:intruder}"
route = "/intruder"
publishes = ["Intruded"]
subscribes = [{ source = "users", topic = "UserCreated" }]
saga-participants = ["payments"]
[services.intruder.stores.main]
"#
    );
    let (h, target) = recording_host(&resolve(&manifest)).await;
    let user = h
        .post("/users", r#"{"email":"rich@example.com","name":"Rich"}"#)
        .await
        .json();
    let uid = user["id"].as_str().unwrap();
    let r = h
        .post(
            "/payments/accounts",
            &format!(r#"{{"userId":"{uid}","balance":1000}}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let product = h
        .post("/products", r#"{"name":"Lamp","price":300,"stock":1}"#)
        .await
        .json();
    let pid = product["id"].as_str().unwrap();
    // One order approved, one rejected (out of stock: compensations run).
    for _ in 0..2 {
        let r = h
            .post(
                "/orders",
                &format!(r#"{{"userId":"{uid}","productId":"{pid}","quantity":1}}"#),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let r = h
        .put(&format!("/users/{uid}"), r#"{"name":"Richer"}"#)
        .await;
    assert_eq!(r.status, 200);
    let start = std::time::Instant::now();
    loop {
        let orders = h.get(&format!("/orders?userId={uid}")).await.json();
        let settled = orders
            .as_array()
            .is_some_and(|o| o.iter().all(|o| o["status"] != "PENDING"));
        if settled {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "orders still pending: {orders}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    h.wait_drained(std::time::Duration::from_secs(30)).await;

    let texts = silo::isolation::recorded_host_statements(target.host_sql.as_ref().unwrap())
        .expect("the recorded statements");
    for needle in [
        "_silo_outbox",
        "_silo_deliveries",
        "_silo_inbox",
        "_silo_sagas",
        "_silo_saga_steps",
        "_silo_commands",
        "_silo_migrations",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(needle)),
            "no recorded host statement names {needle}: the run did not cover it"
        );
    }
    let attack = CATALOGUE
        .iter()
        .find(|a| a.name == "host-statements")
        .unwrap();
    let victim = Victim::prepare(&target).await.expect("a victim");
    let o = run_attack(&target, &victim, attack).await;
    assert!(
        o.blocked,
        "{} host statements, one got through: {}",
        texts.len(),
        o.observed
    );
}

/// The attacks on stores that live on the machine's shared servers (PostgreSQL, MariaDB,
/// Redis), each with the victim loop beside it, on one host. Its server objects are named
/// under a prefix of its own and dropped afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_stores_on_shared_servers() {
    let up = ["PostgreSQL", "MariaDB", "Redis"]
        .iter()
        .zip([Servers::POSTGRES, Servers::MARIADB, Servers::REDIS])
        .all(|(name, addr)| crate::support::server_up(name, addr));
    if !up {
        return;
    }
    let servers = Servers::for_one_run("iso");
    let dir = component("intruder").parent().unwrap().to_path_buf();
    let (h, target) = recording_host(&silo::isolation::manifest(&dir, Some(&servers))).await;
    let victim = Victim::prepare(&target).await.expect("a victim");
    let mut failures = Vec::new();
    for attack in SERVER_CATALOGUE {
        let o = run_attack(&target, &victim, attack).await;
        if !o.pass() {
            failures.push(format!(
                "{}: {} (victim {}, p99 {:?} / {:?})",
                o.attack,
                o.observed,
                if o.victim_correct { "correct" } else { "WRONG" },
                o.victim_p99,
                o.bound
            ));
        }
    }
    drop(h);
    servers.remove().await.expect("removing the run's stores");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The host's memory budget: a service whose instances hold its whole share is refused (or
/// its growth is), while another service keeps its own share and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_at_its_share_of_the_memory_budget_is_refused_and_others_serve() {
    // 128 MiB for all guests: users declares far more than half, the hog 16 × 32 MiB, so
    // each gets 64 MiB (max-min fair): two hog instances at their full 32 MiB.
    let h = TestHost::start(
        r#"[host]
memory-mb = 128
[services.users]
component = "{c:users}"
route = "/users"
publishes = ["UserCreated", "UserUpdated"]
[services.users.stores.main]
[services.hog]
component = "{c:intruder}"
route = "/intruder"
[services.hog.stores.main]
[services.hog.limits]
memory-mb = 32
concurrency = 16
deadline-ms = 3000
"#,
    )
    .await;
    let created = h
        .post("/users", r#"{"email":"budget@example.com","name":"B"}"#)
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_string();
    let mut hogs = Vec::new();
    // 12: outside clients' share of the hog's 16 instances.
    for _ in 0..12 {
        let addr = h.http.clone();
        hogs.push(tokio::spawn(async move {
            crate::support::request("GET", &addr, "/intruder/exhaust/memory", None, &[]).await
        }));
    }
    // While the hog holds its share, users keeps serving from its own.
    let mut served = 0;
    for _ in 0..20 {
        let r = h.get(&format!("/users/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        served += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut by_share = 0;
    for hog in hogs {
        let r = hog.await.unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        if message.contains("share of the host's memory budget") {
            by_share += 1;
        } else {
            assert!(message.contains("its memory limit of 32 MiB"), "{message}");
        }
    }
    assert!(
        by_share > 0,
        "12 instances of 32 MiB fit a 64 MiB share: the budget was not enforced"
    );
    assert_eq!(served, 20);
}

/// A manifest whose services' concurrency cannot all run at once in the declared instance
/// pool is refused before anything starts, naming the key.
#[test]
fn a_pool_too_small_for_the_services_concurrency_is_refused() {
    crate::support::expect_refused_start(
        r#"[host]
instances = 300
[services.users]
component = "{c:users}"
route = "/users"
[services.users.stores.main]
[services.products]
component = "{c:products}"
route = "/products"
[services.products.stores.main]
[services.products.limits]
concurrency = 100
"#,
        "host.instances",
        &[
            "the services' `concurrency` (with their warm instances) adds up to 356 instances, more than the pool of 300",
        ],
    );
}

/// What a log flood dropped is in `/metrics`: the intruder's 32 MiB, less what its budget
/// let through (256 KiB and 64 KiB/s) and the newlines, counted under its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_guest_output_is_counted_in_metrics() {
    let dir = component("intruder").parent().unwrap().to_path_buf();
    let (h, _target) = recording_host(&silo::isolation::manifest(&dir, None)).await;
    let r = h.get("/intruder/flood/log").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let written = r.json()["written"].as_u64().unwrap();
    let metrics = h.admin_get("/metrics", None).await.text();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("silo_guest_log_dropped_bytes_total{service=\"intruder\"} "))
        .unwrap_or_else(|| panic!("no dropped-output series for intruder in:\n{metrics}"))
        .parse()
        .unwrap();
    // Let through: at most the burst and 64 KiB/s for the few seconds it took, and the
    // newlines (neither kept nor cut): 1 MiB in all, at most.
    assert!(
        dropped <= written && dropped + (1 << 20) >= written,
        "{dropped} of {written} bytes dropped"
    );
}
