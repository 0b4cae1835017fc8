//! Prometheus metrics: what the message path did, counted with atomics.
//!
//! [`Metrics`] is an [`Observer`]: the gateway calls it once per finished
//! transaction and once per caller connection opened, closed or refused,
//! and all it does there is one lock-free table load, two small hash
//! lookups and a few relaxed atomic adds.
//!
//! Label cardinality is bounded by the config: `code` and `channel` take
//! the values the config names (kept across reloads, so a counter never
//! jumps back), anything else is `other`; `rsp` is `000000`, one of the
//! gateway's own `GWxxxx` codes, or `other` for every other code a backend
//! answers with. `/metrics` renders the text exposition format from these
//! counters and from what the pools and the gateway count themselves.

use crate::error::RspCode;
use crate::gateway::Gateway;
use crate::observe::{Observer, TxnEvent};
use crate::reload::Reloadable;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BUCKET_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// The label value every code, channel or response code outside the config collapses into.
pub const OTHER: &str = "other";

const RSP_SLOTS: usize = RspCode::ALL.len() + 1;
const RSP_OTHER: usize = RspCode::ALL.len();

fn rsp_slot(code: &str) -> usize {
    RspCode::ALL
        .iter()
        .position(|c| c.as_str() == code)
        .unwrap_or(RSP_OTHER)
}

fn rsp_label(slot: usize) -> &'static str {
    RspCode::ALL.get(slot).map_or(OTHER, |c| c.as_str())
}

/// Requests of one (code, channel): one counter per response-code label,
/// so the hot path indexes an array instead of hashing a string.
#[derive(Debug)]
struct RspCounters([AtomicU64; RSP_SLOTS]);

impl RspCounters {
    fn new() -> Arc<Self> {
        Arc::new(RspCounters(std::array::from_fn(|_| AtomicU64::new(0))))
    }
}

/// The latency histogram of one code: fixed buckets, so observing is one
/// short scan and two atomic adds, and rendering needs no lock.
#[derive(Debug)]
struct Histogram {
    /// Per-bucket (not cumulative) counts; the last slot is `+Inf`.
    buckets: [AtomicU64; BUCKET_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn new() -> Arc<Self> {
        Arc::new(Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        })
    }

    fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKET_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKET_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

/// Everything counted for one transaction code. Cloning shares the counters:
/// a reload builds a new row map around the same atomics.
#[derive(Debug, Clone)]
struct CodeRow {
    label: Arc<str>,
    latency: Arc<Histogram>,
    channels: HashMap<Box<[u8]>, Arc<RspCounters>>,
    other: Arc<RspCounters>,
}

impl CodeRow {
    fn new(label: &str) -> CodeRow {
        CodeRow {
            label: label.into(),
            latency: Histogram::new(),
            channels: HashMap::new(),
            other: RspCounters::new(),
        }
    }
}

/// The label space: every code and channel the config has named so far.
/// Immutable once built; a reload swaps in an extended copy.
#[derive(Debug, Clone)]
struct Table {
    codes: HashMap<Box<[u8]>, CodeRow>,
    other: CodeRow,
}

impl Table {
    fn extended(&self, snap: &Snapshot) -> Table {
        let mut t = self.clone();
        for code in snap.routes.keys() {
            t.codes
                .entry(code.clone())
                .or_insert_with(|| CodeRow::new(&String::from_utf8_lossy(code)));
        }
        for row in t.codes.values_mut().chain(std::iter::once(&mut t.other)) {
            for ch in snap.channels.keys() {
                row.channels
                    .entry(ch.clone())
                    .or_insert_with(RspCounters::new);
            }
        }
        t
    }
}

/// Caller-connection counters, fed by the accept loop through the observer hooks.
#[derive(Debug, Default)]
struct Connections {
    opened: AtomicU64,
    closed: AtomicU64,
    refused: AtomicU64,
}

/// The gateway's metrics: an observer on the message path, rendered on
/// `/metrics`. See the module comment for what is counted and how.
#[derive(Debug)]
pub struct Metrics {
    table: ArcSwap<Table>,
    /// Serialises reloads of the label table (never taken per message).
    refresh: Mutex<()>,
    completed: AtomicU64,
    connections: Connections,
    started: SystemTime,
}

/// What `/metrics` reads besides the observer's own counters.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub gateway: &'a Gateway,
    pub reloads: Option<&'a crate::reload::ReloadStats>,
    pub journal: Option<&'a crate::journal::Journal>,
    /// The readiness verdict, when the caller has one.
    pub ready: Option<bool>,
}

