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
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Where each of `Render::header_fields` is in the header, found once per
    /// snapshot rather than by name per record.
    ranges: Vec<Option<Range<usize>>>,
    schemas: HashMap<Box<[u8]>, Arc<Schema>>,
}

impl Lookup {
    fn of(snap: &Snapshot, header_fields: &[HeaderTag]) -> Lookup {
        let schemas = snap
            .routes
            .iter()
            .map(|(code, r)| (code.clone(), r.schema.clone()))
            .collect();
        Lookup::new(snap.header.clone(), schemas, header_fields)
    }

    fn new(
        header: Arc<HeaderSpec>,
        schemas: HashMap<Box<[u8]>, Arc<Schema>>,
        header_fields: &[HeaderTag],
    ) -> Lookup {
        Lookup {
            ranges: header_fields
                .iter()
                .map(|f| header.by_tag(&f.tag).map(|h| h.range()))
                .collect(),
            header,
            schemas,
        }
    }
}

/// What the message path copies out of a `TxnEvent`: owned, so the writer
/// thread can take its time.
#[derive(Debug)]
struct Entry {
    time: SystemTime,
    peer: SocketAddr,
    latency_us: u64,
    bytes_in: usize,
    bytes_out: usize,
    error: Option<String>,
    routed: bool,
    has_backend: bool,
    /// The byte strings; the request is kept whole, or only its header when
    /// no body field is wanted.
    text: Packed,
}

/// The byte strings of an entry, in the order `Render::capture` packs them.
#[derive(Debug, Clone, Copy)]
enum Part {
    Listener,
    Channel,
    Code,
    Seq,
    Date,
    Dest,
    Backend,
    RspCode,
    Request,
}

const PARTS: usize = 9;

/// Bytes kept inline: the 200-byte header and the usual values fit, so an
/// entry costs the message path one allocation (its box), filled in place.
const INLINE: usize = 320;

/// An entry's byte strings one after another, inline when they fit.
#[derive(Debug)]
struct Packed {
    ends: [usize; PARTS],
    inline: [u8; INLINE],
    /// All of them instead, when they do not fit inline.
    heap: Vec<u8>,
}

impl Packed {
    fn new() -> Packed {
        Packed {
            ends: [0; PARTS],
            inline: [0; INLINE],
            heap: Vec::new(),
        }
    }

    fn fill(&mut self, parts: [&[u8]; PARTS]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut at = 0;
        if total <= INLINE {
            for (end, p) in self.ends.iter_mut().zip(parts) {
                self.inline[at..at + p.len()].copy_from_slice(p);
                at += p.len();
                *end = at;
            }
        } else {
            self.heap.reserve_exact(total);
            for (end, p) in self.ends.iter_mut().zip(parts) {
                self.heap.extend_from_slice(p);
                *end = self.heap.len();
            }
        }
    }

    fn get(&self, part: Part) -> &[u8] {
        let i = part as usize;
        let start = match i.checked_sub(1) {
            Some(prev) => self.ends[prev],
            None => 0,
        };
        let all = if self.heap.is_empty() {
            &self.inline[..]
        } else {
            &self.heap[..]
        };
        all.get(start..self.ends[i]).unwrap_or(&[])
    }
}

/// A message to the writer thread.
#[derive(Debug)]
enum Msg {
    Entry(Box<Entry>),
    Close,
}

/// A configured header field, as records list them.
#[derive(Debug, Clone)]
struct HeaderTag {
    tag: String,
    masked: bool,
}

/// Turns entries into lines: shared by the writer thread and the overflow path.
#[derive(Debug)]
struct Render {
    offset: UtcOffset,
    /// `+08:00`: how every `time` ends.
    zone: String,
    /// `header_fields` sorted and once each, as `JournalRecord::header` (a
    /// BTreeMap) serialises them.
    header_fields: Vec<HeaderTag>,
    /// `body_fields`, sorted and once each, likewise.
    body_fields: Vec<String>,
    body: BodyMode,
    lookup: ArcSwap<Lookup>,
    /// The header's length, as in `lookup`: all the message path needs of it.
    header_len: AtomicUsize,
}

/// The formatted second of the last record: a busy journal writes
/// thousands of records a second, and they all share it.
#[derive(Debug, Default)]
struct Clock {
    /// Seconds since the epoch, and their local day.
    at: Option<(u64, Date)>,
    /// `YYYY-MM-DDTHH:MM:SS` of that second, in the journal's offset.
    text: String,
}

impl Render {
    fn new(cfg: &JournalConfig, snap: &Snapshot) -> Result<Render, JournalError> {
        Render::with(cfg, |fields| Lookup::of(snap, fields))
    }

