//! The transaction journal (交易流水): one JSON line per transaction.
//!
//! Operations and audit look a transaction up by its SeqNo long after it
//! happened, so every request the gateway answers leaves one record: when,
//! from where, which channel, code, SeqNo and DestSys, which backend, how
//! long, which response code, how many bytes, and the gateway's own error
//! text. Header and body fields are added only as configured, and always
//! through `crate::mask`: a field marked sensitive never reaches the file
//! in clear.
//!
//! The message path only copies what a record needs and hands it to a
//! bounded channel; a dedicated thread masks, serialises and writes, so no
//! file write ever happens on a tokio worker. When the queue is full the
//! transaction waits at most `max_wait_ms` (back-pressure); a record that
//! still cannot be queued, or that the file refuses, is counted and written
//! to the error log in full instead. A record is never dropped silently.

use crate::body::{fixed, xml::XmlDoc, Body, Record as BodyRecord};
use crate::config::RawConfig;
use crate::header::{trim, HeaderSpec};
use crate::mask::{self, Redacted};
use crate::observe::{Observer, TxnEvent};
use crate::reload::Reloadable;
use crate::schema::Schema;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use time::{Date, OffsetDateTime, UtcOffset};

/// `[journal]` in gateway.toml: where the journal goes and what it shows.
/// Read at start; a reload that changes it says a restart is needed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Write the journal at all.
    pub enabled: bool,
    /// The current file; relative paths are taken from the config's folder.
    pub path: PathBuf,
    /// `daily` (a new file each day, and by size), `size` (by size only), `never`.
    pub rotate: Rotate,
    /// Rotate when the file would grow past this many bytes (0: no limit).
    pub max_bytes: u64,
    /// Records queued for the writer at most (the bounded channel).
    pub queue: usize,
    /// How long a transaction may wait for room in a full queue before its
    /// record goes to the error log instead.
    pub max_wait_ms: u64,
    /// The time zone of `time` and of daily rotation, as `+HH:MM`.
    pub utc_offset: String,
    /// Header fields recorded besides the ones every record has.
    pub header_fields: Vec<String>,
    /// Header fields that are recorded masked.
    pub mask_header: Vec<String>,
    /// Request body fields recorded; sensitive ones (per schema) masked.
    pub body_fields: Vec<String>,
    /// `none`, or `masked`: the whole request body with every sensitive field masked.
    pub body: BodyMode,
    /// fsync after every batch written (slower; survives a power cut).
    pub fsync: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            enabled: true,
            path: "journal/txgate.jsonl".into(),
            rotate: Rotate::Daily,
            max_bytes: 256 * 1024 * 1024,
            queue: 65_536,
            max_wait_ms: 100,
            utc_offset: "+08:00".into(),
            header_fields: vec![
                "TranTime".into(),
                "BrchNo".into(),
                "TellerNo".into(),
                "Mac".into(),
            ],
            mask_header: vec!["TellerNo".into(), "Mac".into()],
            body_fields: Vec::new(),
            body: BodyMode::None,
            fsync: false,
        }
    }
}

impl JournalConfig {
    /// The file, resolved against the config's folder.
    pub fn resolved_path(&self, raw: &RawConfig) -> PathBuf {
        raw.resolve(&self.path)
    }
}

/// When the journal file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Rotate {
    /// At the first record of a new day, and when `max_bytes` is reached.
    #[default]
    Daily,
    /// Only when `max_bytes` is reached.
    Size,
    /// Never: the file grows until an outside tool (logrotate `copytruncate`) deals with it.
    Never,
}

/// How much of the request body a record shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BodyMode {
    /// Only the `body_fields`.
    #[default]
    None,
    /// The whole body, every sensitive field masked (`mask::Redacted`).
    Masked,
}

/// Why the journal cannot start or be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("journal: utc_offset \"{0}\" is not +HH:MM or -HH:MM")]
    Offset(String),
    #[error("journal: queue must hold at least 1 record")]
    Queue,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One line of the journal, as written and as `txgate journal` reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// When the answer was ready, RFC 3339 with milliseconds, in `utc_offset`.
    pub time: String,
    pub listener: String,
    /// The caller's address.
    pub peer: String,
    pub channel: String,
    pub code: String,
    /// SeqNo.
    pub seq: String,
    /// TranDate.
    pub date: String,
    /// DestSys.
    pub dest: String,
    pub backend: Option<String>,
    pub latency_us: u64,
    pub rsp_code: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The gateway's own error text, for its rejections.
    pub error: Option<String>,
    /// `header_fields`, masked as configured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, String>,
    /// `body_fields`, sensitive ones masked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// The whole body, masked (`body = "masked"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Counters of the journal, exposed on `/metrics`.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Records written to the file.
    pub records: AtomicU64,
    /// Records the file refused; each went to the error log.
    pub write_errors: AtomicU64,
    /// Records that could not be queued in time (or after close); each went to the error log.
    pub overflow: AtomicU64,
    /// Transactions that found the queue full and waited.
    pub waits: AtomicU64,
    pub rotations: AtomicU64,
}

