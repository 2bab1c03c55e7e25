//! The manifest's unit tests: parsing, its errors, and every check.

use super::*;

fn parse_err(text: &str) -> (String, String) {
    Manifest::parse(text).unwrap_err()
}

#[test]
fn fair_shares_give_small_demands_all_they_ask() {
    assert_eq!(fair_shares(1000, &[5000, 200, 9000]), vec![400, 200, 400]);
    assert_eq!(fair_shares(1000, &[100, 100]), vec![100, 100]);
    assert_eq!(fair_shares(10, &[]), Vec::<u64>::new());
}

#[test]
fn a_memory_budget_too_small_for_one_instance_of_a_service_is_refused() {
    let (key, message) = parse_err(
        "[host]\nmemory-mb = 100\n\
         [services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\n\
         [services.b]\ncomponent = \"b.wasm\"\nroute = \"/b\"\n",
    );
    assert_eq!(key, "host.memory-mb");
    assert!(
        message.contains("100 MiB split between 2 services leaves `a` 50 MiB, less than one instance of its `memory-mb = 64`"),
        "{message}"
    );
}

#[test]
fn minimal_service_gets_defaults() {
    let m = Manifest::parse(
        "[services.users]\ncomponent = \"u.wasm\"\nroute = \"/users\"\n[services.users.stores.main]\n",
    )
    .unwrap();
    let s = &m.services["users"];
    assert_eq!(s.route, "/users");
    assert_eq!(s.stores["main"].backend, Backend::Sqlite);
    assert_eq!(s.limits, Limits::default());
}

#[test]
fn unknown_keys_are_named() {
    let (key, msg) =
        parse_err("[services.users]\ncomponent = \"u.wasm\"\nroute = \"/u\"\ncolour = 1\n");
    assert_eq!(key, "services.users.colour");
    assert!(
        msg.starts_with("unknown key `colour` (known keys: "),
        "{msg}"
    );
    let (key, msg) = parse_err(
        "[services.users]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n[services.users.limits]\ncpu = 1\n",
    );
    assert_eq!(key, "services.users.limits.cpu");
    assert!(msg.contains("`cpu`"), "{msg}");
    let (key, _) = parse_err("colour = 1\n");
    assert_eq!(key, "colour");
}

#[test]
fn a_table_is_never_filled_from_an_array() {
    let svc = "[services.u]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n";
    let (key, msg) = parse_err(&format!("{svc}limits = [1, 1]\n"));
    assert_eq!(key, "services.u.limits");
    assert_eq!(
        msg,
        "expected a table (`[services.u.limits]` or `{ … }`), found an array"
    );
    let (key, _) = parse_err("[services]\nu = [\"u.wasm\", \"/u\"]\n");
    assert_eq!(key, "services.u");
    let (key, _) = parse_err(&format!("{svc}[services.u.stores]\nmain = \"sqlite\"\n"));
    assert_eq!(key, "services.u.stores.main");
    let (key, msg) = parse_err(&format!("{svc}subscribes = [\"a/B\"]\n"));
    assert_eq!(key, "services.u.subscribes[0]");
    assert!(msg.ends_with("found a string"), "{msg}");
}

#[test]
fn wrong_types_name_the_key_and_the_type_wanted() {
    let svc = "[services.u]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n[services.u.limits]\n";
    let (key, msg) = parse_err(&format!("{svc}memory-mb = \"64\"\n"));
    assert_eq!(key, "services.u.limits.memory-mb");
    assert!(msg.contains("expected a whole number, 0 or more"), "{msg}");
    let (key, msg) = parse_err(&format!("{svc}memory-mb = -1\n"));
    assert_eq!(key, "services.u.limits.memory-mb");
    assert!(msg.contains("-1"), "{msg}");
    let (key, msg) = parse_err(&format!("{svc}concurrency = 4294967296\n"));
    assert_eq!(key, "services.u.limits.concurrency");
    assert!(msg.contains("4294967295"), "{msg}");
    let (key, _) = parse_err("[services.u]\nroute = \"/u\"\n");
    assert_eq!(key, "services.u.component");
    // TOML syntax: the line.
    let (key, _) = parse_err(&format!("{svc}memory-mb = 99999999999999999999\n"));
    assert_eq!(key, "line 5");
}