    fn with(
        cfg: &JournalConfig,
        lookup: impl FnOnce(&[HeaderTag]) -> Lookup,
    ) -> Result<Render, JournalError> {
        let offset = parse_offset(&cfg.utc_offset)?;
        let mut header_fields: Vec<HeaderTag> = cfg
            .header_fields
            .iter()
            .map(|tag| HeaderTag {
                tag: tag.clone(),
                masked: cfg.mask_header.contains(tag),
            })
            .collect();
        header_fields.sort_by(|a, b| a.tag.cmp(&b.tag));
        header_fields.dedup_by(|a, b| a.tag == b.tag);
        let mut body_fields = cfg.body_fields.clone();
        body_fields.sort();
        body_fields.dedup();
        let lookup = lookup(&header_fields);
        Ok(Render {
            header_len: AtomicUsize::new(lookup.header.length()),
            offset,
            zone: zone_text(offset),
            header_fields,
            body_fields,
            body: cfg.body,
            lookup: ArcSwap::from_pointee(lookup),
        })
    }

    fn wants_body(&self) -> bool {
        !self.body_fields.is_empty() || self.body == BodyMode::Masked
    }

    fn local(&self, t: SystemTime) -> OffsetDateTime {
        OffsetDateTime::from(t).to_offset(self.offset)
    }

    /// What the message path keeps of a transaction for its record.
    fn capture(&self, e: &TxnEvent<'_>) -> Box<Entry> {
        let keep = if self.wants_body() || crate::body::xml::is_xml(e.request) {
            e.request.len()
        } else {
            self.header_len.load(Ordering::Relaxed).min(e.request.len())
        };
        let mut entry = Box::new(Entry {
            time: e.time,
            peer: e.peer,
            latency_us: u64::try_from(e.latency.as_micros()).unwrap_or(u64::MAX),
            bytes_in: e.bytes_in,
            bytes_out: e.bytes_out,
            error: e.error.map(str::to_string),
            routed: e.schema.is_some(),
            has_backend: e.backend.is_some(),
            text: Packed::new(),
        });
        // Filled in the box: built on the stack and moved, it would be copied twice.
        entry.text.fill([
            e.listener.as_bytes(),
            e.channel,
            e.code,
            e.seq,
            e.date,
            e.dest,
            e.backend.unwrap_or_default().as_bytes(),
            e.rsp_code.as_bytes(),
            &e.request[..keep],
        ]);
        entry
    }

    /// Appends `e`'s line, newline included, to `out`, exactly as
    /// `serde_json` writes the `JournalRecord` (which `find` reads back), but
    /// straight from the entry's bytes: no `String` per field. Returns the
    /// record's local day, for daily rotation.
    fn render(&self, e: &Entry, clock: &mut Clock, out: &mut Vec<u8>) -> Date {
        out.extend_from_slice(b"{\"time\":\"");
        let day = self.time(e.time, clock, out);
        out.extend_from_slice(b"\",\"listener\":");
        let t = &e.text;
        json_text(out, t.get(Part::Listener));
        out.extend_from_slice(b",\"peer\":\"");
        json_peer(out, e.peer);
        out.extend_from_slice(b"\",\"channel\":");
        json_text(out, t.get(Part::Channel));
        out.extend_from_slice(b",\"code\":");
        json_text(out, t.get(Part::Code));
        out.extend_from_slice(b",\"seq\":");
        json_text(out, t.get(Part::Seq));
        out.extend_from_slice(b",\"date\":");
        json_text(out, t.get(Part::Date));
        out.extend_from_slice(b",\"dest\":");
        json_text(out, t.get(Part::Dest));
        out.extend_from_slice(b",\"backend\":");
        if e.has_backend {
            json_text(out, t.get(Part::Backend));
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"latency_us\":");
        json_u64(out, e.latency_us);
        out.extend_from_slice(b",\"rsp_code\":");
        json_text(out, t.get(Part::RspCode));
        out.extend_from_slice(b",\"bytes_in\":");
        json_u64(out, e.bytes_in as u64);
        out.extend_from_slice(b",\"bytes_out\":");
        json_u64(out, e.bytes_out as u64);
        out.extend_from_slice(b",\"error\":");
        match &e.error {
            Some(s) => json_str(out, s),
            None => out.extend_from_slice(b"null"),
        }
        self.extras(e, out);
        out.extend_from_slice(b"}\n");
        day
    }

