//! `txgate bench`: a load generator for framed bank messages, built for the
//! catalog's section D scenario (2969 from CUS to SCF through the gateway),
//! and usable against any target that speaks the same framing.
//!
//! Design, because the generator shares the machine with what it measures:
//! - one task per connection, nothing per request: every message is built
//!   once from its fixture, framed, and only the SeqNo bytes are rewritten
//!   in place before each send (found by role in the header, or at a
//!   placeholder's position in an XML body);
//! - each connection task records into its own histogram; a reporter takes
//!   each task's one-second interval under an uncontended lock, prints the
//!   progress line and keeps the per-second series;
//! - closed loop (`--connections N`, each sends when its last answer came)
//!   or open loop (`--rate R`: request `i` is planned at `start + i/R`, and
//!   its latency runs from that planned time, so a stall is not hidden —
//!   coordinated omission);
//! - every run is bounded by time (`--warmup` + `--duration`) and by count
//!   (`--max-requests`), and every request by `--timeout-ms`.
//!
//! Every answer is checked: it must be a whole frame whose header parses,
//! and whose SeqNo is the one sent; anything else is an error. Answers are
//! counted by response code. `--json` writes the full result, `--report`
//! an HTML 性能测试报告, and `--summarize` turns earlier `--json` results
//! into the comparison table of `benches/bench-2969.sh`.

pub use crate::report;