#[test]
fn numbers_are_range_checked_before_any_conversion() {
    let svc = "[services.u]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n";
    // 17592186044417 MiB is 2^64 + 1 MiB in bytes: it must not wrap to 1 MiB.
    let (key, msg) = parse_err(&format!(
        "{svc}[services.u.stores.main]\nmax-size-mb = 17592186044417\n"
    ));
    assert_eq!(key, "services.u.stores.main.max-size-mb");
    assert_eq!(
        msg,
        "17592186044417 is out of range: give a number from 1 to 1048576"
    );
    let (key, _) = parse_err(&format!("{svc}[services.u.kv.c]\nmax-size-mb = 0\n"));
    assert_eq!(key, "services.u.kv.c.max-size-mb");
    let (key, _) = parse_err(&format!(
        "[backends.postgres]\nurl = \"postgres://p@127.0.0.1/p\"\nconnect-timeout-ms = 0\n{svc}"
    ));
    assert_eq!(key, "backends.postgres.connect-timeout-ms");
    let (key, _) = parse_err(&format!("[backends.redis]\nurl = \"nope\"\n{svc}"));
    assert_eq!(key, "backends.redis.url");
}

#[test]
fn lists_name_each_entry_once() {
    let base = "[services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\n[services.a.stores.main]\n[services.b]\ncomponent = \"b.wasm\"\nroute = \"/b\"\n[services.b.stores.main]\n";
    let (key, msg) =
        parse_err(&base.replace("route = \"/a\"", "route = \"/a\"\ncalls = [\"b\", \"b\"]"));
    assert_eq!(key, "services.a.calls[1]");
    assert_eq!(msg, "`b` is listed twice");
    let (key, _) = parse_err(&base.replace(
        "route = \"/a\"",
        "route = \"/a\"\nsaga-participants = [\"b\", \"b\"]",
    ));
    assert_eq!(key, "services.a.saga-participants[1]");
}

#[test]
fn errors_are_one_line_whatever_the_manifest_holds() {
    let e = ManifestError {
        file: PathBuf::from("silo.toml"),
        key: "services.a\nb".into(),
        message: "x".repeat(5000),
    };
    let shown = e.to_string();
    assert_eq!(shown.lines().count(), 1);
    assert!(
        shown.starts_with("silo.toml: services.a\\nb: xxx"),
        "{shown}"
    );
    assert!(
        shown.ends_with('…') && shown.len() < 1200,
        "{}",
        shown.len()
    );
}

#[test]
fn bad_names_are_rejected() {
    for name in [
        "\"../x\"",
        "\"a/b\"",
        "\"Users\"",
        "\"a.b\"",
        "\"\"",
        "\"-x\"",
    ] {
        let text = format!("[services.{name}]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n");
        let (key, _) = parse_err(&text);
        assert!(key.starts_with("services."), "{name}: {key}");
    }
    let (key, _) = parse_err(
        "[services.u]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n[services.u.stores.\"..\"]\n",
    );
    assert_eq!(key, "services.u.stores...");
}

#[test]
fn overlapping_and_duplicate_routes_are_rejected() {
    let two = |a: &str, b: &str| {
        format!(
            "[services.a]\ncomponent = \"a.wasm\"\nroute = \"{a}\"\n[services.b]\ncomponent = \"b.wasm\"\nroute = \"{b}\"\n"
        )
    };
    assert_eq!(parse_err(&two("/x", "/x")).0, "services.b.route");
    assert_eq!(parse_err(&two("/x", "/x/y")).0, "services.b.route");
    assert_eq!(parse_err(&two("/", "/x")).0, "services.b.route");
    assert!(Manifest::parse(&two("/x", "/xy")).is_ok());
    assert_eq!(parse_err(&two("x", "/y")).0, "services.a.route");
    assert_eq!(parse_err(&two("/x/../y", "/z")).0, "services.a.route");
}

