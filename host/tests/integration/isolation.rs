//! The isolation catalogue, one test per attack: each asserts that the attack fails *and*
//! that the victim (the users service) answered correctly throughout, with a p99 latency
//! within `silo::isolation::victim_bound` of its quiet baseline measured in the same test.

use silo::isolation::{CATALOGUE, Judge, Target, Victim, run_attack};

use crate::support::{TestHost, component};

async fn attack(name: &str) {
    let dir = component("intruder").parent().unwrap().to_path_buf();
    let h = TestHost::start(&silo::isolation::manifest(&dir)).await;
    let target = Target::new(&h.http);
    let victim = Victim::prepare(&target).await.expect("a victim");
    let attack = CATALOGUE
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no attack {name} in the catalogue"));
    let o = run_attack(&target, &victim, attack).await;
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
    infinite_loop => "infinite-loop",
    memory_growth => "memory-growth",
    deep_recursion => "deep-recursion",
    flood_of_concurrent_requests => "request-flood",
}

/// The intruder reports exactly the attacks the catalogue judges by report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intruder_implements_the_catalogue() {
    let dir = component("intruder").parent().unwrap().to_path_buf();
    let h = TestHost::start(&silo::isolation::manifest(&dir)).await;
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