impl Metrics {
    /// Metrics whose labels start with the codes and channels of `snap`.
    pub fn new(snap: &Snapshot) -> Metrics {
        let empty = Table {
            codes: HashMap::new(),
            other: CodeRow::new(OTHER),
        };
        Metrics {
            table: ArcSwap::from_pointee(empty.extended(snap)),
            refresh: Mutex::new(()),
            completed: AtomicU64::new(0),
            connections: Connections::default(),
            started: SystemTime::now(),
        }
    }

    /// Adds the codes and channels of a new snapshot to the label space.
    /// Labels of codes that left the config stay, with their counts.
    pub fn refresh(&self, snap: &Snapshot) {
        let _one = self.refresh.lock();
        let next = self.table.load().extended(snap);
        self.table.store(Arc::new(next));
    }

    /// Transactions observed so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// The count of one `txgate_requests_total` series (tests, `/metrics`).
    pub fn requests(&self, code: &str, channel: &str, rsp: &str) -> u64 {
        let t = self.table.load();
        let row = t.codes.get(code.as_bytes()).unwrap_or(&t.other);
        let cell = row.channels.get(channel.as_bytes()).unwrap_or(&row.other);
        cell.0[rsp_slot(rsp)].load(Ordering::Relaxed)
    }

    /// The whole exposition text.
    pub fn render(&self, src: &Sources<'_>) -> String {
        let mut out = Exposition::default();
        self.render_requests(&mut out, src.gateway);
        self.render_connections(&mut out);
        render_backends(&mut out, &src.gateway.snapshot());
        if let Some(r) = src.reloads {
            render_reloads(&mut out, r);
        }
        if let Some(j) = src.journal {
            render_journal(&mut out, j);
        }
        out.family(
            "txgate_build_info",
            "gauge",
            "The running build: always 1, the version is a label.",
        );
        out.sample(
            "txgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        out.family(
            "txgate_process_start_time_seconds",
            "gauge",
            "When the gateway started, in seconds since the epoch.",
        );
        out.sample_f(
            "txgate_process_start_time_seconds",
            &[],
            unix_seconds(self.started),
        );
        if let Some(ready) = src.ready {
            out.family(
                "txgate_ready",
                "gauge",
                "1 when /readyz says ready (listeners up, every backend's last connect fine, breakers closed).",
            );
            out.sample("txgate_ready", &[], u64::from(ready));
        }
        out.text
    }

    fn render_requests(&self, out: &mut Exposition, gw: &Gateway) {
        let table = self.table.load();
        let mut rows: Vec<&CodeRow> = table.codes.values().collect();
        rows.sort_by(|a, b| a.label.cmp(&b.label));
        rows.push(&table.other);

        out.family(
            "txgate_requests_total",
            "counter",
            "Transactions answered, by transaction code, calling channel and response code (other: not in the config / not a gateway code).",
        );
        for row in &rows {
            let mut channels: Vec<(String, &Arc<RspCounters>)> = row
                .channels
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v))
                .collect();
            channels.sort_by(|a, b| a.0.cmp(&b.0));
            channels.push((OTHER.to_string(), &row.other));
            for (channel, cell) in channels {
                for (slot, n) in cell.0.iter().enumerate() {
                    let n = n.load(Ordering::Relaxed);
                    if n > 0 {
                        out.sample(
                            "txgate_requests_total",
                            &[
                                ("code", &row.label),
                                ("channel", &channel),
                                ("rsp", rsp_label(slot)),
                            ],
                            n,
                        );
                    }
                }
            }
        }

        out.family(
            "txgate_request_duration_seconds",
            "histogram",
            "Time from a whole request read to its answer ready, by transaction code.",
        );
        for row in &rows {
            if row.latency.count() == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, b) in row.latency.buckets.iter().enumerate() {
                cumulative += b.load(Ordering::Relaxed);
                let le = LATENCY_BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |v| v.to_string());
                out.sample(
                    "txgate_request_duration_seconds_bucket",
                    &[("code", &row.label), ("le", &le)],
                    cumulative,
                );
            }
            out.sample_f(
                "txgate_request_duration_seconds_sum",
                &[("code", &row.label)],
                row.latency.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            );
            out.sample(
                "txgate_request_duration_seconds_count",
                &[("code", &row.label)],
                cumulative,
            );
        }

        let started = gw.stats.requests.load(Ordering::Relaxed);
        out.family(
            "txgate_requests_in_flight",
            "gauge",
            "Requests read from callers and not answered yet.",
        );
        out.sample(
            "txgate_requests_in_flight",
            &[],
            started.saturating_sub(self.completed()),
        );
        out.family(
            "txgate_heartbeats_total",
            "counter",
            "Heartbeat frames (00000000) echoed to callers.",
        );
        out.sample(
            "txgate_heartbeats_total",
            &[],
            gw.stats.heartbeats.load(Ordering::Relaxed),
        );
    }

    fn render_connections(&self, out: &mut Exposition) {
        let c = &self.connections;
        let opened = c.opened.load(Ordering::Relaxed);
        let closed = c.closed.load(Ordering::Relaxed);
        out.family(
            "txgate_caller_connections_open",
            "gauge",
            "Caller connections open now, over all listeners.",
        );
        out.sample(
            "txgate_caller_connections_open",
            &[],
            opened.saturating_sub(closed),
        );
        out.family(
            "txgate_caller_connections_total",
            "counter",
            "Caller connections accepted and served.",
        );
        out.sample("txgate_caller_connections_total", &[], opened);
        out.family(
            "txgate_caller_connections_refused_total",
            "counter",
            "Caller connections closed at once: over max_connections.",
        );
        out.sample(
            "txgate_caller_connections_refused_total",
            &[],
            c.refused.load(Ordering::Relaxed),
        );
    }
}