#[test]
fn calls_name_other_services_of_the_manifest() {
    let base = "[services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\n[services.b]\ncomponent = \"b.wasm\"\nroute = \"/b\"\n";
    assert!(
        Manifest::parse(&base.replace("route = \"/a\"", "route = \"/a\"\ncalls = [\"b\"]")).is_ok()
    );
    let (key, _) = parse_err(&base.replace("route = \"/a\"", "route = \"/a\"\ncalls = [\"c\"]"));
    assert_eq!(key, "services.a.calls[0]");
    let (key, _) =
        parse_err(&base.replace("route = \"/a\"", "route = \"/a\"\ncalls = [\"b\", \"a\"]"));
    assert_eq!(key, "services.a.calls[1]");
}

#[test]
fn subscriptions_name_a_published_topic() {
    let base = "[services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\npublishes = [\"Made\"]\n[services.a.stores.main]\n[services.b]\ncomponent = \"b.wasm\"\nroute = \"/b\"\n[services.b.stores.main]\n";
    let with = |sub: &str| {
        base.replace(
            "route = \"/b\"\n",
            &format!("route = \"/b\"\nsubscribes = [{sub}]\n"),
        )
    };
    assert!(Manifest::parse(&with("{ source = \"a\", topic = \"Made\" }")).is_ok());
    let (key, msg) = parse_err(&with("{ source = \"a\", topic = \"Other\" }"));
    assert_eq!(key, "services.b.subscribes[0]");
    assert!(msg.contains("does not publish"), "{msg}");
    let (key, _) = parse_err(&with("{ source = \"c\", topic = \"Made\" }"));
    assert_eq!(key, "services.b.subscribes[0]");
    let (key, _) = parse_err(&base.replace("[\"Made\"]", "[\"bad topic\"]"));
    assert_eq!(key, "services.a.publishes[0]");
    let no_store = "[services.a]\ncomponent = \"a.wasm\"\nroute = \"/a\"\npublishes = [\"Made\"]\n";
    assert_eq!(parse_err(no_store).0, "services.a.events.store");
}

#[test]
fn commands_are_names_and_a_participant_takes_some() {
    let base = "[services.o]\ncomponent = \"o.wasm\"\nroute = \"/o\"\nsaga-participants = [\"p\"]\n[services.o.stores.main]\n[services.p]\ncomponent = \"p.wasm\"\nroute = \"/p\"\nCOMMANDS\n[services.p.stores.main]\n";
    let with = |c: &str| base.replace("COMMANDS", c);
    let m = Manifest::parse(&with("commands = [\"reserve\", \"release\"]")).unwrap();
    let p = &m.services["p"];
    assert!(p.accepts_command("reserve") && p.accepts_command("release"));
    assert!(!p.accepts_command("charge") && !p.accepts_command(""));
    let m = Manifest::parse(&with("")).unwrap();
    assert!(
        m.services["p"].accepts_command("anything"),
        "undeclared: the handler decides"
    );
    let (key, msg) = parse_err(&with("commands = [\"a\", \"a\"]"));
    assert_eq!(key, "services.p.commands[1]");
    assert!(msg.contains("twice"), "{msg}");
    let (key, _) = parse_err(&with("commands = [\"a b\"]"));
    assert_eq!(key, "services.p.commands[0]");
    let (key, msg) = parse_err(&with("commands = []"));
    assert_eq!(key, "services.o.saga-participants[0]");
    assert!(msg.contains("takes no saga commands"), "{msg}");
    let no_store = "[services.p]\ncomponent = \"p.wasm\"\nroute = \"/p\"\ncommands = [\"a\"]\n";
    assert_eq!(parse_err(no_store).0, "services.p.commands");
}

#[test]
fn limits_are_range_checked() {
    let (key, _) = parse_err(
        "[services.u]\ncomponent = \"u.wasm\"\nroute = \"/u\"\n[services.u.limits]\nmemory-mb = 0\n",
    );
    assert_eq!(key, "services.u.limits.memory-mb");
}

#[test]
fn missing_component_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silo.toml");
    std::fs::write(
        &path,
        "[services.u]\ncomponent = \"nope.wasm\"\nroute = \"/u\"\n",
    )
    .unwrap();
    let e = Manifest::load(&path).unwrap_err();
    assert_eq!(e.key, "services.u.component");
    assert!(e.to_string().contains("nope.wasm"));
}