use crate::fixture::{Fixture, Format};
use crate::frame::{FrameCodec, Framing};
use crate::header::{trim, HeaderSpec, Role};
use crate::tools::{self, Schemas};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Arguments of `txgate bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The target: the gateway's listener, a proxy, or a backend directly.
    #[arg(long, required_unless_present = "summarize")]
    pub to: Option<SocketAddr>,
    /// The config whose header layout, schemas and fixtures are used.
    #[arg(long, default_value = "gateway.toml")]
    pub config: PathBuf,
    /// Connections (closed loop: each sends its next request when the last
    /// answer came; open loop: the most requests in flight).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Open loop at this many requests per second (latency from each
    /// request's planned send time).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Persistent connections (default: short, one connection per request).
    #[arg(long)]
    pub long: bool,
    /// Short connections: close each with a reset (SO_LINGER 0) instead of
    /// FIN, so the generator keeps no TIME_WAIT sockets. At thousands of
    /// connections per second over one address pair, TIME_WAIT makes the
    /// generator's own connect() the bottleneck (ephemeral port search).
    #[arg(long)]
    pub rst_close: bool,
    /// Requests built from every fixture of this code (repeatable; default 2969).
    #[arg(long)]
    pub code: Vec<String>,
    /// A weighted mix of codes, e.g. `2969=8,2979=2`.
    #[arg(long)]
    pub mix: Option<String>,
    /// Requests built from this fixture file (repeatable).
    #[arg(long)]
    pub fixture: Vec<PathBuf>,
    /// How long to measure, after the warm-up (`10s`, `500ms`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to run before measuring.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The most requests sent, warm-up included.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_requests: u64,
    /// How long one request may take (connect, send, answer), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub timeout_ms: u64,
    /// Framing of the target.
    #[arg(long, default_value = "ascii8")]
    pub framing: Framing,
    /// A name for this setup in results and reports (e.g. `txgate`, `HAProxy`).
    #[arg(long)]
    pub label: Option<String>,
    /// CPU time of another process over the measured window: `NAME=PID`
    /// (repeatable), read from /proc/PID/stat.
    #[arg(long, value_name = "NAME=PID")]
    pub watch_pid: Vec<String>,
    /// Write the full result as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write an HTML performance report (性能测试报告).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// No progress line on standard error.
    #[arg(long)]
    pub quiet: bool,
    /// Do not run: summarize earlier `--json` results (files), grouped by
    /// label and connection mode; `--json`, `--report`, `--markdown` then
    /// write the summary.
    #[arg(long, num_args = 1.., value_name = "RESULT.json")]
    pub summarize: Vec<PathBuf>,
    /// With `--summarize`: the label the TPS ratio is computed against.
    #[arg(long)]
    pub baseline: Option<String>,
    /// With `--summarize`: also write the table as Markdown.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

/// Why a bench could not run (failed requests are not this: they are
/// counted, and `run` returns `Ok(false)`).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Fixture(#[from] crate::fixture::FixtureError),
    #[error("{0}")]
    Tool(#[from] crate::tools::ToolError),
    #[error("workload: {0}")]
    Workload(String),
    #[error("{0}")]
    Settings(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

/// Parses `10s`, `500ms`, `2m`, `1.5s`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("duration {s:?}: expected e.g. 10s, 500ms, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        _ => return Err(format!("duration {s:?}: unit must be ms, s or m")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("duration {s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

// ---------------------------------------------------------------- workload

/// One message ready to send: framed bytes, and where its SeqNo sits.
#[derive(Debug, Clone)]
pub struct Template {
    pub code: String,
    pub fixture: String,
    pub framed: Vec<u8>,
    /// Byte range of the SeqNo value inside `framed`.
    pub seq_at: usize,
    pub seq_len: usize,
}

/// What a bench sends: message templates and the order to cycle them in
/// (a deck that realizes the mix's weights).
#[derive(Debug, Clone)]
pub struct Workload {
    pub templates: Vec<Template>,
    pub deck: Vec<u16>,
    pub items: Vec<WorkItem>,
}

/// One code of the mix, as reported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkItem {
    pub code: String,
    pub weight: u32,
    pub fixtures: Vec<String>,
}

impl Workload {
    /// Builds the templates of weighted groups of fixtures (each group
    /// cycled round-robin, groups interleaved by weight). Each fixture is
    /// sent in its own format (fixed or XML).
    pub fn build(
        header: &HeaderSpec,
        schemas: &Schemas,
        framing: Framing,
        groups: &[(u32, Vec<Fixture>)],
    ) -> Result<Workload, BenchError> {
        let seq = header
            .field(Role::Seq)
            .ok_or_else(|| BenchError::Workload("the header layout has no SeqNo role".into()))?;
        if seq.width < 12 {
            return Err(BenchError::Workload(format!(
                "SeqNo is {} bytes; unique SeqNos need at least 12",
                seq.width
            )));
        }
        let marker: String = "~".repeat(seq.width);
        let mut templates = Vec::new();
        let mut per_group: Vec<Vec<u16>> = Vec::new();
        let mut items = Vec::new();
        for (weight, fixtures) in groups {
            if fixtures.is_empty() {
                return Err(BenchError::Workload(
                    "a code of the mix has no fixtures".into(),
                ));
            }
            let mut idx = Vec::new();
            for f in fixtures {
                let mut f = f.clone();
                match f.request_header.iter_mut().find(|(t, _)| t == &seq.tag) {
                    Some(slot) => slot.1 = marker.clone(),
                    None => f.request_header.push((seq.tag.clone(), marker.clone())),
                }
                let xml = f.format == Format::Xml;
                let msg = tools::fixture_request(header, schemas, &f, xml)?;
                let framed = framing
                    .frame(&msg)
                    .map_err(|e| BenchError::Workload(e.to_string()))?;
                let p = framing.prefix_len();
                let seq_at = if xml {
                    let needle = format!("<{}>{marker}</{}>", seq.tag, seq.tag);
                    find(&framed, needle.as_bytes())
                        .map(|i| i + seq.tag.len() + 2)
                        .ok_or_else(|| {
                            BenchError::Workload(format!(
                                "{}: no <{}> in the XML request",
                                f.path.display(),
                                seq.tag
                            ))
                        })?
                } else {
                    p + seq.offset
                };
                if templates.len() >= usize::from(u16::MAX) {
                    return Err(BenchError::Workload("too many fixtures".into()));
                }
                idx.push(templates.len() as u16);
                templates.push(Template {
                    code: f.code.clone(),
                    fixture: f.path.display().to_string(),
                    framed,
                    seq_at,
                    seq_len: seq.width,
                });
            }
            items.push(WorkItem {
                code: fixtures[0].code.clone(),
                weight: *weight,
                fixtures: fixtures
                    .iter()
                    .map(|f| f.path.display().to_string())
                    .collect(),
            });
            per_group.push(idx);
        }
        // Rounds enough for every group to come back to its first fixture.
        let rounds = per_group
            .iter()
            .fold(1usize, |acc, g| lcm(acc, g.len()).min(240));
        let mut cursors = vec![0usize; per_group.len()];
        let mut deck = Vec::new();
        for _ in 0..rounds {
            for (g, (weight, _)) in groups.iter().enumerate() {
                for _ in 0..*weight {
                    deck.push(per_group[g][cursors[g] % per_group[g].len()]);
                    cursors[g] += 1;
                }
            }
        }
        if deck.is_empty() {
            return Err(BenchError::Workload("every weight is zero".into()));
        }
        Ok(Workload {
            templates,
            deck,
            items,
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    if a == 0 || b == 0 {
        a.max(b)
    } else {
        a / gcd(a, b) * b
    }
}

/// Parses `2969=8,2979=2` (a bare code has weight 1).
pub fn parse_mix(s: &str) -> Result<Vec<(String, u32)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (code, w) = match part.split_once('=') {
            Some((c, w)) => (
                c.trim(),
                w.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("mix {part:?}: weight is not a number"))?,
            ),
            None => (part, 1),
        };
        if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("mix {part:?}: code is not digits"));
        }
        if w > 1000 {
            return Err(format!("mix {part:?}: weight over 1000"));
        }
        out.push((code.to_string(), w));
    }
    if out.is_empty() {
        return Err(format!("mix {s:?} names no code"));
    }
    Ok(out)
}

// ---------------------------------------------------------------- settings and results

/// Everything one load run needs, already loaded: the library entry for
/// scripts and tests.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub to: SocketAddr,
    pub framing: Framing,
    pub header: HeaderSpec,
    pub workload: Workload,
    pub connections: usize,
    pub rate: Option<f64>,
    pub long: bool,
    /// Short connections end with a reset, not FIN (no TIME_WAIT here).
    pub rst_close: bool,
    pub duration: Duration,
    pub warmup: Duration,
    pub max_requests: u64,
    pub timeout: Duration,
    pub label: String,
    /// Processes whose CPU time is measured over the measured window.
    pub watch: Vec<(String, u32)>,
    pub progress: bool,
}

impl LoadConfig {
    /// The command line's defaults for a workload and a target.
    pub fn new(to: SocketAddr, header: HeaderSpec, workload: Workload) -> LoadConfig {
        LoadConfig {
            to,
            framing: Framing::default(),
            header,
            workload,
            connections: 64,
            rate: None,
            long: false,
            rst_close: false,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            max_requests: 10_000_000,
            timeout: Duration::from_secs(5),
            label: String::new(),
            watch: Vec::new(),
            progress: false,
        }
    }
}

/// The settings a result was measured with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    pub target: String,
    /// `closed` or `open`.
    pub mode: String,
    pub connections: usize,
    pub rate: Option<f64>,
    pub long: bool,
    /// Short connections closed with a reset (no TIME_WAIT at the generator).
    #[serde(default)]
    pub rst_close: bool,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub max_requests: u64,
    pub timeout_ms: u64,
    pub framing: String,
    pub workload: Vec<WorkItem>,
}

/// Totals over the measured window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    /// Requests started in the measured window (answered plus errors).
    pub requests: u64,
    /// Answers that passed the checks, whatever their response code.
    pub answered: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    /// Answered requests per second.
    pub tps: f64,
    /// Requests sent in the warm-up (not in any other figure).
    pub warmup_requests: u64,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Percentiles {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// One point of the latency distribution.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quantile {
    pub percentile: f64,
    pub latency_us: u64,
}

/// One second of the measured window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Second {
    /// Seconds since the measured window began, at the end of this interval.
    pub t: f64,
    pub tps: f64,
    pub errors: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// CPU time a process used over the measured window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CpuUse {
    pub name: String,
    pub pid: u32,
    pub cpu_us: u64,
    /// `cpu_us` divided by the answered requests.
    pub us_per_msg: f64,
    /// `cpu_us` over the window: 1.0 is one core busy all the time.
    pub cores: f64,
}

/// The machine a result was measured on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_mib: u64,
}

impl Machine {
    /// Reads the machine from /proc (blank where it cannot).
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let memory_mib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            memory_mib,
        }
    }
}

/// The full result of one run (what `--json` writes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchResult {
    pub label: String,
    /// Unix time the run started, in seconds.
    pub started_unix: u64,
    pub settings: Settings,
    pub totals: Totals,
    pub latency_us: Percentiles,
    pub distribution: Vec<Quantile>,
    pub series: Vec<Second>,
    /// Answers by response code.
    pub codes: BTreeMap<String, u64>,
    /// Errors by kind (connect, timeout, closed, frame, header, seq, io).
    pub errors: BTreeMap<String, u64>,
    pub cpu: Vec<CpuUse>,
    pub machine: Machine,
}

/// The percentiles of the distribution chart and table.
pub const DISTRIBUTION: [f64; 17] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999,
    99.9999, 100.0,
];

// ---------------------------------------------------------------- the run

/// What can go wrong with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrKind {
    Connect,
    Timeout,
    Closed,
    Io,
    Frame,
    Header,
    Seq,
}

impl ErrKind {
    const ALL: [ErrKind; 7] = [
        ErrKind::Connect,
        ErrKind::Timeout,
        ErrKind::Closed,
        ErrKind::Io,
        ErrKind::Frame,
        ErrKind::Header,
        ErrKind::Seq,
    ];
    fn name(self) -> &'static str {
        match self {
            ErrKind::Connect => "connect",
            ErrKind::Timeout => "timeout",
            ErrKind::Closed => "closed",
            ErrKind::Io => "io",
            ErrKind::Frame => "frame",
            ErrKind::Header => "header",
            ErrKind::Seq => "seq",
        }
    }
}

/// Latencies above this (µs) are recorded as this.
const HIST_MAX_US: u64 = 120_000_000;

fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).map_err(|e| BenchError::Settings(e.to_string()))
}

/// The reporter's view of one connection: the current second.
struct Live {
    hist: Histogram<u64>,
    answered: u64,
    errors: u64,
}

/// What a connection task measured over the measured window.
struct Final {
    hist: Histogram<u64>,
    answered: u64,
    errors: [u64; 7],
    warmup: u64,
    codes: Vec<(Vec<u8>, u64)>,
    last_done: Option<Instant>,
}

/// What every connection task shares (read-only but the ticket counter).
struct Shared {
    to: SocketAddr,
    codec: FrameCodec,
    header: HeaderSpec,
    deck: Vec<u16>,
    tickets: AtomicU64,
    max_requests: u64,
    start: Instant,
    warmup_end: Instant,
    deadline: Instant,
    period: Option<Duration>,
    long: bool,
    rst_close: bool,
    timeout: Duration,
    run_tag: u32,
}

/// Runs a load as `cfg` says and returns the measured result.
pub async fn run_load(cfg: &LoadConfig) -> Result<BenchResult, BenchError> {
    if cfg.connections == 0 || cfg.connections > 9999 {
        return Err(BenchError::Settings("connections must be 1..=9999".into()));
    }
    if let Some(r) = cfg.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(BenchError::Settings(
                "rate must be a positive number".into(),
            ));
        }
    }
    if cfg.workload.templates.is_empty() || cfg.workload.deck.is_empty() {
        return Err(BenchError::Workload("nothing to send".into()));
    }
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let start = Instant::now();
    let warmup_end = start + cfg.warmup;
    let shared = Arc::new(Shared {
        to: cfg.to,
        codec: FrameCodec::new(cfg.framing, 64 << 20),
        header: cfg.header.clone(),
        deck: cfg.workload.deck.clone(),
        tickets: AtomicU64::new(0),
        max_requests: cfg.max_requests,
        start,
        warmup_end,
        deadline: warmup_end + cfg.duration,
        period: cfg.rate.map(|r| Duration::from_secs_f64(1.0 / r)),
        long: cfg.long,
        rst_close: cfg.rst_close,
        timeout: cfg.timeout,
        run_tag: (started_unix.as_millis() % 100_000) as u32,
    });
    let mut lives = Vec::with_capacity(cfg.connections);
    let mut tasks = Vec::with_capacity(cfg.connections);
    for id in 0..cfg.connections {
        let live = Arc::new(Mutex::new(Live {
            hist: histogram()?,
            answered: 0,
            errors: 0,
        }));
        lives.push(live.clone());
        let fin = Final {
            hist: histogram()?,
            answered: 0,
            errors: [0; 7],
            warmup: 0,
            codes: Vec::new(),
            last_done: None,
        };
        let templates = cfg.workload.templates.clone();
        tasks.push(tokio::spawn(connection(
            id,
            shared.clone(),
            templates,
            live,
            fin,
        )));
    }

    // The reporter: ticks on whole seconds from the end of the warm-up.
    let mut tick_hist = histogram()?;
    let mut series = Vec::new();
    let mut cpu_before: Vec<Option<u64>> = Vec::new();
    let mut self_before = None;
    let mut measuring = cfg.warmup.is_zero();
    if measuring {
        cpu_before = cfg.watch.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
        self_before = cpu_ticks(std::process::id());
    }
    let mut next_tick = {
        let mut t = warmup_end;
        while t > start + Duration::from_secs(1) {
            t -= Duration::from_secs(1);
        }
        if t <= start {
            t += Duration::from_secs(1);
        }
        t
    };
    let mut last_tick = start;
    let all_done = futures::future::join_all(tasks);
    tokio::pin!(all_done);
    let finals = loop {
        tokio::select! {
            done = &mut all_done => break done,
            _ = tokio::time::sleep_until(next_tick) => {
                let now = Instant::now();
                let (answered, errors) = take_interval(&lives, &mut tick_hist);
                let secs = now.duration_since(last_tick).as_secs_f64().max(1e-6);
                let in_warmup = next_tick <= warmup_end && !cfg.warmup.is_zero() && !measuring;
                if cfg.progress {
                    eprintln!(
                        "[{:>5.1}s] {}tps {:>9.1}  errors {:>6}  p99 {:>9.3} ms",
                        now.duration_since(start).as_secs_f64(),
                        if in_warmup { "warmup " } else { "" },
                        answered as f64 / secs,
                        errors,
                        tick_hist.value_at_quantile(0.99) as f64 / 1000.0
                    );
                }
                if !in_warmup {
                    series.push(second(&tick_hist, next_tick.duration_since(warmup_end).as_secs_f64(), answered, errors, secs));
                }
                tick_hist.reset();
                if !measuring && next_tick >= warmup_end {
                    measuring = true;
                    cpu_before = cfg.watch.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
                    self_before = cpu_ticks(std::process::id());
                }
                last_tick = now;
                next_tick += Duration::from_secs(1);
            }
        }
    };
    if !measuring {
        // Ended within the warm-up (count bound): measure nothing.
        cpu_before = cfg.watch.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
        self_before = cpu_ticks(std::process::id());
    }
    let finished = Instant::now();
    // The last partial second.
    let (answered, errors) = take_interval(&lives, &mut tick_hist);
    let secs = finished.duration_since(last_tick).as_secs_f64();
    if measuring && answered + errors > 0 && secs > 0.05 {
        series.push(second(
            &tick_hist,
            finished.duration_since(warmup_end).as_secs_f64(),
            answered,
            errors,
            secs,
        ));
    }

    let mut total = histogram()?;
    let mut answered = 0;
    let mut warmup_requests = 0;
    let mut error_counts = [0u64; 7];
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_done: Option<Instant> = None;
    for f in finals {
        let f = f.map_err(|e| BenchError::Settings(format!("a connection task failed: {e}")))?;
        total
            .add(&f.hist)
            .map_err(|e| BenchError::Settings(e.to_string()))?;
        answered += f.answered;
        warmup_requests += f.warmup;
        for (i, n) in f.errors.iter().enumerate() {
            error_counts[i] += n;
        }
        for (code, n) in f.codes {
            *codes
                .entry(String::from_utf8_lossy(&code).into_owned())
                .or_default() += n;
        }
        last_done = last_done.max(f.last_done);
    }
    let errors_total: u64 = error_counts.iter().sum();
    let end = last_done.unwrap_or(finished).max(warmup_end);
    let elapsed = end.duration_since(warmup_end).as_secs_f64();
    let window = finished.duration_since(warmup_end).as_secs_f64().max(1e-6);
    let cpu_end: Vec<Option<u64>> = cfg.watch.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
    let mut cpu = Vec::new();
    let mut cpu_of = |name: &str, pid: u32, before: Option<u64>, after: Option<u64>| {
        if let (Some(b), Some(a)) = (before, after) {
            let cpu_us = a.saturating_sub(b) * (1_000_000 / USER_HZ);
            cpu.push(CpuUse {
                name: name.to_string(),
                pid,
                cpu_us,
                us_per_msg: if answered > 0 {
                    cpu_us as f64 / answered as f64
                } else {
                    0.0
                },
                cores: cpu_us as f64 / 1e6 / window,
            });
        }
    };
    for (i, (name, pid)) in cfg.watch.iter().enumerate() {
        cpu_of(
            name,
            *pid,
            cpu_before.get(i).copied().flatten(),
            cpu_end.get(i).copied().flatten(),
        );
    }
    cpu_of(
        "bench",
        std::process::id(),
        self_before,
        cpu_ticks(std::process::id()),
    );
    let pct = |q: f64| total.value_at_quantile(q / 100.0);
    let latency_us = if total.is_empty() {
        Percentiles::default()
    } else {
        Percentiles {
            min: total.min(),
            mean: total.mean(),
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            p999: pct(99.9),
            max: total.max(),
        }
    };
    let distribution = if total.is_empty() {
        Vec::new()
    } else {
        DISTRIBUTION
            .iter()
            .map(|&p| Quantile {
                percentile: p,
                latency_us: pct(p),
            })
            .collect()
    };
    Ok(BenchResult {
        label: cfg.label.clone(),
        started_unix: started_unix.as_secs(),
        settings: Settings {
            target: cfg.to.to_string(),
            mode: if cfg.rate.is_some() { "open" } else { "closed" }.into(),
            connections: cfg.connections,
            rate: cfg.rate,
            long: cfg.long,
            rst_close: cfg.rst_close && !cfg.long,
            duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            max_requests: cfg.max_requests,
            timeout_ms: cfg.timeout.as_millis() as u64,
            framing: cfg.framing.to_string(),
            workload: cfg.workload.items.clone(),
        },
        totals: Totals {
            requests: answered + errors_total,
            answered,
            errors: errors_total,
            elapsed_s: elapsed,
            tps: if elapsed > 0.0 {
                answered as f64 / elapsed
            } else {
                0.0
            },
            warmup_requests,
        },
        latency_us,
        distribution,
        series,
        codes,
        errors: ErrKind::ALL
            .iter()
            .zip(error_counts)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.name().to_string(), n))
            .collect(),
        cpu,
        machine: Machine::detect(),
    })
}

/// Clock ticks per second of /proc/PID/stat times (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11, 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn take_interval(lives: &[Arc<Mutex<Live>>], into: &mut Histogram<u64>) -> (u64, u64) {
    let (mut answered, mut errors) = (0, 0);
    for l in lives {
        if let Ok(mut l) = l.lock() {
            let _ = into.add(&l.hist);
            l.hist.reset();
            answered += std::mem::take(&mut l.answered);
            errors += std::mem::take(&mut l.errors);
        }
    }
    (answered, errors)
}

fn second(h: &Histogram<u64>, t: f64, answered: u64, errors: u64, secs: f64) -> Second {
    let q = |p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    Second {
        t: (t * 1000.0).round() / 1000.0,
        tps: answered as f64 / secs,
        errors,
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: if h.is_empty() { 0 } else { h.max() },
    }
}

/// Writes the SeqNo of request `n` of connection `id`: `B`, a run tag, the
/// connection, the request number, all digits, exactly `out.len()` bytes.
fn write_seq(out: &mut [u8], run_tag: u32, id: usize, n: u64) {
    let len = out.len();
    if len == 0 {
        return;
    }
    out[0] = b'B';
    let mut put = |from: usize, width: usize, mut v: u64| {
        for i in (from..from + width).rev() {
            if let Some(b) = out.get_mut(i) {
                *b = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(1, 5, u64::from(run_tag));
    put(6, 4, id as u64);
    put(10, len.saturating_sub(10), n);
}

/// One connection's loop: take a ticket, wait for its planned time (open
/// loop), send, read and check the answer, record.
async fn connection(
    id: usize,
    s: Arc<Shared>,
    mut templates: Vec<Template>,
    live: Arc<Mutex<Live>>,
    mut fin: Final,
) -> Final {
    let mut stream: Option<TcpStream> = None;
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut pos = (id * 7) % s.deck.len();
    let mut n: u64 = 0;
    let seq_range = s.header.range(Role::Seq);
    let rsp_range = s.header.range(Role::RspCode);
    loop {
        let ticket = s.tickets.fetch_add(1, Ordering::Relaxed);
        if ticket >= s.max_requests {
            break;
        }
        let planned = match s.period {
            Some(p) => {
                let at = s.start + p.mul_f64(ticket as f64);
                if at >= s.deadline {
                    break;
                }
                tokio::time::sleep_until(at).await;
                at
            }
            None => {
                let now = Instant::now();
                if now >= s.deadline {
                    break;
                }
                now
            }
        };
        let measured = planned >= s.warmup_end;
        let t = &mut templates[usize::from(s.deck[pos])];
        pos = (pos + 1) % s.deck.len();
        n += 1;
        let seq_end = t.seq_at + t.seq_len;
        write_seq(&mut t.framed[t.seq_at..seq_end], s.run_tag, id, n);
        let sent_seq = &t.framed[t.seq_at..seq_end];

        let work = exchange(&s, &mut stream, &mut rbuf, &t.framed);
        let outcome = match tokio::time::timeout(s.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ErrKind::Timeout),
        };
        let result = outcome.and_then(|body_len| {
            let p = s.codec.framing.prefix_len();
            let answer = &rbuf[p..p + body_len];
            let r = check_answer(&s.header, answer, sent_seq, &seq_range, &rsp_range);
            rbuf.advance(p + body_len);
            r
        });
        let done = Instant::now();
        let latency = done.saturating_duration_since(planned).as_micros() as u64;
        if result.is_err() || !s.long {
            stream = None;
            rbuf.clear();
        }
        if let Ok(mut l) = live.lock() {
            match result {
                Ok(_) => {
                    l.answered += 1;
                    l.hist.saturating_record(latency.max(1));
                }
                Err(_) => l.errors += 1,
            }
        }
        if !measured {
            fin.warmup += 1;
            if let Err(ErrKind::Connect) = result {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            continue;
        }
        fin.last_done = Some(done);
        match result {
            Ok(code) => {
                fin.answered += 1;
                fin.hist.saturating_record(latency.max(1));
                match fin
                    .codes
                    .iter_mut()
                    .find(|(c, _)| c[..] == code[..code_len(&code)])
                {
                    Some((_, k)) => *k += 1,
                    None => fin.codes.push((code[..code_len(&code)].to_vec(), 1)),
                }
            }
            Err(k) => {
                if let Some(i) = ErrKind::ALL.iter().position(|x| *x == k) {
                    fin.errors[i] += 1;
                }
                if k == ErrKind::Connect {
                    // A target that refuses connections: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    fin
}

fn code_len(code: &[u8; 16]) -> usize {
    usize::from(code[15]).min(15)
}

/// Sends one framed request (connecting first when needed) and reads until
/// one whole answer frame is buffered; returns the answer's body length.
async fn exchange(
    s: &Shared,
    stream: &mut Option<TcpStream>,
    rbuf: &mut BytesMut,
    framed: &[u8],
) -> Result<usize, ErrKind> {
    let conn = match stream {
        Some(c) => c,
        None => {
            let c = TcpStream::connect(s.to)
                .await
                .map_err(|_| ErrKind::Connect)?;
            if s.long {
                let _ = c.set_nodelay(true);
            } else if s.rst_close {
                // A short connection writes once, with nothing unacknowledged
                // before it, so Nagle never holds it back: no TCP_NODELAY.
                let _ = c.set_zero_linger();
            }
            stream.insert(c)
        }
    };
    conn.write_all(framed).await.map_err(|_| ErrKind::Io)?;
    let p = s.codec.framing.prefix_len();
    loop {
        if rbuf.len() >= p {
            let body = s
                .codec
                .declared_len(&rbuf[..p])
                .map_err(|_| ErrKind::Frame)?;
            if body == 0 {
                // A heartbeat: not an answer.
                rbuf.advance(p);
                continue;
            }
            if rbuf.len() >= p + body {
                return Ok(body);
            }
            rbuf.reserve(p + body - rbuf.len());
        }
        let got = conn.read_buf(rbuf).await.map_err(|_| ErrKind::Io)?;
        if got == 0 {
            return Err(ErrKind::Closed);
        }
    }
}

/// Checks an answer: the header parses and the SeqNo is the one sent.
/// Returns the response code (up to 15 bytes, its length in the last byte).
fn check_answer(
    h: &HeaderSpec,
    answer: &[u8],
    sent_seq: &[u8],
    seq: &std::ops::Range<usize>,
    rsp: &std::ops::Range<usize>,
) -> Result<[u8; 16], ErrKind> {
    let mut code = [0u8; 16];
    let mut put = |c: &[u8]| {
        let n = c.len().min(15);
        code[..n].copy_from_slice(&c[..n]);
        code[15] = n as u8;
    };
    if crate::body::xml::is_xml(answer) {
        let doc = crate::body::xml::XmlDoc::parse(answer).map_err(|_| ErrKind::Header)?;
        let tag = |r: Role| h.field(r).map_or("", |f| f.tag.as_str());
        let got = doc.head(tag(Role::Seq)).unwrap_or("");
        if got.as_bytes() != sent_seq {
            return Err(ErrKind::Seq);
        }
        put(doc.head(tag(Role::RspCode)).unwrap_or("").as_bytes());
        return Ok(code);
    }
    h.check(answer).map_err(|_| ErrKind::Header)?;
    if trim(&answer[seq.clone()]) != sent_seq {
        return Err(ErrKind::Seq);
    }
    put(trim(&answer[rsp.clone()]));
    Ok(code)
}

// ---------------------------------------------------------------- the command

/// Runs `txgate bench`: a load run, or with `--summarize` a summary of
/// earlier results. `Ok(true)` when no request failed.
pub async fn run(args: BenchArgs) -> Result<bool, BenchError> {
    if !args.summarize.is_empty() {
        return summarize_command(&args);
    }
    let Some(to) = args.to else {
        return Err(BenchError::Settings("--to is required".into()));
    };
    let tools::ToolContext {
        header,
        schemas,
        fixtures: fixtures_dir,
        ..
    } = tools::context(&args.config);
    let mut groups: Vec<(u32, Vec<Fixture>)> = Vec::new();
    for p in &args.fixture {
        groups.push((1, vec![Fixture::load(p)?]));
    }
    let mut codes: Vec<(String, u32)> = args.code.iter().map(|c| (c.clone(), 1)).collect();
    if let Some(m) = &args.mix {
        codes.extend(parse_mix(m).map_err(BenchError::Settings)?);
    }
    if groups.is_empty() && codes.is_empty() {
        codes.push(("2969".into(), 1));
    }
    if !codes.is_empty() {
        let all = crate::fixture::load_dir(&fixtures_dir)?;
        for (code, w) in codes {
            let of: Vec<Fixture> = all.iter().filter(|f| f.code == code).cloned().collect();
            if of.is_empty() {
                return Err(BenchError::Workload(format!(
                    "no fixtures of code {code} in {}",
                    fixtures_dir.display()
                )));
            }
            groups.push((w, of));
        }
    }
    let workload = Workload::build(&header, &schemas, args.framing, &groups)?;
    let mut watch = Vec::new();
    for w in &args.watch_pid {
        let (name, pid) = w.split_once('=').unwrap_or(("process", w.as_str()));
        let pid: u32 = pid
            .trim()
            .parse()
            .map_err(|_| BenchError::Settings(format!("--watch-pid {w:?}: expected NAME=PID")))?;
        watch.push((name.trim().to_string(), pid));
    }
    let mut cfg = LoadConfig::new(to, header, workload);
    cfg.framing = args.framing;
    cfg.connections = args.connections;
    cfg.rate = args.rate;
    cfg.long = args.long;
    cfg.rst_close = args.rst_close;
    cfg.duration = args.duration;
    cfg.warmup = args.warmup;
    cfg.max_requests = args.max_requests;
    cfg.timeout = Duration::from_millis(args.timeout_ms.max(1));
    cfg.label = args.label.clone().unwrap_or_else(|| to.to_string());
    cfg.watch = watch;
    cfg.progress = !args.quiet;
    let result = run_load(&cfg).await?;
    print!("{}", render_result(&result));
    if let Some(p) = &args.json {
        write_json(p, &result)?;
    }
    if let Some(p) = &args.report {
        write_file(p, report::single(&result).as_bytes())?;
    }
    Ok(result.totals.errors == 0)
}

fn write_file(p: &Path, bytes: &[u8]) -> Result<(), BenchError> {
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BenchError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    std::fs::write(p, bytes).map_err(|source| BenchError::Io {
        path: p.display().to_string(),
        source,
    })
}

fn write_json<T: Serialize>(p: &Path, v: &T) -> Result<(), BenchError> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(|source| BenchError::Json {
        path: p.display().to_string(),
        source,
    })?;
    bytes.push(b'\n');
    write_file(p, &bytes)
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// The end-of-run text: totals, percentiles, codes, errors, CPU.
pub fn render_result(r: &BenchResult) -> String {
    let s = &r.settings;
    let mut out = String::new();
    let mix: Vec<String> = s
        .workload
        .iter()
        .map(|w| format!("{}×{} ({} fixtures)", w.code, w.weight, w.fixtures.len()))
        .collect();
    let _ = writeln!(
        out,
        "{} → {}: {} loop{}, {} {} connections, {}",
        if r.label.is_empty() {
            "bench"
        } else {
            &r.label
        },
        s.target,
        s.mode,
        s.rate.map(|r| format!(" at {r} req/s")).unwrap_or_default(),
        s.connections,
        if s.long {
            "long (persistent)"
        } else if s.rst_close {
            "short (one per request, reset on close)"
        } else {
            "short (one per request)"
        },
        mix.join(", ")
    );
    let t = &r.totals;
    let _ = writeln!(
        out,
        "requests {}  answered {}  errors {}  in {:.2} s  TPS {:.1}  (warm-up {} requests)",
        t.requests, t.answered, t.errors, t.elapsed_s, t.tps, t.warmup_requests
    );
    let l = &r.latency_us;
    let _ = writeln!(
        out,
        "latency ms: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {:.3})",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max),
        l.mean / 1000.0
    );
    let codes: Vec<String> = r.codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let _ = writeln!(out, "codes: {}", codes.join(", "));
    if !r.errors.is_empty() {
        let e: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(out, "errors: {}", e.join(", "));
    }
    for c in &r.cpu {
        let _ = writeln!(
            out,
            "cpu {} (pid {}): {:.1} µs/msg, {:.2} cores",
            c.name, c.pid, c.us_per_msg, c.cores
        );
    }
    out
}

// ---------------------------------------------------------------- summaries

/// One setup (label and connection mode) over its runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SetupSummary {
    pub label: String,
    pub long: bool,
    pub connections: usize,
    pub runs: usize,
    pub tps_min: f64,
    pub tps_median: f64,
    pub tps_max: f64,
    pub p50_ms_median: f64,
    pub p99_ms_median: f64,
    pub errors: u64,
    /// Median CPU µs per message, by watched process name.
    pub cpu_us_per_msg: BTreeMap<String, f64>,
    /// This setup's median TPS over the baseline's, same connection mode.
    pub ratio_to_baseline: Option<f64>,
}

/// A comparison of setups: what `--summarize` writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub baseline: Option<String>,
    pub setups: Vec<SetupSummary>,
    pub machine: Machine,
    pub runs: Vec<BenchResult>,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Groups results by label and connection mode (long first, labels in
/// first-seen order) and
/// computes min/median/max TPS, median percentiles and CPU, and the ratio
/// to `baseline`.
pub fn summarize(runs: Vec<BenchResult>, baseline: Option<&str>) -> Summary {
    let mut keys: Vec<(String, bool)> = Vec::new();
    for r in &runs {
        let k = (r.label.clone(), r.settings.long);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut setups: Vec<SetupSummary> = keys
        .iter()
        .map(|(label, long)| {
            let of: Vec<&BenchResult> = runs
                .iter()
                .filter(|r| &r.label == label && r.settings.long == *long)
                .collect();
            let mut tps: Vec<f64> = of.iter().map(|r| r.totals.tps).collect();
            let mut p50: Vec<f64> = of
                .iter()
                .map(|r| r.latency_us.p50 as f64 / 1000.0)
                .collect();
            let mut p99: Vec<f64> = of
                .iter()
                .map(|r| r.latency_us.p99 as f64 / 1000.0)
                .collect();
            let mut cpu: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for r in &of {
                for c in &r.cpu {
                    cpu.entry(c.name.clone()).or_default().push(c.us_per_msg);
                }
            }
            SetupSummary {
                label: label.clone(),
                long: *long,
                connections: of.first().map_or(0, |r| r.settings.connections),
                runs: of.len(),
                tps_min: tps.iter().copied().fold(f64::INFINITY, f64::min),
                tps_max: tps.iter().copied().fold(0.0, f64::max),
                tps_median: median(&mut tps),
                p50_ms_median: median(&mut p50),
                p99_ms_median: median(&mut p99),
                errors: of.iter().map(|r| r.totals.errors).sum(),
                cpu_us_per_msg: cpu
                    .into_iter()
                    .map(|(k, mut v)| (k, median(&mut v)))
                    .collect(),
                ratio_to_baseline: None,
            }
        })
        .collect();
    // Long connections first; within a mode, labels in first-seen order.
    setups.sort_by_key(|s| !s.long);
    if let Some(b) = baseline {
        let base: Vec<(bool, f64)> = setups
            .iter()
            .filter(|s| s.label == b)
            .map(|s| (s.long, s.tps_median))
            .collect();
        for s in &mut setups {
            if let Some((_, t)) = base.iter().find(|(l, _)| *l == s.long) {
                if *t > 0.0 {
                    s.ratio_to_baseline = Some(s.tps_median / t);
                }
            }
        }
    }
    Summary {
        baseline: baseline.map(str::to_string),
        machine: runs.first().map(|r| r.machine.clone()).unwrap_or_default(),
        setups,
        runs,
    }
}

/// The watched process names of a summary: proxy, sim, others, bench.
pub fn cpu_names(s: &Summary) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for st in &s.setups {
        for k in st.cpu_us_per_msg.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let rank = |n: &str| match n {
        "proxy" | "gateway" => 0,
        "sim" => 1,
        "bench" => 3,
        _ => 2,
    };
    names.sort_by_key(|n| (rank(n), n.clone()));
    names
}

/// The summary as a Markdown table, with the machine below it.
pub fn summary_markdown(s: &Summary) -> String {
    let names = cpu_names(s);
    let mut out = String::new();
    let base = s.baseline.as_deref().unwrap_or("baseline");
    let _ = write!(
        out,
        "| setup | connections | runs | TPS min | TPS median | TPS max | p50 ms | p99 ms |"
    );
    for n in &names {
        let _ = write!(out, " {n} CPU µs/msg |");
    }
    let _ = writeln!(out, " TPS / {base} |");
    let _ = write!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for _ in &names {
        out.push_str("---:|");
    }
    out.push_str("---:|\n");
    for st in &s.setups {
        let _ = write!(
            out,
            "| {} | {} × {} | {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} |",
            st.label,
            st.connections,
            if st.long { "long" } else { "short" },
            st.runs,
            st.tps_min,
            st.tps_median,
            st.tps_max,
            st.p50_ms_median,
            st.p99_ms_median
        );
        for n in &names {
            match st.cpu_us_per_msg.get(n) {
                Some(v) => {
                    let _ = write!(out, " {v:.1} |");
                }
                None => out.push_str(" – |"),
            }
        }
        match st.ratio_to_baseline {
            Some(r) => {
                let _ = writeln!(out, " {r:.2} |");
            }
            None => out.push_str(" – |\n"),
        }
    }
    let m = &s.machine;
    let _ = writeln!(
        out,
        "\nMachine: {} × {}, Linux {}, {} MiB.",
        m.nproc, m.cpu_model, m.kernel, m.memory_mib
    );
    out
}

fn summarize_command(args: &BenchArgs) -> Result<bool, BenchError> {
    let mut runs = Vec::new();
    for p in &args.summarize {
        let bytes = std::fs::read(p).map_err(|source| BenchError::Io {
            path: p.display().to_string(),
            source,
        })?;
        let r: BenchResult = serde_json::from_slice(&bytes).map_err(|source| BenchError::Json {
            path: p.display().to_string(),
            source,
        })?;
        runs.push(r);
    }
    let summary = summarize(runs, args.baseline.as_deref());
    let md = summary_markdown(&summary);
    print!("{md}");
    if let Some(p) = &args.markdown {
        write_file(p, md.as_bytes())?;
    }
    if let Some(p) = &args.json {
        write_json(p, &summary)?;
    }
    if let Some(p) = &args.report {
        write_file(p, report::comparison(&summary).as_bytes())?;
    }
    Ok(summary.setups.iter().all(|s| s.errors == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn mixes() {
        assert_eq!(
            parse_mix("2969=8, 2979=2").unwrap(),
            vec![("2969".into(), 8), ("2979".into(), 2)]
        );
        assert_eq!(parse_mix("2969").unwrap(), vec![("2969".into(), 1)]);
        assert!(parse_mix("29x9=1").is_err());
        assert!(parse_mix("").is_err());
    }

    #[test]
    fn seq_numbers_are_digits_and_distinct() {
        let mut a = [0u8; 20];
        let mut b = [0u8; 20];
        write_seq(&mut a, 12345, 7, 1);
        write_seq(&mut b, 12345, 7, 2);
        assert_eq!(&a, b"B1234500070000000001");
        assert_ne!(a, b);
        let mut c = [0u8; 20];
        write_seq(&mut c, 12345, 8, 1);
        assert_ne!(a, c);
    }

    #[test]
    fn cpu_of_self_is_readable() {
        assert!(cpu_ticks(std::process::id()).is_some());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn deck_follows_weights() {
        let h = HeaderSpec::builtin();
        let schemas = tools::load_schemas(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas"));
        let all = crate::fixture::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"))
            .unwrap();
        let of = |c: &str| {
            all.iter()
                .filter(|f| f.code == c)
                .cloned()
                .collect::<Vec<_>>()
        };
        let w = Workload::build(
            &h,
            &schemas,
            Framing::default(),
            &[(8, of("2969")), (2, of("2979"))],
        )
        .unwrap();
        let n2969 = w
            .deck
            .iter()
            .filter(|&&i| w.templates[usize::from(i)].code == "2969")
            .count();
        assert_eq!(n2969 * 10, w.deck.len() * 8);
        for t in &w.templates {
            let seq = &t.framed[t.seq_at..t.seq_at + t.seq_len];
            assert!(seq.iter().all(|&b| b == b'~'), "{}", t.fixture);
        }
    }
}
