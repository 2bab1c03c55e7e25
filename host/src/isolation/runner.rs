//! Runs one attack with the victim loop beside it ([`run_attack`]) and prints the
//! catalogue's table ([`render`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::judge::judge;
use super::victim::p99;
use super::{Attack, Target, Victim, victim_bound};

/// What one attack did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attack: &'static str,
    pub expected: &'static str,
    pub observed: String,
    /// The attack failed.
    pub blocked: bool,
    /// Every victim answer was correct.
    pub victim_correct: bool,
    pub victim_p99: Duration,
    pub bound: Duration,
}

impl Outcome {
    pub fn pass(&self) -> bool {
        self.blocked && self.victim_correct && self.victim_p99 <= self.bound
    }
}

/// Runs one attack with the victim loop beside it.
pub async fn run_attack(target: &Target, victim: &Victim, attack: &Attack) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (target, stop) = (target.clone(), stop.clone());
        let id = victim.id.clone();
        let email = victim.email.clone();
        tokio::spawn(async move {
            let v = Victim {
                id,
                email,
                baseline_p99: Duration::ZERO,
            };
            let (mut samples, mut correct) = (Vec::new(), true);
            while !stop.load(Ordering::Relaxed) || samples.len() < 20 {
                let t = Instant::now();
                correct &= v.ask(&target).await;
                samples.push(t.elapsed());
            }
            (samples, correct)
        })
    };
    let (blocked, observed) = judge(target, attack).await;
    stop.store(true, Ordering::Relaxed);
    let (samples, victim_correct) = watcher.await.unwrap_or_default();
    Outcome {
        attack: attack.name,
        expected: attack.expected,
        observed,
        blocked,
        victim_correct,
        victim_p99: p99(samples),
        bound: victim_bound(victim.baseline_p99),
    }
}

/// The catalogue's table, as the demo prints it.
pub fn render(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<18} {:<58} {:<6} {}\n",
        "ATTACK", "EXPECTED", "RESULT", "OBSERVED (victim p99 / bound)"
    ));
    for o in outcomes {
        out.push_str(&format!(
            "{:<18} {:<58} {:<6} {} (victim {}: {:.1} ms / {:.1} ms)\n",
            o.attack,
            o.expected,
            if o.pass() { "PASS" } else { "FAIL" },
            o.observed,
            if o.victim_correct { "correct" } else { "WRONG" },
            o.victim_p99.as_secs_f64() * 1e3,
            o.bound.as_secs_f64() * 1e3,
        ));
    }
    let failed = outcomes.iter().filter(|o| !o.pass()).count();
    out.push_str(&format!(
        "\n{} passed, {} failed\n",
        outcomes.len() - failed,
        failed
    ));
    out
}