    /// Writes `t` as RFC 3339 with milliseconds; returns its local day.
    fn time(&self, t: SystemTime, clock: &mut Clock, out: &mut Vec<u8>) -> Date {
        let Ok(since) = t.duration_since(SystemTime::UNIX_EPOCH) else {
            // Before 1970: not worth a cache.
            let local = self.local(t);
            out.extend_from_slice(rfc3339_ms(local).as_bytes());
            return local.date();
        };
        let secs = since.as_secs();
        let day = match clock.at {
            Some((s, day)) if s == secs => day,
            _ => {
                let local = self.local(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
                clock.text = second_text(local);
                clock.at = Some((secs, local.date()));
                local.date()
            }
        };
        out.extend_from_slice(clock.text.as_bytes());
        let ms = since.subsec_millis();
        out.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100 % 10) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
        ]);
        out.extend_from_slice(self.zone.as_bytes());
        day
    }

    /// `header`, `fields` and `body`, each left out when empty.
    fn extras(&self, e: &Entry, out: &mut Vec<u8>) {
        let lookup = self.lookup.load();
        let h = &lookup.header;
        let request = e.text.get(Part::Request);
        let xml = crate::body::xml::is_xml(request);
        let doc = if xml {
            XmlDoc::parse(request).ok()
        } else {
            None
        };
        let mut map = JsonMap::new(b",\"header\":{");
        for (i, f) in self.header_fields.iter().enumerate() {
            let value = match &doc {
                Some(d) => d.head(&f.tag).map(|v| Cow::Borrowed(v.trim())),
                None if xml => None,
                None => lookup
                    .ranges
                    .get(i)
                    .cloned()
                    .flatten()
                    .and_then(|r| request.get(r))
                    .map(|b| text(trim(b))),
            };
            let Some(value) = value else { continue };
            map.key(out, &f.tag);
            if f.masked {
                json_str(out, &mask::mask(&value));
            } else {
                json_str(out, &value);
            }
        }
        map.end(out);
        if !self.wants_body() || !e.routed {
            return;
        }
        let Some(schema) = lookup.schemas.get(e.text.get(Part::Code)) else {
            return;
        };
        let layout = &schema.request;
        let body: Option<Body> = match &doc {
            Some(d) => d.body(layout).ok(),
            None if xml => None,
            None => fixed::decode(layout, request, h.length()).ok(),
        };
        let Some(body) = body else { return };
        let mut map = JsonMap::new(b",\"fields\":{");
        for tag in &self.body_fields {
            let Some(v) = body.get(tag) else { continue };
            map.key(out, tag);
            // Through `Redacted`, as one `Tag=value` record, less its `Tag=`.
            let one = BodyRecord {
                fields: vec![(tag.clone(), v.clone())],
            };
            let prefix = format!("{tag}=");
            out.push(b'"');
            let mut w = Escaped::stripping(out, prefix.as_bytes());
            let _ = write!(w, "{}", Redacted { layout, body: &one });
            w.finish();
            out.push(b'"');
        }
        map.end(out);
        if self.body == BodyMode::Masked {
            out.extend_from_slice(b",\"body\":\"");
            let _ = write!(
                Escaped::new(out),
                "{}",
                Redacted {
                    layout,
                    body: &body,
                }
            );
            out.push(b'"');
        }
    }
}

/// Header bytes as text: ASCII (codes, SeqNo, dates: nearly everything)
/// borrowed as is; otherwise strict GBK, or lossy UTF-8 if not even that.
fn text(b: &[u8]) -> Cow<'_, str> {
    if b.is_ascii() {
        if let Ok(s) = std::str::from_utf8(b) {
            return Cow::Borrowed(s);
        }
    }
    crate::gbk::decode(b).unwrap_or_else(|_| String::from_utf8_lossy(b))
}

/// A JSON string of header bytes (see `text`).
fn json_text(out: &mut Vec<u8>, b: &[u8]) {
    if b.is_ascii() {
        // ASCII is its own UTF-8: no need to look at it as text.
        out.push(b'"');
        escape(out, b);
        out.push(b'"');
    } else {
        json_str(out, &text(b));
    }
}

/// The caller's address as `SocketAddr` displays it, without the
/// formatting machinery for the usual IPv4 case.
fn json_peer(out: &mut Vec<u8>, peer: SocketAddr) {
    match peer {
        SocketAddr::V4(a) => {
            let [w, x, y, z] = a.ip().octets();
            for (i, octet) in [w, x, y, z].into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                json_u64(out, u64::from(octet));
            }
            out.push(b':');
            json_u64(out, u64::from(a.port()));
        }
        // Addresses need no escaping, but the writer escapes anyway; it cannot fail.
        SocketAddr::V6(_) => {
            let _ = write!(Escaped::new(out), "{peer}");
        }
    }
}

/// A JSON string, quoted and escaped.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape(out, s.as_bytes());
    out.push(b'"');
}

/// Escapes as serde_json does: `"`, `\`, the short forms of \b \t \n \f \r,
/// `\u00XX` (lower-case hex) for other control characters; the rest as is.
/// Works byte by byte, so UTF-8 text may come in pieces.
fn escape(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let plain = |c: u8| c >= 0x20 && c != b'"' && c != b'\\';
    let mut start = 0;
    for (n, chunk) in b.chunks(16).enumerate() {
        // Values seldom need escaping: test 16 bytes at once, without
        // branches so that it vectorises.
        if chunk.iter().fold(true, |ok, &c| ok & plain(c)) {
            continue;
        }
        for (j, &c) in chunk.iter().enumerate() {
            if plain(c) {
                continue;
            }
            let i = n * 16 + j;
            out.extend_from_slice(&b[start..i]);
            let short: &[u8] = match c {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                _ => &[],
            };
            if short.is_empty() {
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 0xf)],
                ]);
            } else {
                out.extend_from_slice(short);
            }
            start = i + 1;
        }
    }
    out.extend_from_slice(&b[start..]);
}

