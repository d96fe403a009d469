//! Per-principal limits: a request rate (governor's keyed GCRA limiter) and a number of open
//! streams. Exceeding either is RESOURCE_EXHAUSTED with a retry hint.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Sustained requests per second per principal.
    pub requests_per_second: u32,
    /// Requests a principal may send at once above the sustained rate.
    pub burst: u32,
    /// Open server streams per principal.
    pub max_streams: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Exceeded {
    /// Too many requests: retry after this long.
    Rate(Duration),
    /// Too many open streams: retry when one ends.
    Streams(usize),
}

pub struct Limits {
    rate: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
    max_streams: usize,
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

/// Held while a stream is open; releases its slot when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    principal: String,
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = streams.get_mut(&self.principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                streams.remove(&self.principal);
            }
        }
    }
}

impl Limits {
    /// A rate of 0 disables the rate limit.
    pub fn new(settings: LimitSettings) -> Limits {
        let rate = NonZeroU32::new(settings.requests_per_second).map(|per_second| {
            let burst = NonZeroU32::new(settings.burst).unwrap_or(per_second);
            RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        Limits { rate, clock: DefaultClock::default(), max_streams: settings.max_streams, streams: Default::default() }
    }

    pub fn check_rate(&self, principal: &str) -> Result<(), Exceeded> {
        let Some(rate) = &self.rate else { return Ok(()) };
        rate.check_key(&principal.to_string())
            .map_err(|not_until| Exceeded::Rate(not_until.wait_time_from(self.clock.now())))
    }

    pub fn open_stream(&self, principal: &str) -> Result<StreamSlot, Exceeded> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let open = streams.entry(principal.to_string()).or_insert(0);
        if *open >= self.max_streams {
            return Err(Exceeded::Streams(self.max_streams));
        }
        *open += 1;
        Ok(StreamSlot { principal: principal.to_string(), streams: self.streams.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_streams_per_principal() {
        let limits = Limits::new(LimitSettings { requests_per_second: 1, burst: 2, max_streams: 1 });
        assert!(limits.check_rate("a").is_ok());
        assert!(limits.check_rate("a").is_ok());
        assert!(
            matches!(limits.check_rate("a"), Err(Exceeded::Rate(wait)) if wait > Duration::ZERO && wait <= Duration::from_secs(1))
        );
        assert!(limits.check_rate("b").is_ok(), "another principal has its own budget");
        let slot = limits.open_stream("a").unwrap();
        assert_eq!(limits.open_stream("a").unwrap_err(), Exceeded::Streams(1));
        assert!(limits.open_stream("b").is_ok());
        drop(slot);
        assert!(limits.open_stream("a").is_ok(), "a closed stream frees its slot");
        let off = Limits::new(LimitSettings { requests_per_second: 0, burst: 0, max_streams: 8 });
        assert!((0..1000).all(|_| off.check_rate("a").is_ok()));
    }
}
