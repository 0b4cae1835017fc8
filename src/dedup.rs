//! Duplicate SeqNo detection (GW0103) for routes that are not idempotent.
//!
//! A caller that resends a drawdown or an early repayment with the same
//! (channel, SeqNo, TranDate) must not move money twice. The store is a
//! trait so that several gateway instances can later share one (Redis, a
//! database); the default is bounded and in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Remembers which requests were seen.
pub trait SeqStore: Send + Sync + std::fmt::Debug {
    /// Records `key`; false if it was already there within the window.
    fn first_seen(&self, key: &[u8]) -> bool;
    /// Forgets `key`: the request was certainly not sent, so the caller may
    /// retry it with the same SeqNo.
    fn forget(&self, key: &[u8]);
}

/// In memory, bounded by a window and a capacity (oldest entries go first).
#[derive(Debug)]
pub struct MemorySeqStore {
    window: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashMap<Box<[u8]>, Instant>,
    order: VecDeque<(Instant, Box<[u8]>)>,
}

impl MemorySeqStore {
    pub fn new(window: Duration, capacity: usize) -> Self {
        MemorySeqStore {
            window,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.seen.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SeqStore for MemorySeqStore {
    fn first_seen(&self, key: &[u8]) -> bool {
        let now = Instant::now();
        let Ok(mut inner) = self.inner.lock() else {
            // A poisoned lock must not stop payments: treat as new.
            return true;
        };
        // Expire by age, then by capacity.
        while let Some((t, _)) = inner.order.front() {
            let expired = now.duration_since(*t) >= self.window;
            if !expired && inner.order.len() < self.capacity {
                break;
            }
            if let Some((t, k)) = inner.order.pop_front() {
                if inner.seen.get(&k) == Some(&t) {
                    inner.seen.remove(&k);
                }
            }
        }
        if let Some(t) = inner.seen.get(key) {
            if now.duration_since(*t) < self.window {
                return false;
            }
        }
        let key: Box<[u8]> = key.into();
        inner.seen.insert(key.clone(), now);
        inner.order.push_back((now, key));
        true
    }

    fn forget(&self, key: &[u8]) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.seen.remove(key);
        }
    }
}

/// The key of a request: channel, SeqNo and date, separated so that
/// ("AB","C") and ("A","BC") differ.
pub fn key(channel: &[u8], seq: &[u8], date: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(channel.len() + seq.len() + date.len() + 2);
    k.extend_from_slice(channel);
    k.push(0);
    k.extend_from_slice(seq);
    k.push(0);
    k.extend_from_slice(date);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_is_refused_and_forget_allows_again() {
        let s = MemorySeqStore::new(Duration::from_secs(60), 10);
        let k = key(b"IBP", b"S1", b"20261204");
        assert!(s.first_seen(&k));
        assert!(!s.first_seen(&k));
        s.forget(&k);
        assert!(s.first_seen(&k));
    }

    #[test]
    fn capacity_bounds_memory() {
        let s = MemorySeqStore::new(Duration::from_secs(60), 100);
        for i in 0..1000u32 {
            assert!(s.first_seen(&i.to_be_bytes()));
        }
        assert!(s.len() <= 100, "{}", s.len());
    }

    #[test]
    fn window_expires_entries() {
        let s = MemorySeqStore::new(Duration::ZERO, 100);
        assert!(s.first_seen(b"k"));
        assert!(s.first_seen(b"k"));
    }

    #[test]
    fn key_parts_do_not_run_together() {
        assert_ne!(key(b"AB", b"C", b"D"), key(b"A", b"BC", b"D"));
    }
}
