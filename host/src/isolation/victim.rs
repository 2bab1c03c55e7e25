//! The victim: a user of the users service read back during every attack, its quiet
//! baseline, and how slow it may get ([`victim_bound`]).

use std::time::{Duration, Instant};

use super::Target;

/// How slow the victim may get during an attack: five times its quiet p99, plus 150 ms for
/// the scheduling of two busy cores (a spinning guest yields every epoch tick). A victim
/// starved by an attack waits for the attack's whole deadline (1 s here) and fails it.
pub fn victim_bound(baseline_p99: Duration) -> Duration {
    baseline_p99 * 5 + Duration::from_millis(150)
}

/// The victim: a user of the users service, read back again and again.
pub struct Victim {
    pub(super) id: String,
    pub(super) email: String,
    pub baseline_p99: Duration,
}

pub(super) fn p99(mut samples: Vec<Duration>) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

impl Victim {
    /// Creates the victim's row and measures a quiet baseline.
    pub async fn prepare(target: &Target) -> Result<Self, String> {
        let email = format!("victim-{}@example.com", rand::random::<u32>());
        let body = format!(r#"{{"email":"{email}","name":"Victim"}}"#);
        let (status, text) = target.send("POST", "/users", Some(&body)).await;
        if status != 201 {
            return Err(format!("creating the victim: {status} {text}"));
        }
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let id = v["id"].as_str().ok_or("no id")?.to_string();
        let mut victim = Self {
            id,
            email,
            baseline_p99: Duration::ZERO,
        };
        let mut samples = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            if !victim.ask(target).await {
                return Err("the victim answered wrongly before any attack".into());
            }
            samples.push(t.elapsed());
        }
        victim.baseline_p99 = p99(samples);
        Ok(victim)
    }

    /// One victim request; true if the answer is exactly right.
    pub(super) async fn ask(&self, target: &Target) -> bool {
        let (status, text) = target
            .send("GET", &format!("/users/{}", self.id), None)
            .await;
        status == 200
            && serde_json::from_str::<serde_json::Value>(&text)
                .map(|v| v["email"] == self.email.as_str())
                .unwrap_or(false)
    }
}
