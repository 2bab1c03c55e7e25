//! Start-up in the open: each service's phase (compiling, opening, ready) for `/healthz` and
//! the service port, and the progress line on a terminal.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Host;
use crate::manifest::ServiceSpec;
use crate::runtime::dispatch::route_matches;

/// Where a service is in start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Its component is being compiled (or waits for a compiler thread).
    Compiling,
    /// Compiled and checked: its stores are opening and its migrations running.
    Opening,
    /// Routed: it serves.
    Ready,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Compiling => "compiling",
            Phase::Opening => "opening",
            Phase::Ready => "ready",
        }
    }
}

/// What start-up has done so far: every service being started, with its phase.
/// Empty for a host loaded all at once ([`Host::load_manifest`]); filled by
/// [`Host::start_each`].
#[derive(Default)]
pub struct StartupBoard {
    started: Option<Instant>,
    phases: BTreeMap<String, Phase>,
    /// What each service being started declares: its route (for the service port) and its
    /// subscriptions (registered with a publisher that opens before it).
    specs: BTreeMap<String, ServiceSpec>,
}

/// A snapshot of start-up, for `/healthz`.
pub struct StartupStatus {
    pub elapsed: Duration,
    /// Each service being started and its phase, in name order.
    pub services: Vec<(String, Phase)>,
}

impl StartupStatus {
    /// The services in `phase`.
    pub fn in_phase(&self, phase: Phase) -> Vec<&str> {
        self.services
            .iter()
            .filter(|(_, p)| *p == phase)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

impl Host {
    /// Puts every service of `specs` on the board as compiling.
    pub(super) fn begin_board(&self, specs: &BTreeMap<String, ServiceSpec>) {
        let mut board = self.startup.lock().expect("startup board");
        board.started = Some(Instant::now());
        board.phases = specs
            .keys()
            .map(|name| (name.clone(), Phase::Compiling))
            .collect();
        board.specs = specs.clone();
    }

    /// The services being started that are not open yet, with what they declare.
    pub(super) fn not_open_yet(&self) -> Vec<(String, ServiceSpec)> {
        let board = self.startup.lock().expect("startup board");
        board
            .phases
            .iter()
            .filter(|(_, phase)| **phase != Phase::Ready)
            .filter_map(|(name, _)| Some((name.clone(), board.specs.get(name)?.clone())))
            .collect()
    }

    /// Moves service `name` to `phase` (if it is on the board).
    pub(super) fn set_phase(&self, name: &str, phase: Phase) {
        if let Some(entry) = self
            .startup
            .lock()
            .expect("startup board")
            .phases
            .get_mut(name)
        {
            *entry = phase;
        }
    }

    /// The service not yet serving whose route `path` is under, with its phase: what the
    /// service port answers for a path no routed service serves yet.
    pub fn starting(&self, path: &str) -> Option<(String, Phase)> {
        // Once every service is loaded nothing is starting: a path no service serves is a
        // plain 404, without the board's lock.
        if self.is_ready() {
            return None;
        }
        let board = self.startup.lock().expect("startup board");
        board
            .phases
            .iter()
            .filter(|(_, phase)| **phase != Phase::Ready)
            .filter_map(|(name, phase)| Some((name, phase, &board.specs.get(name)?.route)))
            .filter(|(_, _, route)| route_matches(route, path))
            .max_by_key(|(_, _, route)| route.len())
            .map(|(name, phase, _)| (name.clone(), *phase))
    }

    pub fn startup_status(&self) -> StartupStatus {
        let board = self.startup.lock().expect("startup board");
        StartupStatus {
            elapsed: board.started.map(|s| s.elapsed()).unwrap_or_default(),
            services: board
                .phases
                .iter()
                .map(|(name, phase)| (name.clone(), *phase))
                .collect(),
        }
    }
}

/// A compile at least this long is logged (a Python or JavaScript component, or a cold
/// cache); quicker ones are not, so a refused start still prints one line only.
const SLOW_COMPILE: Duration = Duration::from_secs(1);

/// Start-up progress of compiling the services: on a terminal, one status line redrawn
/// (which services compile, done/total, elapsed); otherwise one log line per service that
/// compiled slowly.
pub(super) struct Progress {
    total: usize,
    started: Instant,
    pub(super) tty: bool,
    /// A service failed to compile: the start will be refused.
    failed: AtomicBool,
    state: Mutex<(usize, Vec<String>)>,
}

impl Progress {
    pub(super) fn new(total: usize) -> Self {
        Self {
            total,
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            failed: AtomicBool::new(false),
            state: Mutex::new((0, Vec::new())),
        }
    }

    pub(super) fn begin(&self, name: &str) {
        let mut state = self.state.lock().expect("progress");
        state.1.push(name.to_string());
        self.draw(&state);
    }

    pub(super) fn end(&self, name: &str, took: Duration, ok: bool) {
        let mut state = self.state.lock().expect("progress");
        state.0 += 1;
        state.1.retain(|n| n != name);
        if !ok {
            self.failed.store(true, Ordering::Relaxed);
        }
        if self.tty {
            self.draw(&state);
        } else if ok && took >= SLOW_COMPILE {
            tracing::info!(
                service = name,
                done = state.0,
                total = self.total,
                took_ms = took.as_millis() as u64,
                "service compiled"
            );
        }
    }

    /// Redraws the line; true once every service is compiled.
    pub(super) fn tick(&self) -> bool {
        let state = self.state.lock().expect("progress");
        self.draw(&state);
        state.0 >= self.total
    }

    fn draw(&self, state: &(usize, Vec<String>)) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2Ksilo: compiling {} ({}/{} done, {:.1} s)",
                state.1.join(", "),
                state.0,
                self.total,
                self.started.elapsed().as_secs_f64()
            );
            let _ = err.flush();
        }
    }

    pub(super) fn finish(&self) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
        // Only after a slow start that succeeded: a refused start prints its one line alone.
        if !self.failed.load(Ordering::Relaxed) && self.started.elapsed() >= SLOW_COMPILE {
            tracing::info!(
                services = self.total,
                took_ms = self.started.elapsed().as_millis() as u64,
                "every service compiled"
            );
        }
    }
}
