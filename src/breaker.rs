//! A circuit breaker per backend.
//!
//! A backend that keeps failing is not hammered with requests that will
//! time out one by one: after N consecutive failures the gateway answers
//! GW0201 at once (nothing sent, safe to retry) for a cool-down, then lets
//! one probe through; the probe's outcome closes or reopens the breaker.

use crate::config::BreakerConfig;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// The states, as metrics and logs show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Lock-free: the hot path reads one atomic when the breaker is closed.
#[derive(Debug)]
pub struct Breaker {
    backend: String,
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    state: AtomicU8,
    failures: AtomicU32,
    opened_at_ms: AtomicU64,
    probing: AtomicBool,
    pub opened_total: AtomicU64,
}

/// Permission to send: `probe` marks the one request let through half-open.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    pub probe: bool,
}

impl Breaker {
    pub fn new(backend: &str, cfg: &BreakerConfig) -> Breaker {
        Breaker {
            backend: backend.to_string(),
            threshold: cfg.failures,
            cooldown: Duration::from_millis(cfg.cooldown_ms),
            epoch: Instant::now(),
            state: AtomicU8::new(BreakerState::Closed as u8),
            failures: AtomicU32::new(0),
            opened_at_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            opened_total: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// May a request be sent now? `None` means fail fast.
    pub fn allow(&self) -> Option<Pass> {
        match self.state() {
            BreakerState::Closed => Some(Pass { probe: false }),
            BreakerState::Open => {
                let since = self.now_ms() - self.opened_at_ms.load(Ordering::Acquire);
                if since < self.cooldown.as_millis() as u64 {
                    return None;
                }
                self.try_probe()
            }
            BreakerState::HalfOpen => self.try_probe(),
        }
    }

    fn try_probe(&self) -> Option<Pass> {
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.state
                .store(BreakerState::HalfOpen as u8, Ordering::Release);
            tracing::info!(backend = %self.backend, breaker = "half_open", "breaker lets one probe through");
            Some(Pass { probe: true })
        } else {
            None
        }
    }

    pub fn success(&self, pass: Pass) {
        self.failures.store(0, Ordering::Relaxed);
        if pass.probe || self.state() != BreakerState::Closed {
            self.state
                .store(BreakerState::Closed as u8, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            tracing::warn!(backend = %self.backend, breaker = "closed", "backend recovered; breaker closed");
        }
    }

    pub fn failure(&self, pass: Pass) {
        if self.threshold == 0 {
            return;
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if pass.probe || (n >= self.threshold && self.state() == BreakerState::Closed) {
            self.opened_at_ms.store(self.now_ms(), Ordering::Release);
            self.state
                .store(BreakerState::Open as u8, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            self.opened_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                backend = %self.backend,
                breaker = "open",
                failures = n,
                cooldown_ms = self.cooldown.as_millis() as u64,
                "breaker opened: failing fast with GW0201"
            );
        }
    }

    /// A request that got no verdict (pool full, cancelled) frees the probe slot.
    pub fn release(&self, pass: Pass) {
        if pass.probe {
            self.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, cooldown_ms: u64) -> Breaker {
        Breaker::new(
            "T",
            &BreakerConfig {
                failures,
                cooldown_ms,
            },
        )
    }

    #[test]
    fn opens_after_threshold_and_fails_fast() {
        let b = breaker(3, 60_000);
        for _ in 0..3 {
            let p = b.allow().unwrap();
            b.failure(p);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.allow().is_none());
    }

    #[test]
    fn one_probe_after_cooldown_then_closes_on_success() {
        let b = breaker(1, 0);
        let p = b.allow().unwrap();
        b.failure(p);
        assert_eq!(b.state(), BreakerState::Open);
        let probe = b.allow().unwrap();
        assert!(probe.probe);
        assert!(b.allow().is_none(), "only one probe at a time");
        b.success(probe);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow().is_some());
    }

    #[test]
    fn failed_probe_reopens() {
        let b = breaker(1, 0);
        let p = b.allow().unwrap();
        b.failure(p);
        let probe = b.allow().unwrap();
        b.failure(probe);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn zero_threshold_never_opens() {
        let b = breaker(0, 0);
        for _ in 0..10 {
            let p = b.allow().unwrap();
            b.failure(p);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
