//! A circuit breaker per cluster: after consecutive transient failures (unreachable, timeouts,
//! 429/5xx) requests to that cluster fail at once for a while, so a dead cluster costs its
//! fabrics seconds instead of holding sync workers that other fabrics need.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::ClusterError;

/// Consecutive transient failures that open the circuit.
const THRESHOLD: u32 = 5;
/// How long an open circuit refuses requests before one is let through again.
const OPEN_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Copy)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Breakers {
    clusters: Mutex<HashMap<String, State>>,
}

/// The process's breakers, keyed by API server URL.
pub fn breakers() -> &'static Breakers {
    static BREAKERS: OnceLock<Breakers> = OnceLock::new();
    BREAKERS.get_or_init(Breakers::default)
}

impl Breakers {
    /// Err while the cluster's circuit is open.
    pub fn check(&self, cluster: &str, now: Instant) -> Result<(), ClusterError> {
        let clusters = self.clusters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match clusters.get(cluster).and_then(|s| s.open_until) {
            Some(until) if now < until => Err(ClusterError::Unreachable(format!(
                "circuit open after {THRESHOLD} consecutive failures; retrying in {} s",
                (until - now).as_secs().max(1)
            ))),
            _ => Ok(()),
        }
    }

    /// Clusters whose circuit is open at `now` (the metrics read it at scrape time).
    pub fn open_count(&self, now: Instant) -> usize {
        let clusters = self.clusters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        clusters.values().filter(|s| s.open_until.is_some_and(|until| now < until)).count()
    }

    /// Records the outcome of a request; only transient failures count against the cluster.
    pub fn record(&self, cluster: &str, outcome: Result<(), &ClusterError>, now: Instant) {
        let mut clusters = self.clusters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = clusters.entry(cluster.to_string()).or_default();
        match outcome {
            Err(e) if e.is_transient() => {
                state.failures += 1;
                if state.failures >= THRESHOLD {
                    if state.open_until.is_none_or(|until| until <= now) {
                        crate::metrics::global().circuit_opened();
                    }
                    state.open_until = Some(now + OPEN_FOR);
                }
            }
            // The server answered (even with a 4xx): it is alive.
            _ => *state = State::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_transient_failures_and_closes_later() {
        let b = Breakers::default();
        let t0 = Instant::now();
        let down = ClusterError::Unreachable("refused".into());
        for _ in 0..THRESHOLD - 1 {
            b.record("https://a", Err(&down), t0);
        }
        assert!(b.check("https://a", t0).is_ok());
        b.record("https://a", Err(&down), t0);
        assert!(b.check("https://a", t0).is_err());
        assert!(b.check("https://b", t0).is_ok(), "other clusters are not affected");
        assert!(b.check("https://a", t0 + OPEN_FOR).is_ok(), "half-open after the pause");
        assert_eq!(b.open_count(t0), 1);
        assert_eq!(b.open_count(t0 + OPEN_FOR), 0);
    }

    #[test]
    fn answers_reset_the_count_and_4xx_do_not_count() {
        let b = Breakers::default();
        let t0 = Instant::now();
        let down = ClusterError::Timeout("slow".into());
        let forbidden = ClusterError::Forbidden("no".into());
        for _ in 0..THRESHOLD - 1 {
            b.record("c", Err(&down), t0);
        }
        b.record("c", Err(&forbidden), t0);
        b.record("c", Err(&down), t0);
        assert!(b.check("c", t0).is_ok());
    }
}