fn json_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// An object written only if it gets a key, as `skip_serializing_if = "is_empty"`.
struct JsonMap {
    open: &'static [u8],
    keys: usize,
}

impl JsonMap {
    fn new(open: &'static [u8]) -> JsonMap {
        JsonMap { open, keys: 0 }
    }

    fn key(&mut self, out: &mut Vec<u8>, key: &str) {
        out.extend_from_slice(if self.keys == 0 { self.open } else { b"," });
        self.keys += 1;
        json_str(out, key);
        out.push(b':');
    }

    fn end(self, out: &mut Vec<u8>) {
        if self.keys > 0 {
            out.push(b'}');
        }
    }
}

/// Formatted text, JSON-escaped into a line as it comes; optionally less a
/// prefix it should start with (kept if it does not, as `str::strip_prefix`).
struct Escaped<'a> {
    out: &'a mut Vec<u8>,
    /// The prefix still to strip, and how much of it has been seen.
    strip: Option<(&'a [u8], usize)>,
}

impl<'a> Escaped<'a> {
    fn new(out: &'a mut Vec<u8>) -> Escaped<'a> {
        Escaped { out, strip: None }
    }

    fn stripping(out: &'a mut Vec<u8>, prefix: &'a [u8]) -> Escaped<'a> {
        Escaped {
            out,
            strip: Some((prefix, 0)),
        }
    }

    /// The text ended inside the prefix: what was held back is the text.
    fn finish(self) {
        if let Some((prefix, seen)) = self.strip {
            escape(self.out, &prefix[..seen]);
        }
    }
}

impl std::fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let mut rest = s.as_bytes();
        if let Some((prefix, seen)) = self.strip {
            let want = &prefix[seen..];
            let n = want.len().min(rest.len());
            if rest[..n] == want[..n] {
                rest = &rest[n..];
                self.strip = (seen + n < prefix.len()).then_some((prefix, seen + n));
            } else {
                escape(self.out, &prefix[..seen]);
                self.strip = None;
            }
        }
        escape(self.out, rest);
        Ok(())
    }
}

/// `YYYY-MM-DDTHH:MM:SS`.
fn second_text(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    )
}

/// `+HH:MM`.
fn zone_text(off: UtcOffset) -> String {
    let secs = off.whole_seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let secs = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", secs / 3600, (secs % 3600) / 60)
}

fn rfc3339_ms(t: OffsetDateTime) -> String {
    format!(
        "{}.{:03}{}",
        second_text(t),
        t.millisecond(),
        zone_text(t.offset())
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
        let render = Arc::new(Render::new(cfg, snap)?);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
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
            clock: Clock::default(),
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
        let mut line = Vec::new();
        self.render.render(&entry, &mut Clock::default(), &mut line);
        let line = String::from_utf8_lossy(&line);
        tracing::error!(
            target: "txgate::journal",
            record = %line.trim_end(),
            "journal record not written to the file: {why}; it is in this log line"
        );
    }
}

impl Observer for Journal {
    fn on_txn(&self, e: &TxnEvent<'_>) {
        let entry = self.render.capture(e);
        self.submit(entry);
    }
}

/// For `benches/codec.rs` only: the journal's two per-record costs, without
/// a writer thread or a file.
#[doc(hidden)]
#[derive(Debug)]
pub struct RenderBench {
    render: Render,
    entry: Box<Entry>,
    clock: RefCell<Clock>,
}

impl RenderBench {
    pub fn new(
        cfg: &JournalConfig,
        snap: &Snapshot,
        e: &TxnEvent<'_>,
    ) -> Result<RenderBench, JournalError> {
        let render = Render::new(cfg, snap)?;
        let entry = render.capture(e);
        Ok(RenderBench {
            render,
            entry,
            clock: RefCell::new(Clock::default()),
        })
    }

    /// What `on_txn` does before queueing: the entry, dropped here.
    pub fn capture(&self, e: &TxnEvent<'_>) -> usize {
        self.render.capture(e).text.get(Part::Request).len()
    }

    /// What the writer thread does per record: appends its line to `out`.
    pub fn render(&self, out: &mut Vec<u8>) {
        let mut clock = self.clock.borrow_mut();
        self.render.render(&self.entry, &mut clock, out);
    }
}

