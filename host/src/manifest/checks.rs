//! What a whole manifest must satisfy once parsed: names, routes, ranges, the servers its
//! stores need, and the events and sagas between its services.

use crate::names;

use super::{
    Backend, HostSettings, KvBackend, MAX_MEMORY_MB, MAX_ROUTE_LEN, MAX_STORE_MB, Manifest,
    ServiceSpec, SqlServer, fair_shares, valid_topic,
};

/// A service or store name: lowercase letters, digits and `-`, starting with a letter or
/// digit, at most 63 characters. Names become folder and file names, so nothing else passes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// True if requests for `a` and `b` could both match (one is a segment prefix of the other).
pub fn routes_overlap(a: &str, b: &str) -> bool {
    let prefix_of = |p: &str, q: &str| {
        p == "/" || q == p || (q.starts_with(p) && q.as_bytes().get(p.len()) == Some(&b'/'))
    };
    prefix_of(a, b) || prefix_of(b, a)
}

fn valid_route(route: &str) -> Result<(), String> {
    if route.len() > MAX_ROUTE_LEN {
        return Err(format!(
            "is {} characters long; a route is at most {MAX_ROUTE_LEN}",
            route.chars().count()
        ));
    }
    if !route.starts_with('/') {
        return Err(format!("`{route}` must start with `/`"));
    }
    if route.len() > 1 && route.ends_with('/') {
        return Err(format!("`{route}` must not end with `/`"));
    }
    if route.split('/').any(|s| s == ".." || s == ".") || route.contains("//") {
        return Err(format!("`{route}` has an empty, `.` or `..` segment"));
    }
    if !route
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
    {
        return Err(format!(
            "`{route}` may hold only letters, digits and `/-_.~`"
        ));
    }
    Ok(())
}

/// `value` of `key` within `lo..=hi`, or an error that gives the range.
fn check_range(key: &str, value: u64, lo: u64, hi: u64) -> Result<(), (String, String)> {
    if value < lo || value > hi {
        return Err((
            key.to_string(),
            format!("{value} is out of range: give a number from {lo} to {hi}"),
        ));
    }
    Ok(())
}

/// The settings of `[backends.KIND]` other than its URL and prefix.
fn check_server(kind: &str, server: &SqlServer) -> Result<(), (String, String)> {
    check_range(
        &format!("backends.{kind}.pool-size"),
        server.pool_size as u64,
        1,
        1000,
    )?;
    check_range(
        &format!("backends.{kind}.connect-timeout-ms"),
        server.connect_timeout_ms,
        1,
        600_000,
    )
}