/// What the writer needs to find header and body fields: the header layout
/// and each routed code's schema, swapped on reload.
#[derive(Debug)]
struct Lookup {
    header: Arc<HeaderSpec>,
    schemas: HashMap<Box<[u8]>, Arc<Schema>>,
}

impl Lookup {
    fn of(snap: &Snapshot) -> Lookup {
        Lookup {
            header: snap.header.clone(),
            schemas: snap
                .routes
                .iter()
                .map(|(code, r)| (code.clone(), r.schema.clone()))
                .collect(),
        }
    }
}

/// What the message path copies out of a `TxnEvent`: owned, so the writer
/// thread can take its time.
#[derive(Debug)]
struct Entry {
    time: SystemTime,
    listener: Small,
    peer: SocketAddr,
    channel: Small,
    code: Small,
    seq: Small,
    date: Small,
    dest: Small,
    backend: Option<Small>,
    latency_us: u64,
    rsp_code: Small,
    bytes_in: usize,
    bytes_out: usize,
    error: Option<String>,
    /// The request, or only its header when no body field is wanted.
    request: Vec<u8>,
    routed: bool,
}

/// A short byte string kept inline: header values, codes and names fit in
/// 24 bytes, so a journal record costs the hot path no allocation for them.
#[derive(Debug)]
enum Small {
    Inline([u8; 24], u8),
    Heap(Box<[u8]>),
}

impl Small {
    fn new(b: &[u8]) -> Small {
        if b.len() <= 24 {
            let mut buf = [0u8; 24];
            buf[..b.len()].copy_from_slice(b);
            Small::Inline(buf, b.len() as u8)
        } else {
            Small::Heap(b.into())
        }
    }
}

impl std::ops::Deref for Small {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Small::Inline(buf, n) => &buf[..*n as usize],
            Small::Heap(b) => b,
        }
    }
}

/// A message to the writer thread.
#[derive(Debug)]
enum Msg {
    Entry(Box<Entry>),
    Close,
}

/// Turns entries into lines: shared by the writer thread and the overflow path.
#[derive(Debug)]
struct Render {
    offset: UtcOffset,
    header_fields: Vec<String>,
    mask_header: Vec<String>,
    body_fields: Vec<String>,
    body: BodyMode,
    lookup: ArcSwap<Lookup>,
}

impl Render {
    fn wants_body(&self) -> bool {
        !self.body_fields.is_empty() || self.body == BodyMode::Masked
    }

    fn local(&self, t: SystemTime) -> OffsetDateTime {
        OffsetDateTime::from(t).to_offset(self.offset)
    }

    fn record(&self, e: &Entry) -> JournalRecord {
        let text = |b: &[u8]| show(b);
        let mut rec = JournalRecord {
            time: rfc3339_ms(self.local(e.time)),
            listener: show(&e.listener),
            peer: e.peer.to_string(),
            channel: text(&e.channel),
            code: text(&e.code),
            seq: text(&e.seq),
            date: text(&e.date),
            dest: text(&e.dest),
            backend: e.backend.as_deref().map(show),
            latency_us: e.latency_us,
            rsp_code: show(&e.rsp_code),
            bytes_in: e.bytes_in as u64,
            bytes_out: e.bytes_out as u64,
            error: e.error.clone(),
            header: BTreeMap::new(),
            fields: BTreeMap::new(),
            body: None,
        };
        let lookup = self.lookup.load();
        let h = &lookup.header;
        let xml = crate::body::xml::is_xml(&e.request);
        let doc = if xml {
            XmlDoc::parse(&e.request).ok()
        } else {
            None
        };
        for tag in &self.header_fields {
            let value = match &doc {
                Some(d) => d.head(tag).map(|v| v.trim().to_string()),
                None if xml => None,
                None => h
                    .by_tag(tag)
                    .and_then(|f| e.request.get(f.range()))
                    .map(|b| show(trim(b))),
            };
            let Some(value) = value else { continue };
            let value = if self.mask_header.iter().any(|m| m == tag) {
                mask::mask(&value)
            } else {
                value
            };
            rec.header.insert(tag.clone(), value);
        }
        if !self.wants_body() || !e.routed {
            return rec;
        }
        let Some(schema) = lookup.schemas.get(&e.code[..]) else {
            return rec;
        };
        let layout = &schema.request;
        let body: Option<Body> = match &doc {
            Some(d) => d.body(layout).ok(),
            None if xml => None,
            None => fixed::decode(layout, &e.request, h.length()).ok(),
        };
        let Some(body) = body else { return rec };
        for tag in &self.body_fields {
            let Some(v) = body.get(tag) else { continue };
            let one = BodyRecord {
                fields: vec![(tag.clone(), v.clone())],
            };
            let shown = Redacted { layout, body: &one }.to_string();
            let shown = shown
                .strip_prefix(tag.as_str())
                .and_then(|s| s.strip_prefix('='))
                .map(str::to_string)
                .unwrap_or(shown);
            rec.fields.insert(tag.clone(), shown);
        }
        if self.body == BodyMode::Masked {
            rec.body = Some(
                Redacted {
                    layout,
                    body: &body,
                }
                .to_string(),
            );
        }
        rec
    }