impl Observer for Metrics {
    fn on_txn(&self, e: &TxnEvent<'_>) {
        let t = self.table.load();
        let row = t.codes.get(e.code).unwrap_or(&t.other);
        let cell = row.channels.get(e.channel).unwrap_or(&row.other);
        cell.0[rsp_slot(e.rsp_code)].fetch_add(1, Ordering::Relaxed);
        row.latency.observe(e.latency);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    fn on_connection(&self, opened: bool) {
        let c = if opened {
            &self.connections.opened
        } else {
            &self.connections.closed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn on_refused(&self) {
        self.connections.refused.fetch_add(1, Ordering::Relaxed);
    }
}

impl Reloadable for Metrics {
    fn reloaded(&self, snap: &Snapshot) {
        self.refresh(snap);
    }
}

fn render_backends(out: &mut Exposition, snap: &Snapshot) {
    type Read = fn(&crate::pool::Pool) -> u64;
    let gauges: [(&str, &str, Read); 6] = [
        (
            "txgate_pool_max",
            "Pool size limit (connections) of each backend.",
            |p| p.max() as u64,
        ),
        (
            "txgate_pool_in_use",
            "Requests holding a pool slot now (long and short mode: connections busy).",
            |p| p.in_use() as u64,
        ),
        (
            "txgate_pool_idle",
            "Idle pooled connections (multiplex: open connections).",
            |p| p.idle_count() as u64,
        ),
        (
            "txgate_pool_waiters",
            "Requests waiting for a pool slot now.",
            |p| p.stats.waiters.load(Ordering::Relaxed) as u64,
        ),
        (
            "txgate_backend_last_connect_failed",
            "1 when the backend's last connect attempt failed (readiness).",
            |p| u64::from(p.last_connect_failed()),
        ),
        (
            "txgate_backend_breaker_open",
            "1 when the backend's circuit breaker is not closed (open or half-open).",
            |p| u64::from(p.breaker.state() != crate::breaker::BreakerState::Closed),
        ),
    ];
    let counters: [(&str, &str, Read); 11] = [
        (
            "txgate_backend_connects_total",
            "Connections opened to the backend.",
            |p| p.stats.connects.load(Ordering::Relaxed),
        ),
        (
            "txgate_backend_connect_failures_total",
            "Connects to the backend that failed or timed out (GW0201).",
            |p| p.stats.connect_failures.load(Ordering::Relaxed),
        ),
        (
            "txgate_backend_timeouts_total",
            "Requests sent that got no answer in time (GW0202).",
            |p| p.stats.timeouts.load(Ordering::Relaxed),
        ),
        (
            "txgate_backend_retries_total",
            "Resends on idempotent routes.",
            |p| p.stats.retries.load(Ordering::Relaxed),
        ),
        (
            "txgate_backend_busy_total",
            "Requests refused because the pool stayed full (GW0203).",
            |p| p.stats.busy.load(Ordering::Relaxed),
        ),
        (
            "txgate_backend_fast_failed_total",
            "Requests failed at once by an open breaker.",
            |p| p.stats.fast_failed.load(Ordering::Relaxed),
        ),
        (
            "txgate_backend_reused_total",
            "Requests sent on a reused pooled connection.",
            |p| p.stats.reused.load(Ordering::Relaxed),
        ),
        (
            "txgate_backend_dropped_total",
            "Pooled connections dropped as dead, expired, out of step or owing too many late answers.",
            |p| p.dropped(),
        ),
        (
            "txgate_backend_breaker_opened_total",
            "Times the backend's breaker opened.",
            |p| p.breaker.opened_total.load(Ordering::Relaxed),
        ),
        (
            "txgate_late_answers_total",
            "Answers that came after their request timed out (multiplex mode), counted and dropped.",
            |p| p.late_answers(),
        ),
        (
            "txgate_unmatched_answers_total",
            "Answers that matched no request at all (multiplex mode), dropped.",
            |p| p.unmatched_answers(),
        ),
    ];
    for (kind, list) in [("gauge", &gauges[..]), ("counter", &counters[..])] {
        for (name, help, read) in list {
            out.family(name, kind, help);
            for b in snap.backends.values() {
                out.sample(name, &[("backend", b.id())], read(&b.pool));
            }
        }
    }
}

fn render_reloads(out: &mut Exposition, r: &crate::reload::ReloadStats) {
    out.family(
        "txgate_reloads_total",
        "counter",
        "Config reloads (SIGHUP, POST /reload), by result.",
    );
    out.sample(
        "txgate_reloads_total",
        &[("result", "ok")],
        r.ok.load(Ordering::Relaxed),
    );
    out.sample(
        "txgate_reloads_total",
        &[("result", "failed")],
        r.failed.load(Ordering::Relaxed),
    );
    out.family(
        "txgate_config_generation",
        "gauge",
        "Config generation being served: 1 at start, +1 per successful reload.",
    );
    out.sample(
        "txgate_config_generation",
        &[],
        r.generation.load(Ordering::Relaxed),
    );
    out.family(
        "txgate_config_last_reload_timestamp_seconds",
        "gauge",
        "When a reload last succeeded or failed, in seconds since the epoch (0: never).",
    );
    for (result, ms) in [("ok", &r.last_ok_ms), ("failed", &r.last_failed_ms)] {
        out.sample_f(
            "txgate_config_last_reload_timestamp_seconds",
            &[("result", result)],
            ms.load(Ordering::Relaxed) as f64 / 1e3,
        );
    }
}

fn render_journal(out: &mut Exposition, j: &crate::journal::Journal) {
    let s = j.stats();
    let rows: [(&str, &str, &str, u64); 6] = [
        (
            "txgate_journal_records_total",
            "counter",
            "Journal records written to the file.",
            s.records.load(Ordering::Relaxed),
        ),
        (
            "txgate_journal_write_errors_total",
            "counter",
            "Journal records the file refused (disk full, I/O error); each is logged at error level instead.",
            s.write_errors.load(Ordering::Relaxed),
        ),
        (
            "txgate_journal_overflow_total",
            "counter",
            "Journal records not queued within max_wait_ms (or after close); each is logged at error level instead.",
            s.overflow.load(Ordering::Relaxed),
        ),
        (
            "txgate_journal_waits_total",
            "counter",
            "Transactions that found the journal queue full and waited (back-pressure).",
            s.waits.load(Ordering::Relaxed),
        ),
        (
            "txgate_journal_rotations_total",
            "counter",
            "Journal file rotations (by day or by size).",
            s.rotations.load(Ordering::Relaxed),
        ),
        (
            "txgate_journal_queue_depth",
            "gauge",
            "Journal records queued for the writer now.",
            j.queue_depth() as u64,
        ),
    ];
    for (name, kind, help, v) in rows {
        out.family(name, kind, help);
        out.sample(name, &[], v);
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The Prometheus text format (0.0.4), written into one string.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.text.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(k);
            self.text.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.text.push_str("\\\\"),
                    '"' => self.text.push_str("\\\""),
                    '\n' => self.text.push_str("\\n"),
                    c => self.text.push(c),
                }
            }
            self.text.push('"');
        }
        self.text.push('}');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.text.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.text, " {v}");
    }

    fn sample_f(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.text.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.text, " {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(1_000));
        h.observe(Duration::from_micros(1_001));
        h.observe(Duration::from_secs(100));
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[1].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[BUCKET_US.len()].load(Ordering::Relaxed), 1);
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn unknown_response_codes_collapse_into_other() {
        assert_eq!(rsp_label(rsp_slot("000000")), "000000");
        assert_eq!(rsp_label(rsp_slot("GW0101")), "GW0101");
        assert_eq!(rsp_label(rsp_slot("E12345")), OTHER);
        assert_eq!(rsp_label(rsp_slot("")), OTHER);
        assert_eq!(LATENCY_BUCKETS.len(), BUCKET_US.len());
        for (s, us) in LATENCY_BUCKETS.iter().zip(BUCKET_US) {
            assert_eq!((s * 1e6).round() as u64, us);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.sample("m", &[("a", "x\"y\\z\nw")], 1);
        assert_eq!(e.text, "m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
    }
}