impl Reloadable for Journal {
    fn reloaded(&self, snap: &Snapshot) {
        let lookup = Lookup::of(snap, &self.render.header_fields);
        self.render
            .header_len
            .store(lookup.header.length(), Ordering::Relaxed);
        self.render.lookup.store(Arc::new(lookup));
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
    clock: Clock,
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
        let start = batch.bytes.len();
        let day = self.render.render(e, &mut self.clock, &mut batch.bytes);
        let len = (batch.bytes.len() - start) as u64;
        let pending = start as u64;
        let new_day = self.rotate == Rotate::Daily && self.day.is_some_and(|d| d != day);
        let too_big = self.rotate != Rotate::Never
            && self.max_bytes > 0
            && self.size + pending > 0
            && self.size + pending + len > self.max_bytes;
        if new_day || too_big {
            // The line belongs in the next file: the batch goes out without it.
            let line = batch.bytes.split_off(start);
            self.write(batch);
            self.rotate_now();
            batch.bytes.extend_from_slice(&line);
        }
        if self.day.is_none() {
            self.day = Some(day);
        }
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

    // ---------------------------------------------------------- rendering

    /// A header layout and a 2969 request layout with a sensitive name.
    struct Fx {
        header: Arc<HeaderSpec>,
        schema: Arc<Schema>,
    }

    fn fx() -> Fx {
        let schema = Schema::from_toml(
            "code='2969'\nname='t'\n\
             [[request]]\ntag='LoanAppNo'\nlabel='n'\ntype='C'\nwidth=20\n\
             [[request]]\ntag='CustName'\nlabel='名'\ntype='C'\nwidth=30\nsensitive=true\n\
             [[request]]\ntag='Remark'\nlabel='r'\ntype='C'\nwidth=40\n",
        )
        .unwrap();
        Fx {
            header: Arc::new(HeaderSpec::builtin()),
            schema: Arc::new(schema),
        }
    }

    fn render_for(cfg: &JournalConfig, fx: &Fx) -> Render {
        Render::with(cfg, |fields| {
            let schemas = HashMap::from([(b"2969"[..].into(), fx.schema.clone())]);
            Lookup::new(fx.header.clone(), schemas, fields)
        })
        .unwrap()
    }

    fn gbk(s: &str) -> Vec<u8> {
        crate::gbk::encode(s).unwrap().into_owned()
    }

    /// A header with these raw bytes in these fields and spaces elsewhere:
    /// nothing is checked, so any byte can be tried.
    fn header_bytes(h: &HeaderSpec, values: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = vec![b' '; h.length()];
        for (tag, v) in values {
            let start = h.by_tag(tag).unwrap().range().start;
            out[start..start + v.len()].copy_from_slice(v);
        }
        out
    }

    fn body_of(fx: &Fx, toml_text: &str) -> BodyRecord {
        let t: toml::Table = toml::from_str(toml_text).unwrap();
        BodyRecord::from_toml(&fx.schema.request, &t).unwrap()
    }

    const BODY: &str =
        "LoanAppNo='LA2026\"01'\nCustName='中石油昆仑燃气有限公司'\nRemark=\"备注\\t\\\\x\"";

    fn fixed_request(fx: &Fx, head: &[(&str, &[u8])]) -> Vec<u8> {
        let mut msg = header_bytes(&fx.header, head);
        fixed::encode(&fx.schema.request, &body_of(fx, BODY), &mut msg).unwrap();
        msg
    }

    fn xml_request(fx: &Fx) -> Vec<u8> {
        let head: Vec<(String, String)> = [
            ("TranCode", "2969"),
            ("ChnlNo", "CUS"),
            ("BrchNo", "分行\"01"),
            ("TellerNo", "T0001"),
            ("TranTime", "101500"),
        ]
        .iter()
        .map(|(t, v)| (t.to_string(), v.to_string()))
        .collect();
        crate::body::xml::encode(&fx.header, &head, &fx.schema.request, &body_of(fx, BODY)).unwrap()
    }

    /// 2026-11-30T08:53:20.123+08:00
    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_000_000_123)
    }

    fn event<'a>(request: &'a [u8], schema: Option<&'a Schema>, time: SystemTime) -> TxnEvent<'a> {
        TxnEvent {
            time,
            listener: "main",
            peer: "10.1.2.3:45678".parse().unwrap(),
            channel: b"CUS",
            code: b"2969",
            seq: b"CUS0001",
            date: b"20261128",
            dest: b"SCF",
            backend: Some("SCF"),
            latency: Duration::from_micros(850),
            rsp_code: "000000",
            bytes_in: request.len() + 8,
            bytes_out: 626,
            error: None,
            request,
            schema,
        }
    }

    /// What the journal wrote before it wrote lines itself (`Render::record`
    /// then `serde_json`), from the configuration as given: the reference
    /// every rendered line must equal byte for byte.
    fn reference(cfg: &JournalConfig, r: &Render, e: &Entry) -> JournalRecord {
        fn show(b: &[u8]) -> String {
            crate::gbk::decode(b)
                .map(|c| c.into_owned())
                .unwrap_or_else(|_| String::from_utf8_lossy(b).into_owned())
        }
        fn old_rfc3339_ms(t: OffsetDateTime) -> String {
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
        let t = &e.text;
        let mut rec = JournalRecord {
            time: old_rfc3339_ms(OffsetDateTime::from(e.time).to_offset(r.offset)),
            listener: show(t.get(Part::Listener)),
            peer: e.peer.to_string(),
            channel: show(t.get(Part::Channel)),
            code: show(t.get(Part::Code)),
            seq: show(t.get(Part::Seq)),
            date: show(t.get(Part::Date)),
            dest: show(t.get(Part::Dest)),
            backend: e.has_backend.then(|| show(t.get(Part::Backend))),
            latency_us: e.latency_us,
            rsp_code: show(t.get(Part::RspCode)),
            bytes_in: e.bytes_in as u64,
            bytes_out: e.bytes_out as u64,
            error: e.error.clone(),
            header: BTreeMap::new(),
            fields: BTreeMap::new(),
            body: None,
        };
        let lookup = r.lookup.load();
        let h = &lookup.header;
        let request = t.get(Part::Request);
        let xml = crate::body::xml::is_xml(request);
        let doc = if xml {
            XmlDoc::parse(request).ok()
        } else {
            None
        };
        for tag in &cfg.header_fields {
            let value = match &doc {
                Some(d) => d.head(tag).map(|v| v.trim().to_string()),
                None if xml => None,
                None => h
                    .by_tag(tag)
                    .and_then(|f| request.get(f.range()))
                    .map(|b| show(trim(b))),
            };
            let Some(value) = value else { continue };
            let value = if cfg.mask_header.iter().any(|m| m == tag) {
                mask::mask(&value)
            } else {
                value
            };
            rec.header.insert(tag.clone(), value);
        }
        let wants_body = !cfg.body_fields.is_empty() || cfg.body == BodyMode::Masked;
        if !wants_body || !e.routed {
            return rec;
        }
        let Some(schema) = lookup.schemas.get(t.get(Part::Code)) else {
            return rec;
        };
        let layout = &schema.request;
        let body: Option<Body> = match &doc {
            Some(d) => d.body(layout).ok(),
            None if xml => None,
            None => fixed::decode(layout, request, h.length()).ok(),
        };
        let Some(body) = body else { return rec };
        for tag in &cfg.body_fields {
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
        if cfg.body == BodyMode::Masked {
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

    fn line(r: &Render, e: &Entry) -> String {
        let mut out = Vec::new();
        r.render(e, &mut Clock::default(), &mut out);
        String::from_utf8(out).unwrap()
    }

    /// `[journal]` settings that take every path: header fields unsorted and
    /// twice, one unknown, one with JSON specials, body fields likewise, the
    /// whole body.
    fn busy_config() -> JournalConfig {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        JournalConfig {
            header_fields: v(&[
                "TranTime", "RspMsg", "BrchNo", "TellerNo", "Mac", "TellerNo", "Nope",
            ]),
            mask_header: v(&["TellerNo", "Mac"]),
            body_fields: v(&["Remark", "CustName", "LoanAppNo", "Missing", "CustName"]),
            body: BodyMode::Masked,
            ..JournalConfig::default()
        }
    }

    fn odd_header(fx: &Fx) -> Vec<u8> {
        fixed_request(
            fx,
            &[
                ("TranCode", b"2969"),
                ("BrchNo", &gbk("分行01")),
                ("TellerNo", &[gbk("张三丰"), vec![0, 0]].concat()),
                ("TranTime", b"101500"),
                ("RspMsg", &[gbk("交易成功\"ok\"\\"), vec![0x1f]].concat()),
                ("Mac", b"a\"b\\c\td"),
            ],
        )
    }

    #[test]
    fn a_record_with_gbk_and_json_specials_is_written_as_serde_json_writes_it() {
        let fx = fx();
        let r = render_for(&busy_config(), &fx);
        let req = odd_header(&fx);
        let channel = gbk("网银");
        let peer = std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 9000, 0, 3);
        let e = r.capture(&TxnEvent {
            peer: peer.into(),
            channel: &channel,
            seq: b"S\"1\\2\n\x01",
            dest: &[0xFF, b'A'],
            backend: None,
            latency: Duration::from_micros(1500),
            bytes_in: 317,
            error: Some("交易码 \"9999\" 未配置\n\u{7}"),
            ..event(&req, Some(&fx.schema), t0())
        });
        let expected = JournalRecord {
            time: "2026-11-30T08:53:20.123+08:00".into(),
            listener: "main".into(),
            peer: "[fe80::1%3]:9000".into(),
            channel: "网银".into(),
            code: "2969".into(),
            seq: "S\"1\\2\n\u{1}".into(),
            date: "20261128".into(),
            dest: "\u{FFFD}A".into(),
            backend: None,
            latency_us: 1500,
            rsp_code: "000000".into(),
            bytes_in: 317,
            bytes_out: 626,
            error: Some("交易码 \"9999\" 未配置\n\u{7}".into()),
            header: [
                ("BrchNo", "分行01"),
                ("Mac", "a*****d"),
                ("RspMsg", "交易成功\"ok\"\\\u{1f}"),
                ("TellerNo", "张*丰"),
                ("TranTime", "101500"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            fields: [
                ("CustName", "中*********司"),
                ("LoanAppNo", "LA2026\"01"),
                ("Remark", "备注\t\\x"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            body: Some("LoanAppNo=LA2026\"01 CustName=中*********司 Remark=备注\t\\x".into()),
        };
        let got = line(&r, &e);
        assert_eq!(got, serde_json::to_string(&expected).unwrap() + "\n");
        assert_eq!(
            serde_json::from_str::<JournalRecord>(&got).unwrap(),
            expected
        );
        assert!(!got.contains("中石油") && !got.contains("T0001") && !got.contains("张三丰"));
    }

    #[test]
    fn every_line_is_byte_for_byte_what_the_record_serialised_was() {
        let fx = fx();
        let plain = fixed_request(
            &fx,
            &[
                ("TranCode", b"2969"),
                ("BrchNo", b"0101"),
                ("TellerNo", b"T0001"),
                ("TranTime", b"101500"),
            ],
        );
        let odd = odd_header(&fx);
        let xml = xml_request(&fx);
        assert!(xml.len() > INLINE, "the XML request tries the heap");
        let header_only = plain[..fx.header.length()].to_vec();
        let before_1970 = SystemTime::UNIX_EPOCH - Duration::from_millis(1_500);
        let channel = gbk("网银");
        let long_seq = vec![b'9'; 400];
        let schema: &Schema = &fx.schema;
        let events = || {
            let base = |req| event(req, Some(schema), t0());
            vec![
                base(&plain),
                base(&odd),
                base(&xml),
                TxnEvent {
                    schema: None,
                    ..base(&odd)
                },
                TxnEvent {
                    code: b"9999",
                    rsp_code: "GW0101",
                    backend: None,
                    error: Some("交易码 9999 未开通"),
                    ..base(&odd)
                },
                TxnEvent {
                    time: before_1970,
                    latency: Duration::MAX,
                    channel: &channel,
                    seq: &long_seq,
                    dest: &[0x81],
                    ..base(&header_only)
                },
                TxnEvent {
                    time: t0() + Duration::from_millis(1_000 * 3600 * 14 + 7),
                    ..base(b"short")
                },
                base(b""),
            ]
        };
        let west = JournalConfig {
            utc_offset: "-05:30".into(),
            body_fields: vec!["CustName".into()],
            ..JournalConfig::default()
        };
        let mut n = 0;
        for cfg in [JournalConfig::default(), busy_config(), west] {
            let r = render_for(&cfg, &fx);
            let mut clock = Clock::default();
            for ev in events() {
                let e = r.capture(&ev);
                let want = serde_json::to_string(&reference(&cfg, &r, &e)).unwrap() + "\n";
                assert_eq!(line(&r, &e), want);
                // Again with a clock that has seen other seconds.
                let mut out = Vec::new();
                let day = r.render(&e, &mut clock, &mut out);
                assert_eq!(String::from_utf8(out).unwrap(), want);
                assert_eq!(day, r.local(e.time).date());
                n += 1;
            }
        }
        assert_eq!(n, 24);
    }

    #[test]
    fn escaping_is_serde_jsons() {
        let mut cases: Vec<String> = (0u8..=0x7f).map(|b| char::from(b).to_string()).collect();
        cases.extend(
            [
                "",
                "plain ascii that is longer than sixteen bytes",
                "中石油\"昆仑\"\\燃气\u{1}\u{7f}\u{80}\u{2028}",
                "0123456789abcde\"",
                "0123456789abcdef\"",
                "0123456789abcdef0\n",
                "\"\"\\\\\n\r\t\u{8}\u{c}\u{0}\u{1f} 0123456789abcdef\u{1b}",
            ]
            .map(String::from),
        );
        for s in cases {
            let mut out = Vec::new();
            json_str(&mut out, &s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap(),
                "{s:?}"
            );
            let mut out = Vec::new();
            json_text(&mut out, s.as_bytes());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap()
            );
        }
    }

    #[test]
    fn escaped_strips_a_prefix_only_if_the_text_has_it() {
        let run = |pieces: &[&str]| {
            let mut out = Vec::new();
            let mut w = Escaped::stripping(&mut out, b"Tag=");
            for p in pieces {
                w.write_str(p).unwrap();
            }
            w.finish();
            String::from_utf8(out).unwrap()
        };
        let want = |whole: &str| {
            let s = whole.strip_prefix("Tag=").unwrap_or(whole);
            serde_json::to_string(s)
                .unwrap()
                .trim_matches('"')
                .to_string()
        };
        for pieces in [
            &["Tag=a\"b"][..],
            &["Ta", "g=", "x"],
            &["T", "a", "g", "=", ""],
            &["Tag"],
            &["Ta", "x=1"],
            &["Other=1"],
            &[""],
        ] {
            assert_eq!(run(pieces), want(&pieces.concat()), "{pieces:?}");
        }
    }

    #[test]
    fn the_message_path_keeps_the_header_inline_and_the_whole_request_only_when_needed() {
        let fx = fx();
        let req = fixed_request(&fx, &[("TranCode", b"2969")]);
        let r = render_for(&JournalConfig::default(), &fx);
        let e = r.capture(&event(&req, Some(&fx.schema), t0()));
        assert_eq!(e.text.get(Part::Request), &req[..fx.header.length()]);
        assert!(e.text.heap.is_empty(), "inline");
        for (part, want) in [
            (Part::Listener, &b"main"[..]),
            (Part::Channel, b"CUS"),
            (Part::Code, b"2969"),
            (Part::Seq, b"CUS0001"),
            (Part::Date, b"20261128"),
            (Part::Dest, b"SCF"),
            (Part::Backend, b"SCF"),
            (Part::RspCode, b"000000"),
        ] {
            assert_eq!(e.text.get(part), want, "{part:?}");
        }

        let r = render_for(&busy_config(), &fx);
        assert_eq!(
            r.capture(&event(&req, Some(&fx.schema), t0()))
                .text
                .get(Part::Request),
            &req[..]
        );
        let xml = xml_request(&fx);
        let seq = vec![b'7'; 500];
        let e = r.capture(&TxnEvent {
            seq: &seq,
            ..event(&xml, Some(&fx.schema), t0())
        });
        assert!(!e.text.heap.is_empty(), "too big for inline");
        assert_eq!(e.text.get(Part::Request), &xml[..]);
        assert_eq!(e.text.get(Part::Seq), &seq[..]);
        assert_eq!(e.text.get(Part::RspCode), b"000000");
    }

    #[test]
    fn the_clock_formats_each_second_once_and_every_millisecond_right() {
        let r = render_for(&JournalConfig::default(), &fx());
        let mut clock = Clock::default();
        // Up to midnight in +08:00 and past it, then back.
        let midnight = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_054_400);
        for t in [
            t0(),
            t0() + Duration::from_millis(876),
            t0() + Duration::from_millis(877),
            midnight - Duration::from_millis(1),
            midnight,
            midnight + Duration::from_millis(999),
            t0(),
        ] {
            let mut out = Vec::new();
            let day = r.time(t, &mut clock, &mut out);
            let local = r.local(t);
            assert_eq!(String::from_utf8(out).unwrap(), rfc3339_ms(local));
            assert_eq!(day, local.date());
        }
        let mut out = Vec::new();
        r.time(midnight, &mut clock, &mut out);
        assert_eq!(out, b"2026-12-01T00:00:00.000+08:00");
    }

    fn writer(path: &Path, render: Arc<Render>, rotate: Rotate, max_bytes: u64) -> Writer {
        let mut w = Writer {
            path: path.to_path_buf(),
            render,
            stats: Arc::new(JournalStats::default()),
            rotate,
            max_bytes,
            fsync: false,
            file: None,
            size: 0,
            day: None,
            clock: Clock::default(),
        };
        w.open().unwrap();
        w
    }

    fn lines_per_file(path: &Path) -> Vec<Vec<JournalRecord>> {
        journal_files(path)
            .unwrap()
            .iter()
            .map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn size_rotation_counts_the_rendered_bytes_and_splits_a_batch() {
        let d = tmp("rotate-size");
        let path = d.join("txgate.jsonl");
        let fx = fx();
        let render = Arc::new(render_for(&JournalConfig::default(), &fx));
        let req = fixed_request(&fx, &[("TranCode", b"2969")]);
        let e = render.capture(&event(&req, Some(&fx.schema), t0()));
        let one = line(&render, &e);
        let mut w = writer(&path, render, Rotate::Size, 2 * one.len() as u64);
        let mut batch = Batch::default();
        for _ in 0..5 {
            w.add(&mut batch, &e);
        }
        w.write(&mut batch);
        let files = journal_files(&path).unwrap();
        let sizes: Vec<usize> = lines_per_file(&path).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1], "{files:?}");
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.len() <= 2 * one.len(), "{f:?}");
            assert_eq!(text, one.repeat(text.len() / one.len()));
        }
        assert_eq!(w.stats.records.load(Ordering::Relaxed), 5);
        assert_eq!(w.stats.rotations.load(Ordering::Relaxed), 2);
        assert_eq!(w.size, one.len() as u64);
    }

    #[test]
    fn daily_rotation_starts_a_file_at_the_first_record_of_a_new_day() {
        let d = tmp("rotate-day");
        let path = d.join("txgate.jsonl");
        let fx = fx();
        let render = Arc::new(render_for(&JournalConfig::default(), &fx));
        let req = fixed_request(&fx, &[("TranCode", b"2969")]);
        let day = |t| render.capture(&event(&req, Some(&fx.schema), t));
        let next = t0() + Duration::from_secs(86_400);
        let entries = [day(t0()), day(t0()), day(next)];
        let mut w = writer(&path, render.clone(), Rotate::Daily, 0);
        let mut batch = Batch::default();
        for e in &entries {
            w.add(&mut batch, e);
        }
        w.write(&mut batch);
        let files = journal_files(&path).unwrap();
        assert_eq!(
            files[0].file_name().unwrap(),
            "txgate-20261130-001.jsonl",
            "{files:?}"
        );
        let per_file = lines_per_file(&path);
        assert_eq!(per_file.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        assert!(per_file[1][0].time.starts_with("2026-12-01T"));
    }
}