    fn line(&self, e: &Entry) -> String {
        let rec = self.record(e);
        let mut line = serde_json::to_string(&rec).unwrap_or_else(|err| {
            // Serialising plain strings and numbers does not fail; say so if it ever does.
            format!(
                "{{\"seq\":{:?},\"journal_error\":{:?}}}",
                rec.seq,
                err.to_string()
            )
        });
        line.push('\n');
        line
    }
}

fn show(b: &[u8]) -> String {
    crate::gbk::decode(b)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(b).into_owned())
}

fn rfc3339_ms(t: OffsetDateTime) -> String {
    let off = t.offset();
    let (sign, h, m) = {
        let secs = off.whole_seconds();
        let sign = if secs < 0 { '-' } else { '+' };
        let secs = secs.unsigned_abs();
        (sign, secs / 3600, (secs % 3600) / 60)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{sign}{h:02}:{m:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn day_stamp(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Parses `+HH:MM` / `-HH:MM` (also `Z`).
pub fn parse_offset(s: &str) -> Result<UtcOffset, JournalError> {
    let bad = || JournalError::Offset(s.to_string());
    if s == "Z" || s == "z" {
        return Ok(UtcOffset::UTC);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1i8, &s[1..]),
        Some(b'-') => (-1i8, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())
}

/// The journal: an observer that queues one record per transaction for its
/// writer thread. See the module comment.
#[derive(Debug)]
pub struct Journal {
    tx: Sender<Msg>,
    render: Arc<Render>,
    stats: Arc<JournalStats>,
    max_wait: Duration,
    path: PathBuf,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Journal {
    /// Opens (creating folders as needed) the journal `cfg` names, relative
    /// to `raw`'s folder, and starts its writer thread.
    pub fn open(
        cfg: &JournalConfig,
        raw: &RawConfig,
        snap: &Snapshot,
    ) -> Result<Journal, JournalError> {
        Self::open_at(cfg, &cfg.resolved_path(raw), snap)
    }

    /// As `open`, at an explicit path.
    pub fn open_at(
        cfg: &JournalConfig,
        path: &Path,
        snap: &Snapshot,
    ) -> Result<Journal, JournalError> {
        if cfg.queue == 0 {
            return Err(JournalError::Queue);
        }
        let offset = parse_offset(&cfg.utc_offset)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let render = Arc::new(Render {
            offset,
            header_fields: cfg.header_fields.clone(),
            mask_header: cfg.mask_header.clone(),
            body_fields: cfg.body_fields.clone(),
            body: cfg.body,
            lookup: ArcSwap::from_pointee(Lookup::of(snap)),
        });
        let stats = Arc::new(JournalStats::default());
        let mut writer = Writer {
            path: path.to_path_buf(),
            render: render.clone(),
            stats: stats.clone(),
            rotate: cfg.rotate,
            max_bytes: cfg.max_bytes,
            fsync: cfg.fsync,
            file: None,
            size: 0,
            day: None,
        };
        // Open now, so a path that cannot be written is a start-up error.
        writer.open().map_err(io_err(path))?;
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue);
        let handle = std::thread::Builder::new()
            .name("txgate-journal".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(path))?;
        Ok(Journal {
            tx,
            render,
            stats,
            max_wait: Duration::from_millis(cfg.max_wait_ms),
            path: path.to_path_buf(),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// The current journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> &JournalStats {
        &self.stats
    }

    /// Records waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.tx.len()
    }

    /// Writes out everything queued, flushes, syncs and stops the writer.
    /// Records that arrive later go to the error log (and are counted).
    pub async fn close(&self) {
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        let Some(handle) = handle else { return };
        let tx = self.tx.clone();
        let joined = tokio::task::spawn_blocking(move || {
            // The writer is draining, so a full queue frees up; the send cannot be lost.
            let _ = tx.send(Msg::Close);
            handle.join().is_ok()
        })
        .await;
        if !matches!(joined, Ok(true)) {
            tracing::error!(path = %self.path.display(), "journal writer did not stop cleanly");
        }
    }

    fn submit(&self, entry: Box<Entry>) {
        match self.tx.try_send(Msg::Entry(entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => {
                self.stats.waits.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = self.tx.send_timeout(msg, self.max_wait) {
                    self.overflow(e.into_inner(), "the journal queue stayed full");
                }
            }
            Err(TrySendError::Disconnected(msg)) => self.overflow(msg, "the journal is closed"),
        }
    }

    fn overflow(&self, msg: Msg, why: &str) {
        let Msg::Entry(entry) = msg else { return };
        self.stats.overflow.fetch_add(1, Ordering::Relaxed);
        let line = self.render.line(&entry);
        tracing::error!(
            target: "txgate::journal",
            record = %line.trim_end(),
            "journal record not written to the file: {why}; it is in this log line"
        );
    }
}

impl Observer for Journal {
    fn on_txn(&self, e: &TxnEvent<'_>) {
        let keep = if self.render.wants_body() || crate::body::xml::is_xml(e.request) {
            e.request.len()
        } else {
            self.render
                .lookup
                .load()
                .header
                .length()
                .min(e.request.len())
        };
        let entry = Box::new(Entry {
            time: e.time,
            listener: Small::new(e.listener.as_bytes()),
            peer: e.peer,
            channel: Small::new(e.channel),
            code: Small::new(e.code),
            seq: Small::new(e.seq),
            date: Small::new(e.date),
            dest: Small::new(e.dest),
            backend: e.backend.map(|b| Small::new(b.as_bytes())),
            latency_us: u64::try_from(e.latency.as_micros()).unwrap_or(u64::MAX),
            rsp_code: Small::new(e.rsp_code.as_bytes()),
            bytes_in: e.bytes_in,
            bytes_out: e.bytes_out,
            error: e.error.map(str::to_string),
            request: e.request[..keep].to_vec(),
            routed: e.schema.is_some(),
        });
        self.submit(entry);
    }
}

impl Reloadable for Journal {
    fn reloaded(&self, snap: &Snapshot) {
        self.render.lookup.store(Arc::new(Lookup::of(snap)));
    }
}

/// Lines gathered for one write, with where each ends (to report failures one by one).
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

/// The writer thread's state: the open file, its size and its day.
#[derive(Debug)]
struct Writer {
    path: PathBuf,
    render: Arc<Render>,
    stats: Arc<JournalStats>,
    rotate: Rotate,
    max_bytes: u64,
    fsync: bool,
    file: Option<File>,
    size: u64,
    day: Option<Date>,
}

/// How long the writer waits after a batch before it blocks for the next.
const BATCH_NAP: std::time::Duration = std::time::Duration::from_millis(5);

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut batch = Batch::default();
        let mut closing = false;
        while !closing {
            let Ok(first) = rx.recv() else { break };
            let mut next = Some(first);
            while let Some(msg) = next {
                match msg {
                    Msg::Entry(e) => self.add(&mut batch, &e),
                    Msg::Close => closing = true,
                }
                if batch.bytes.len() >= 1 << 20 {
                    self.write(&mut batch);
                }
                next = rx.try_recv().ok();
            }
            self.write(&mut batch);
            if !closing {
                // Let records gather before blocking again: a writer parked in
                // recv() costs every sender a wake-up (a futex call and a
                // context switch per transaction); a short nap turns that into
                // one wake-up per batch. The queue absorbs the nap.
                std::thread::sleep(BATCH_NAP);
            }
        }
        if let Some(f) = &self.file {
            if let Err(e) = f.sync_all() {
                tracing::error!(path = %self.path.display(), "journal sync on close failed: {e}");
            }
        }
    }

    fn add(&mut self, batch: &mut Batch, e: &Entry) {
        let line = self.render.line(e);
        let day = self.render.local(e.time).date();
        let pending = batch.bytes.len() as u64;
        let new_day = self.rotate == Rotate::Daily && self.day.is_some_and(|d| d != day);
        let too_big = self.rotate != Rotate::Never
            && self.max_bytes > 0
            && self.size + pending > 0
            && self.size + pending + line.len() as u64 > self.max_bytes;
        if new_day || too_big {
            self.write(batch);
            self.rotate_now();
        }
        if self.day.is_none() {
            self.day = Some(day);
        }
        batch.bytes.extend_from_slice(line.as_bytes());
        batch.ends.push(batch.bytes.len());
    }

    fn open(&mut self) -> std::io::Result<()> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let meta = f.metadata()?;
        self.size = meta.len();
        if self.size > 0 && self.day.is_none() {
            self.day = meta.modified().ok().map(|t| self.render.local(t).date());
        }
        self.file = Some(f);
        Ok(())
    }

    fn write(&mut self, batch: &mut Batch) {
        if batch.ends.is_empty() {
            return;
        }
        let result = (|| {
            if self.file.is_none() {
                self.open()?;
            }
            let f = self.file.as_mut().ok_or(std::io::ErrorKind::NotFound)?;
            f.write_all(&batch.bytes)?;
            if self.fsync {
                f.sync_data()?;
            }
            Ok::<(), std::io::Error>(())
        })();
        let n = batch.ends.len() as u64;
        match result {
            Ok(()) => {
                self.size += batch.bytes.len() as u64;
                self.stats.records.fetch_add(n, Ordering::Relaxed);
            }
            Err(err) => {
                self.stats.write_errors.fetch_add(n, Ordering::Relaxed);
                // Reopen on the next batch: the file may have been removed or the disk freed.
                self.file = None;
                let mut start = 0;
                for &end in &batch.ends {
                    let line = String::from_utf8_lossy(&batch.bytes[start..end]);
                    tracing::error!(
                        target: "txgate::journal",
                        path = %self.path.display(),
                        record = %line.trim_end(),
                        "journal write failed: {err}; the record is in this log line"
                    );
                    start = end;
                }
            }
        }
        batch.bytes.clear();
        batch.ends.clear();
    }

    fn rotate_now(&mut self) {
        self.file = None;
        let day = self
            .day
            .unwrap_or_else(|| self.render.local(SystemTime::now()).date());
        let target = (1..)
            .map(|n| rotated_name(&self.path, &day_stamp(day), n))
            .find(|p| !p.exists());
        let Some(target) = target else { return };
        match std::fs::rename(&self.path, &target) {
            Ok(()) => {
                self.stats.rotations.fetch_add(1, Ordering::Relaxed);
                self.size = 0;
                self.day = None;
                tracing::info!(from = %self.path.display(), to = %target.display(), "journal rotated");
            }
            Err(e) => {
                // Keep appending to the same file rather than lose anything.
                tracing::error!(path = %self.path.display(), "journal rotation failed: {e}; still writing to the same file");
            }
        }
    }
}

fn stem_ext(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "txgate".into());
    let ext = path
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    (stem, ext)
}

/// `dir/txgate-20261204-001.jsonl` for `dir/txgate.jsonl`: sorts by day, then number.
fn rotated_name(path: &Path, day: &str, n: u32) -> PathBuf {
    let (stem, ext) = stem_ext(path);
    let name = if ext.is_empty() {
        format!("{stem}-{day}-{n:03}")
    } else {
        format!("{stem}-{day}-{n:03}.{ext}")
    };
    path.with_file_name(name)
}

/// Every file of a journal, oldest first: the rotated ones, then the current one.
pub fn journal_files(path: &Path) -> Result<Vec<PathBuf>, JournalError> {
    let (stem, ext) = stem_ext(path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut files = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            let prefix = format!("{stem}-");
            let suffix = if ext.is_empty() {
                String::new()
            } else {
                format!(".{ext}")
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(middle) = name
                    .strip_prefix(&prefix)
                    .and_then(|n| n.strip_suffix(&suffix))
                else {
                    continue;
                };
                // YYYYMMDD-NNN
                let rotated = middle.len() >= 12
                    && middle.as_bytes()[8] == b'-'
                    && middle
                        .bytes()
                        .filter(|b| *b != b'-')
                        .all(|b| b.is_ascii_digit());
                if rotated {
                    files.push(entry.path());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&dir)(e)),
    }
    files.sort();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    Ok(files)
}

/// What `txgate journal` looks for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub seq: String,
    pub code: Option<String>,
    /// `YYYYMMDD` (or `YYYY-MM-DD`): the TranDate, or the day the record was written.
    pub date: Option<String>,
}

impl Query {
    fn matches(&self, r: &JournalRecord) -> bool {
        if r.seq != self.seq {
            return false;
        }
        if self.code.as_ref().is_some_and(|c| *c != r.code) {
            return false;
        }
        if let Some(d) = &self.date {
            let d: String = d.chars().filter(|c| *c != '-').collect();
            let written: String = r.time.chars().take(10).filter(|c| *c != '-').collect();
            if r.date != d && written != d {
                return false;
            }
        }
        true
    }
}

/// The records of a transaction, from the current and the rotated files of
/// the journal at `path`, oldest first.
pub fn find(path: &Path, q: &Query) -> Result<Vec<JournalRecord>, JournalError> {
    let mut found = Vec::new();
    for file in journal_files(path)? {
        let f = match File::open(&file) {
            Ok(f) => f,
            // Rotated away between listing and opening: it is in the list under its new name.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&file)(e)),
        };
        for line in BufReader::new(f).lines() {
            let line = line.map_err(io_err(&file))?;
            if !line.contains(q.seq.as_str()) {
                continue;
            }
            // A torn last line (a crash mid-write) is skipped, not fatal.
            if let Ok(r) = serde_json::from_str::<JournalRecord>(&line) {
                if q.matches(&r) {
                    found.push(r);
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("txgate-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("+08:00").unwrap().whole_hours(), 8);
        assert_eq!(parse_offset("-05:30").unwrap().whole_minutes(), -330);
        assert_eq!(parse_offset("Z").unwrap(), UtcOffset::UTC);
        assert!(parse_offset("08:00").is_err());
        assert!(parse_offset("+8").is_err());
    }

    #[test]
    fn time_is_rfc3339_with_milliseconds_in_the_offset() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_796_000_000_123_456_789)
            .unwrap()
            .to_offset(parse_offset("+08:00").unwrap());
        let s = rfc3339_ms(t);
        assert!(s.ends_with(".123+08:00"), "{s}");
        assert_eq!(s.len(), "2026-11-28T10:13:20.123+08:00".len());
    }

    #[test]
    fn rotated_files_are_listed_oldest_first_and_current_last() {
        let d = tmp("list");
        let p = d.join("txgate.jsonl");
        for n in [
            "txgate-20261204-002.jsonl",
            "txgate-20261203-001.jsonl",
            "txgate-20261204-001.jsonl",
            "txgate-notes.jsonl",
            "other.jsonl",
        ] {
            std::fs::write(d.join(n), "").unwrap();
        }
        std::fs::write(&p, "").unwrap();
        let names: Vec<String> = journal_files(&p)
            .unwrap()
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "txgate-20261203-001.jsonl",
                "txgate-20261204-001.jsonl",
                "txgate-20261204-002.jsonl",
                "txgate.jsonl"
            ]
        );
        assert_eq!(
            rotated_name(&p, "20261204", 3).file_name().unwrap(),
            "txgate-20261204-003.jsonl"
        );
    }

    #[test]
    fn query_matches_seq_code_and_either_date() {
        let r = JournalRecord {
            time: "2026-12-05T00:00:01.000+08:00".into(),
            listener: "main".into(),
            peer: "127.0.0.1:1".into(),
            channel: "CUS".into(),
            code: "2969".into(),
            seq: "S1".into(),
            date: "20261204".into(),
            dest: String::new(),
            backend: None,
            latency_us: 1,
            rsp_code: "000000".into(),
            bytes_in: 1,
            bytes_out: 1,
            error: None,
            header: BTreeMap::new(),
            fields: BTreeMap::new(),
            body: None,
        };
        let q = |code: Option<&str>, date: Option<&str>| Query {
            seq: "S1".into(),
            code: code.map(Into::into),
            date: date.map(Into::into),
        };
        assert!(q(None, None).matches(&r));
        assert!(q(Some("2969"), Some("20261204")).matches(&r));
        assert!(q(None, Some("2026-12-05")).matches(&r));
        assert!(!q(Some("2967"), None).matches(&r));
        assert!(!q(None, Some("20261206")).matches(&r));
        assert!(!Query {
            seq: "S2".into(),
            ..Query::default()
        }
        .matches(&r));
    }
}