impl Manifest {
    /// Checks one service's topics, subscriptions and event settings.
    fn validate_events(&self, name: &str, svc: &ServiceSpec) -> Result<(), (String, String)> {
        let key = format!("services.{name}");
        for (i, topic) in svc.publishes.iter().enumerate() {
            if !valid_topic(topic) {
                return Err((
                    format!("{key}.publishes[{i}]"),
                    format!(
                        "`{topic}` is not a topic name (letters, digits and `._-`, at most 128)"
                    ),
                ));
            }
            if svc.publishes[..i].contains(topic) {
                return Err((
                    format!("{key}.publishes[{i}]"),
                    format!("`{topic}` is listed twice"),
                ));
            }
        }
        for (i, sub) in svc.subscribes.iter().enumerate() {
            let skey = format!("{key}.subscribes[{i}]");
            let Some(source) = self.services.get(&sub.source) else {
                return Err((
                    skey,
                    format!("no service `{}` in this manifest", sub.source),
                ));
            };
            if !source.publishes.contains(&sub.topic) {
                return Err((
                    skey,
                    format!("service `{}` does not publish `{}`", sub.source, sub.topic),
                ));
            }
            if svc.subscribes[..i].contains(sub) {
                return Err((skey, "listed twice".into()));
            }
        }
        for (i, command) in svc.commands.iter().flatten().enumerate() {
            let ckey = format!("{key}.commands[{i}]");
            if !valid_topic(command) {
                return Err((
                    ckey,
                    format!(
                        "`{command}` is not a command name (letters, digits and `._-`, at most 128)"
                    ),
                ));
            }
            if svc.commands.iter().flatten().take(i).any(|c| c == command) {
                return Err((ckey, format!("`{command}` is listed twice")));
            }
        }
        if svc.commands.is_some() && svc.event_store().is_none() {
            return Err((
                format!("{key}.commands"),
                "a saga participant needs a store to keep the commands it handled in (declare `main`)"
                    .into(),
            ));
        }
        for (i, p) in svc.saga_participants.iter().enumerate() {
            let pkey = format!("{key}.saga-participants[{i}]");
            if p == name {
                return Err((
                    pkey,
                    "a service cannot be a participant of its own sagas".into(),
                ));
            }
            if svc.saga_participants[..i].contains(p) {
                return Err((pkey, format!("`{p}` is listed twice")));
            }
            match self.services.get(p) {
                None => return Err((pkey, format!("no service `{p}` in this manifest"))),
                Some(participant) if participant.event_store().is_none() => {
                    return Err((
                        pkey,
                        format!(
                            "service `{p}` has no store to keep the commands it handled in (declare `main`)"
                        ),
                    ));
                }
                Some(participant) if participant.commands.as_ref().is_some_and(Vec::is_empty) => {
                    return Err((
                        pkey,
                        format!(
                            "service `{p}` declares `commands = []`: it takes no saga commands"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let g = &svc.sagas;
        let checks: [(&str, u64, u64, u64); 5] = [
            ("step-timeout-ms", g.step_timeout_ms, 1, 3_600_000),
            ("max-attempts", g.max_attempts.into(), 1, 1_000),
            (
                "compensation-attempts",
                g.compensation_attempts.into(),
                1,
                10_000,
            ),
            ("backoff-ms", g.backoff_ms, 1, 3_600_000),
            ("max-backoff-ms", g.max_backoff_ms, g.backoff_ms, 86_400_000),
        ];
        for (k, v, lo, hi) in checks {
            check_range(&format!("{key}.sagas.{k}"), v, lo, hi)?;
        }
        let uses_events = !svc.publishes.is_empty()
            || !svc.subscribes.is_empty()
            || !svc.saga_participants.is_empty();
        let ekey = format!("{key}.events");
        match (&svc.events.store, svc.event_store()) {
            (Some(s), _) if !svc.stores.contains_key(s) => {
                return Err((
                    format!("{ekey}.store"),
                    format!("`{s}` is not one of the service's stores"),
                ));
            }
            (None, None) if uses_events => {
                return Err((
                    format!("{ekey}.store"),
                    "a service that publishes, subscribes or starts sagas needs a store for its outbox, inbox and saga log: declare `main`, or name one here".into(),
                ));
            }
            _ => {}
        }
        let e = &svc.events;
        let checks: [(&str, u64, u64, u64); 4] = [
            ("max-attempts", e.max_attempts.into(), 1, 1_000),
            ("backoff-ms", e.backoff_ms, 1, 3_600_000),
            ("max-backoff-ms", e.max_backoff_ms, e.backoff_ms, 86_400_000),
            ("batch", e.batch.into(), 1, 1_000),
        ];
        for (k, v, lo, hi) in checks {
            check_range(&format!("{ekey}.{k}"), v, lo, hi)?;
        }
        Ok(())
    }

    /// Checks names, routes, calls and limits; errors are `(key, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(mb) = self.host.memory_mb
            && !(16..=1 << 24).contains(&mb)
        {
            return Err((
                "host.memory-mb".into(),
                format!("{mb} is out of range 16..={}", 1u64 << 24),
            ));
        }
        self.host
            .pool_for(self.services.values(), HostSettings::service_threads())?;
        if let Some(mb) = self.host.memory_mb {
            // Every service must be able to run at least one instance at its full memory.
            let demands: Vec<u64> = self
                .services
                .values()
                .map(|s| s.limits.concurrency as u64 * s.limits.memory_mb)
                .collect();
            let shares = fair_shares(mb, &demands);
            for ((name, spec), share) in self.services.iter().zip(shares) {
                if share < spec.limits.memory_mb {
                    return Err((
                        "host.memory-mb".into(),
                        format!(
                            "{mb} MiB split between {} services leaves `{name}` {share} MiB, less than one instance of its `memory-mb = {}`: raise `memory-mb` or lower a service's `memory-mb` or `concurrency`",
                            self.services.len(),
                            spec.limits.memory_mb
                        ),
                    ));
                }
            }
        }
        if let Some(pg) = &self.backends.postgres {
            if let Err(e) = names::check_postgres_url(&pg.url) {
                return Err(("backends.postgres.url".into(), e));
            }
            if let Err(e) = names::postgres_database(&pg.prefix, "x", "y") {
                return Err(("backends.postgres.prefix".into(), e));
            }
            check_server("postgres", pg)?;
        }
        if let Some(my) = &self.backends.mysql {
            if let Err(e) = names::check_mysql_url(&my.url) {
                return Err(("backends.mysql.url".into(), e));
            }
            if let Err(e) = names::mariadb_database(&my.prefix, "x", "y") {
                return Err(("backends.mysql.prefix".into(), e));
            }
            check_server("mysql", my)?;
        }
        if let Some(redis) = &self.backends.redis
            && let Err(e) = names::check_redis_url(&redis.url)
        {
            return Err(("backends.redis.url".into(), e));
        }
        if let Some(redis) = &self.backends.redis
            && let Err(e) = names::check_prefix(&redis.prefix)
        {
            return Err(("backends.redis.prefix".into(), e));
        }
        let mut routes: Vec<(&str, &str)> = Vec::new();
        for (name, svc) in &self.services {
            let key = format!("services.{name}");
            if !valid_name(name) {
                return Err((
                    key,
                    "a service name is lowercase letters, digits and `-`, at most 63 characters (no path separators or `..`)"
                        .into(),
                ));
            }
            valid_route(&svc.route).map_err(|m| (format!("{key}.route"), m))?;
            if let Some((other, _)) = routes.iter().find(|(_, r)| routes_overlap(r, &svc.route)) {
                return Err((
                    format!("{key}.route"),
                    format!("`{}` overlaps the route of service `{other}`", svc.route),
                ));
            }
            routes.push((name, &svc.route));
            for (store, spec) in &svc.stores {
                let skey = format!("{key}.stores.{store}");
                if !valid_name(store) {
                    return Err((
                        skey,
                        "a store name is lowercase letters, digits and `-`, at most 63 characters (no path separators or `..`)"
                            .into(),
                    ));
                }
                check_range(
                    &format!("{skey}.max-size-mb"),
                    spec.max_size_mb,
                    1,
                    MAX_STORE_MB,
                )?;
                if spec.backend == Backend::Postgres {
                    if self.backends.postgres.is_none() {
                        return Err((
                            format!("{skey}.backend"),
                            "`postgres` needs a server: add `[backends.postgres]` with its `url`"
                                .into(),
                        ));
                    }
                    let prefix = self
                        .backends
                        .postgres
                        .as_ref()
                        .map_or("silo", |p| p.prefix.as_str());
                    if let Err(e) = names::postgres_database(prefix, name, store) {
                        return Err((skey, e));
                    }
                }
                if spec.backend == Backend::Mysql {
                    let Some(my) = &self.backends.mysql else {
                        return Err((
                            format!("{skey}.backend"),
                            "`mysql` needs a server: add `[backends.mysql]` with its `url`".into(),
                        ));
                    };
                    if let Err(e) = names::mariadb_database(&my.prefix, name, store) {
                        return Err((skey, e));
                    }
                }
            }
            for (store, spec) in &svc.kv {
                let kkey = format!("{key}.kv.{store}");
                if !valid_name(store) {
                    return Err((
                        kkey,
                        "a store name is lowercase letters, digits and `-`, at most 63 characters (no path separators or `..`)"
                            .into(),
                    ));
                }
                check_range(
                    &format!("{kkey}.max-size-mb"),
                    spec.max_size_mb,
                    1,
                    MAX_STORE_MB,
                )?;
                if spec.backend == KvBackend::Redis && self.backends.redis.is_none() {
                    return Err((
                        format!("{kkey}.backend"),
                        "`redis` needs a server: add `[backends.redis]` with its `url`".into(),
                    ));
                }
            }
            for (i, callee) in svc.calls.iter().enumerate() {
                let ckey = format!("{key}.calls[{i}]");
                if callee == name {
                    return Err((ckey, "a service cannot call itself".into()));
                }
                if !self.services.contains_key(callee) {
                    return Err((ckey, format!("no service `{callee}` in this manifest")));
                }
                if svc.calls[..i].contains(callee) {
                    return Err((ckey, format!("`{callee}` is listed twice")));
                }
            }
            self.validate_events(name, svc)?;
            let l = &svc.limits;
            let lkey = format!("{key}.limits");
            let checks: [(&str, u64, u64, u64); 8] = [
                ("deadline-ms", l.deadline_ms, 1, 3_600_000),
                ("memory-mb", l.memory_mb, 1, MAX_MEMORY_MB),
                ("body-kb", l.body_kb, 0, 1 << 20),
                ("concurrency", l.concurrency as u64, 1, 100_000),
                ("result-kb", l.result_kb, 1, 1 << 20),
                ("statement-ms", l.statement_ms, 1, 3_600_000),
                ("instance-reuse", l.instance_reuse as u64, 1, 1_000_000),
                ("call-timeout-ms", l.call_timeout_ms, 1, 3_600_000),
            ];
            for (k, v, lo, hi) in checks {
                check_range(&format!("{lkey}.{k}"), v, lo, hi)?;
            }
        }
        Ok(())
    }
}
