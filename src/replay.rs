//! `txgate replay`: send fixtures to a target (the gateway, or a backend or
//! simulator directly) and compare every answer with the fixture's expected
//! response, field by field.
//!
//! What is compared, for each fixture:
//! - **Header.** The expected header is the request's header overlaid with
//!   the fixture's `response.header` (fixtures list only what differs from
//!   the echo). Every header field of the layout is compared. The echo
//!   fields (code, channel and SeqNo roles: `TranCode`, `ChnlNo`, `SeqNo`)
//!   must always equal the request's.
//! - **Body.** Every field of the response layout: a field the fixture
//!   leaves out is expected blank. Groups are compared record by record
//!   (`PayList[2].PayAmt`); a different number of records is one difference,
//!   and the records both sides have are still compared.
//! - **Volatile fields.** Tags in the fixture's `volatile` list (`TranDate`
//!   and `TranTime` always) are ignored unless the fixture *pins* them.
//!   Pinned means written explicitly in the expected response: a header tag
//!   in `response.header`, a body tag as a key of `response.body` (for a
//!   group's member, a key of that record's table). A volatile entry matches
//!   a tag at any depth, or a full path (`PayList.PayDate`).
//!
//! What is printed (the table, the JUnit file) masks the values of a
//! difference in a sensitive body field or a header field the journal masks
//! (`[journal] mask_header`), and says so; `--reveal` prints them in clear.
//! The comparison itself is on the real values.
//!
//! A fixture is `PASS` when nothing differs, `FAIL` when something does
//! (an answer that does not decode is a difference too), and `ERROR` when
//! no comparison was possible: no schema, a request that does not build, no
//! connection, no answer in time.

use crate::body::{self, fixed, xml::XmlDoc, Record};
use crate::fixture::{Fixture, Format};
use crate::frame::Framing;
use crate::header::{HeaderSpec, HeaderType, Role};
use crate::mask::Masking;
use crate::schema::{Field, FieldType, Schema};
use crate::tools::{self, Schemas};
use futures::StreamExt;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `txgate replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Where to send: the gateway's listener, or a backend (simulator) directly.
    #[arg(long)]
    pub to: SocketAddr,
    /// The config whose header layout, schemas and fixtures folder are used
    /// (without it: the shipped header, ./schemas and ./fixtures).
    #[arg(long, default_value = "gateway.toml")]
    pub config: PathBuf,
    /// Fixture files or folders (recursively); default: the config's fixtures folder.
    pub fixtures: Vec<PathBuf>,
    /// Also write the results as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Fixtures replayed at once, each on its own connection.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// How long to wait for each answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Framing of the target.
    #[arg(long, default_value = "ascii8")]
    pub framing: Framing,
    /// Send a fresh SeqNo instead of the fixture's own (to replay again
    /// against a gateway that remembers SeqNos of non-idempotent routes).
    #[arg(long)]
    pub fresh_seq: bool,
    /// Print sensitive fields in clear: ID numbers, account numbers and
    /// names (default: masked, as in the journal). For a test box only.
    #[arg(long, alias = "show-sensitive")]
    pub reveal: bool,
}

/// Why a replay could not run at all (a fixture that fails is not an
/// error: it is a `FAIL` or `ERROR` row, and `run` returns `Ok(false)`).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Fixture(#[from] crate::fixture::FixtureError),
    #[error("no fixtures found in {0}")]
    NoFixtures(String),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Everything a replay needs, already loaded: the library entry for tests
/// and scripts, so they need not go through the command line.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub to: SocketAddr,
    pub framing: Framing,
    pub header: HeaderSpec,
    pub schemas: Schemas,
    pub fixtures: Vec<Fixture>,
    pub concurrency: usize,
    pub timeout: Duration,
    pub fresh_seq: bool,
    /// Header tags whose differences are printed masked (the journal's `mask_header`).
    pub mask_header: Vec<String>,
    /// Differences in clear (`--reveal`).
    pub reveal: bool,
}

impl ReplayConfig {
    /// A config with the defaults of the command line.
    pub fn new(
        to: SocketAddr,
        header: HeaderSpec,
        schemas: Schemas,
        fixtures: Vec<Fixture>,
    ) -> Self {
        ReplayConfig {
            to,
            framing: Framing::default(),
            header,
            schemas,
            fixtures,
            concurrency: 1,
            timeout: Duration::from_secs(10),
            fresh_seq: false,
            mask_header: crate::journal::JournalConfig::default().mask_header,
            reveal: false,
        }
    }
}

/// The verdict on one fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Error => "ERROR",
        }
    }
}

/// One field that differs: its tag or path, and both values as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub field: String,
    pub expected: String,
    pub actual: String,
    /// Both values are masked, so they may look equal though they differ.
    pub masked: bool,
}

impl Diff {
    fn new(field: impl Into<String>, expected: String, actual: String) -> Diff {
        Diff {
            field: field.into(),
            expected,
            actual,
            masked: false,
        }
    }

    /// A difference between real values, printed as `masked` says.
    fn shown(field: String, expected: &str, actual: &str, masked: bool) -> Diff {
        Diff {
            field,
            expected: Masking::show(masked, expected),
            actual: Masking::show(masked, actual),
            masked,
        }
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: 期望 expected {:?}, 实际 actual {:?}",
            self.field, self.expected, self.actual
        )?;
        if self.masked {
            f.write_str(" (敏感 sensitive; --reveal to show)")?;
        }
        Ok(())
    }
}

/// The result of replaying one fixture.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub code: String,
    pub name: String,
    pub path: PathBuf,
    pub verdict: Verdict,
    pub diffs: Vec<Diff>,
    /// Why there was no comparison (verdict `Error`).
    pub error: Option<String>,
    pub elapsed: Duration,
}

impl Outcome {
    fn error(f: &Fixture, why: String, elapsed: Duration) -> Outcome {
        Outcome {
            code: f.code.clone(),
            name: f.name.clone(),
            path: f.path.clone(),
            verdict: Verdict::Error,
            diffs: Vec::new(),
            error: Some(why),
            elapsed,
        }
    }

    /// `2969/disbursed`: the fixture's folder and file stem.
    pub fn id(&self) -> String {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{}/{stem}", self.code)
    }
}

/// Runs `txgate replay`: loads, replays, prints the table (and writes JUnit);
/// `Ok(true)` when every fixture passed.
pub async fn run(args: ReplayArgs) -> Result<bool, ReplayError> {
    let tools::ToolContext {
        header,
        schemas,
        fixtures: default_fixtures,
        mask_header,
    } = tools::context(&args.config);
    let mut fixtures = Vec::new();
    let sources = if args.fixtures.is_empty() {
        vec![default_fixtures]
    } else {
        args.fixtures.clone()
    };
    for p in &sources {
        if p.is_dir() {
            fixtures.extend(crate::fixture::load_dir(p)?);
        } else {
            fixtures.push(Fixture::load(p)?);
        }
    }
    if fixtures.is_empty() {
        let names: Vec<String> = sources.iter().map(|p| p.display().to_string()).collect();
        return Err(ReplayError::NoFixtures(names.join(", ")));
    }
    let mut cfg = ReplayConfig::new(args.to, header, schemas, fixtures);
    cfg.framing = args.framing;
    cfg.concurrency = args.concurrency.max(1);
    cfg.timeout = Duration::from_millis(args.timeout_ms.max(1));
    cfg.fresh_seq = args.fresh_seq;
    cfg.mask_header = mask_header;
    cfg.reveal = args.reveal;
    let started = Instant::now();
    let outcomes = replay(&cfg).await;
    let elapsed = started.elapsed();
    print!("{}", render_table(&outcomes));
    if let Some(path) = &args.junit {
        let xml = junit_xml(&outcomes, elapsed);
        std::fs::write(path, xml).map_err(|source| ReplayError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(outcomes.iter().all(|o| o.verdict == Verdict::Pass))
}

/// Replays every fixture of `cfg`, at most `concurrency` at once; the
/// outcomes come back in the fixtures' order.
pub async fn replay(cfg: &ReplayConfig) -> Vec<Outcome> {
    let run_tag = run_tag();
    futures::stream::iter(cfg.fixtures.iter().enumerate())
        .map(|(i, f)| replay_one(cfg, f, fresh_seq(&cfg.header, run_tag, i, cfg.fresh_seq)))
        .buffered(cfg.concurrency.max(1))
        .collect()
        .await
}

/// A 6-digit tag of this run (seconds of the day and a bit of the clock),
/// so fresh SeqNos of two runs differ.
fn run_tag() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_secs() * 10 + u64::from(now.subsec_millis() / 100)) % 1_000_000
}

fn fresh_seq(header: &HeaderSpec, tag: u64, i: usize, fresh: bool) -> Option<String> {
    if !fresh {
        return None;
    }
    let width = header.field(Role::Seq).map_or(20, |f| f.width);
    let s = format!("R{tag:06}{i:013}");
    Some(s[s.len().saturating_sub(width)..].to_string())
}

async fn replay_one(cfg: &ReplayConfig, f: &Fixture, seq: Option<String>) -> Outcome {
    let started = Instant::now();
    let Some(schema) = cfg.schemas.get(&f.code) else {
        return Outcome::error(
            f,
            format!("no schema for code {}", f.code),
            started.elapsed(),
        );
    };
    let mut f = f.clone();
    if let (Some(seq), Some(sf)) = (seq, cfg.header.field(Role::Seq)) {
        match f.request_header.iter_mut().find(|(t, _)| t == &sf.tag) {
            Some(slot) => slot.1 = seq,
            None => f.request_header.push((sf.tag.clone(), seq)),
        }
    }
    let xml = f.format == Format::Xml;
    let msg = match tools::fixture_request(&cfg.header, &cfg.schemas, &f, xml) {
        Ok(m) => m,
        Err(e) => return Outcome::error(&f, format!("request: {e}"), started.elapsed()),
    };
    let answer = match tools::send_one(cfg.to, cfg.framing, msg, cfg.timeout).await {
        Ok(a) => a,
        Err(e) => return Outcome::error(&f, format!("{}: {e}", cfg.to), started.elapsed()),
    };
    let masking = Masking {
        header: &cfg.mask_header,
        reveal: cfg.reveal,
    };
    let diffs = match compare(&cfg.header, schema, &f, &answer, masking) {
        Ok(d) => d,
        Err(e) => return Outcome::error(&f, e, started.elapsed()),
    };
    Outcome {
        code: f.code.clone(),
        name: f.name.clone(),
        path: f.path.clone(),
        verdict: if diffs.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        diffs,
        error: None,
        elapsed: started.elapsed(),
    }
}

/// Compares an answer (fixed or XML, detected) with what `fixture` expects,
/// as the module documentation says, on the real values; the differences
/// hold them as `masking` says. `Err` only when the fixture itself cannot
/// give an expectation.
pub fn compare(
    header: &HeaderSpec,
    schema: &Schema,
    fixture: &Fixture,
    answer: &[u8],
    masking: Masking<'_>,
) -> Result<Vec<Diff>, String> {
    let (pinned_head, expected_body) = fixture
        .expected_response(schema)
        .map_err(|e| e.to_string())?;
    let mut diffs = Vec::new();
    let is_xml = body::xml::is_xml(answer);
    // The answer's header values and body, each a difference if undecodable.
    let (actual_head, actual_body): (Vec<(String, String)>, Option<Record>) = if is_xml {
        match XmlDoc::parse(answer) {
            Ok(doc) => {
                let b = if doc.body_is_empty() {
                    Some(Record::new())
                } else {
                    match doc.body(&schema.response) {
                        Ok(b) => Some(b),
                        Err(e) => {
                            diffs.push(undecodable("BODY", &e.to_string()));
                            None
                        }
                    }
                };
                (doc.head_values().to_vec(), b)
            }
            Err(e) => {
                diffs.push(undecodable("XML", &e.to_string()));
                return Ok(diffs);
            }
        }
    } else {
        match header.values(answer) {
            Ok(h) => {
                let b = if answer.len() <= header.length() {
                    Some(Record::new())
                } else {
                    match fixed::decode(&schema.response, answer, header.length()) {
                        Ok(b) => Some(b),
                        Err(e) => {
                            diffs.push(undecodable("BODY", &e.to_string()));
                            None
                        }
                    }
                };
                (h, b)
            }
            Err(e) => {
                diffs.push(undecodable("HEAD", &e.to_string()));
                return Ok(diffs);
            }
        }
    };

    // Header: request head overlaid with response.header.
    let mut expected_head = fixture.request_head(header);
    for (t, v) in &pinned_head {
        match expected_head.iter_mut().find(|(tag, _)| tag == t) {
            Some(slot) => slot.1 = v.clone(),
            None => expected_head.push((t.clone(), v.clone())),
        }
    }
    let echo = [Role::Code, Role::Channel, Role::Seq];
    for f in header.fields() {
        let is_echo = f.role.is_some_and(|r| echo.contains(&r));
        let pinned = pinned_head.iter().any(|(t, _)| t == &f.tag);
        if !is_echo && !pinned && is_volatile(&fixture.volatile, &f.tag, &f.tag) {
            continue;
        }
        let get = |vals: &[(String, String)]| -> String {
            vals.iter()
                .find(|(t, _)| t == &f.tag)
                .map(|(_, v)| v.trim_end().to_string())
                .unwrap_or_default()
        };
        let (e, a) = (get(&expected_head), get(&actual_head));
        let same = match f.kind {
            HeaderType::N => e.trim_start_matches('0') == a.trim_start_matches('0'),
            HeaderType::C => e == a,
        };
        if !same {
            diffs.push(Diff::shown(
                f.tag.clone(),
                &e,
                &a,
                masking.masks_header(&f.tag),
            ));
        }
    }

    // Body.
    if let Some(actual_body) = actual_body {
        let has_values = |r: &Record| {
            r.fields.iter().any(|(_, v)| match v {
                body::Value::Text(t) => !t.is_empty(),
                body::Value::Group(g) => !g.is_empty(),
            })
        };
        if actual_body.fields.is_empty() && has_values(&expected_body) {
            // A bodiless answer (a rejection, most often): one difference,
            // not one per field.
            diffs.push(Diff::new(
                "BODY",
                format!("{} 个字段 fields", expected_body.fields.len()),
                "（空报文体 empty body）".into(),
            ));
        } else if expected_body.fields.is_empty() && !actual_body.fields.is_empty() {
            diffs.push(Diff::new(
                "BODY",
                "（空报文体 empty body）".into(),
                format!("{} 个字段 fields", actual_body.fields.len()),
            ));
        } else {
            let ctx = BodyCmp {
                volatile: &fixture.volatile,
                masking,
            };
            ctx.record(
                schema.response.fields(),
                &expected_body,
                &actual_body,
                Some(&fixture.response_body),
                "",
                "",
                &mut diffs,
            );
        }
    }
    Ok(diffs)
}

fn undecodable(part: &str, why: &str) -> Diff {
    Diff::new(part, "可解码的应答 a decodable answer".into(), why.into())
}

/// Whether a volatile list names a field, by tag or by full path (record
/// indexes left out: `PayList.PayDate`).
fn is_volatile(volatile: &[String], tag: &str, plain_path: &str) -> bool {
    volatile.iter().any(|v| v == tag || v == plain_path)
}

/// The settings of one body comparison.
struct BodyCmp<'a> {
    volatile: &'a [String],
    masking: Masking<'a>,
}

impl BodyCmp<'_> {
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        fields: &[Field],
        expected: &Record,
        actual: &Record,
        pins: Option<&toml::Table>,
        prefix: &str,
        plain_prefix: &str,
        diffs: &mut Vec<Diff>,
    ) {
        for f in fields {
            let p = body::path(prefix, &f.tag);
            let plain = body::path(plain_prefix, &f.tag);
            let pinned = pins.is_some_and(|t| t.contains_key(&f.tag));
            if !pinned && is_volatile(self.volatile, &f.tag, &plain) {
                continue;
            }
            if f.kind == FieldType::Group {
                let e = expected.group(&f.tag).unwrap_or_default();
                let a = actual.group(&f.tag).unwrap_or_default();
                if e.len() != a.len() {
                    diffs.push(Diff::new(
                        p.clone(),
                        format!("{} 条记录 records", e.len()),
                        format!("{} 条记录 records", a.len()),
                    ));
                }
                let record_pins = pins
                    .and_then(|t| t.get(&f.tag))
                    .and_then(toml::Value::as_array);
                for (i, (er, ar)) in e.iter().zip(a).enumerate() {
                    let rp = record_pins
                        .and_then(|arr| arr.get(i))
                        .and_then(toml::Value::as_table);
                    self.record(&f.fields, er, ar, rp, &body::index(&p, i), &plain, diffs);
                }
                continue;
            }
            let e = expected.text(&f.tag).unwrap_or("");
            let a = actual.text(&f.tag).unwrap_or("");
            if e != a {
                let masked = self.masking.masks_field(Some(f));
                diffs.push(Diff::shown(p, e, a, masked));
            }
        }
    }
}

/// The table `txgate replay` prints: one row per fixture (code, name,
/// result), its differences indented below, then the totals.
pub fn render_table(outcomes: &[Outcome]) -> String {
    let width = |s: &str| body::display_width(s);
    let id_w = outcomes
        .iter()
        .map(|o| width(&o.id()))
        .max()
        .unwrap_or(0)
        .max(12);
    let name_w = outcomes
        .iter()
        .map(|o| width(&o.name))
        .max()
        .unwrap_or(0)
        .max(4);
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(width(s))));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {}  result",
        pad("code/fixture", id_w),
        pad("name", name_w)
    );
    for o in outcomes {
        let _ = writeln!(
            out,
            "{}  {}  {}",
            pad(&o.id(), id_w),
            pad(&o.name, name_w),
            o.verdict.as_str()
        );
        if let Some(e) = &o.error {
            let _ = writeln!(out, "    {e}");
        }
        for d in &o.diffs {
            let _ = writeln!(out, "    {d}");
        }
    }
    let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
    let _ = writeln!(
        out,
        "{} fixtures: {} passed, {} failed, {} errors",
        outcomes.len(),
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Error)
    );
    let duplicate = outcomes
        .iter()
        .flat_map(|o| &o.diffs)
        .any(|d| d.actual == crate::error::RspCode::DuplicateSeq.as_str());
    if duplicate {
        out.push_str(
            "hint: GW0103 (流水号重复) means the target has seen these SeqNos; \
             replay again with --fresh-seq\n",
        );
    }
    out
}

/// The outcomes as JUnit XML: one `testsuite`, one `testcase` per fixture,
/// with a `failure` (differences) or an `error` (no comparison) child.
/// Written with quick-xml, so every name and message is escaped.
pub fn junit_xml(outcomes: &[Outcome], elapsed: Duration) -> Vec<u8> {
    use quick_xml::events::{BytesDecl, Event};
    use quick_xml::Writer;
    let count = |v: Verdict| {
        outcomes
            .iter()
            .filter(|o| o.verdict == v)
            .count()
            .to_string()
    };
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing to a Vec cannot fail; any io error is impossible here.
    let result: std::io::Result<()> = (|| {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        let (tests, failures, errors) = (
            outcomes.len().to_string(),
            count(Verdict::Fail),
            count(Verdict::Error),
        );
        let time = format!("{:.3}", elapsed.as_secs_f64());
        w.create_element("testsuites")
            .with_attribute(("name", "txgate replay"))
            .with_attribute(("tests", tests.as_str()))
            .with_attribute(("failures", failures.as_str()))
            .with_attribute(("errors", errors.as_str()))
            .with_attribute(("time", time.as_str()))
            .write_inner_content(|w| {
                w.create_element("testsuite")
                    .with_attribute(("name", "txgate replay"))
                    .with_attribute(("tests", tests.as_str()))
                    .with_attribute(("failures", failures.as_str()))
                    .with_attribute(("errors", errors.as_str()))
                    .with_attribute(("skipped", "0"))
                    .with_attribute(("time", time.as_str()))
                    .write_inner_content(|w| {
                        for o in outcomes {
                            junit_testcase(w, o)?;
                        }
                        Ok(())
                    })?;
                Ok(())
            })?;
        Ok(())
    })();
    debug_assert!(result.is_ok());
    let mut out = w.into_inner();
    out.push(b'\n');
    out
}

/// One `testcase` element of [`junit_xml`].
fn junit_testcase(w: &mut quick_xml::Writer<Vec<u8>>, o: &Outcome) -> std::io::Result<()> {
    use quick_xml::events::BytesText;
    let classname = format!("txgate.replay.{}", o.code);
    let name = format!("{}: {}", o.id(), o.name);
    let time = format!("{:.3}", o.elapsed.as_secs_f64());
    let el = w
        .create_element("testcase")
        .with_attribute(("classname", classname.as_str()))
        .with_attribute(("name", name.as_str()))
        .with_attribute(("file", o.path.display().to_string().as_str()))
        .with_attribute(("time", time.as_str()));
    match o.verdict {
        Verdict::Pass => {
            el.write_empty()?;
        }
        Verdict::Fail => {
            let message = match o.diffs.as_slice() {
                [one] => one.to_string(),
                many => format!(
                    "{} 个字段不同 fields differ: {}",
                    many.len(),
                    many.iter()
                        .map(|d| d.field.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let text: String = o.diffs.iter().map(|d| format!("{d}\n")).collect();
            el.write_inner_content(|w| {
                w.create_element("failure")
                    .with_attribute(("message", message.as_str()))
                    .with_attribute(("type", "mismatch"))
                    .write_text_content(BytesText::new(&text))?;
                Ok(())
            })?;
        }
        Verdict::Error => {
            let message = o.error.clone().unwrap_or_default();
            el.write_inner_content(|w| {
                w.create_element("error")
                    .with_attribute(("message", message.as_str()))
                    .with_attribute(("type", "error"))
                    .write_text_content(BytesText::new(&message))?;
                Ok(())
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(v: Verdict) -> Outcome {
        Outcome {
            code: "2969".into(),
            name: "放贷 <&> \"q\"".into(),
            path: PathBuf::from("fixtures/2969/a.toml"),
            verdict: v,
            diffs: if v == Verdict::Fail {
                vec![Diff::new("LoanStatus", "1".into(), "<2>".into())]
            } else {
                Vec::new()
            },
            error: (v == Verdict::Error).then(|| "no answer & closed".to_string()),
            elapsed: Duration::from_millis(3),
        }
    }

    #[test]
    fn junit_escapes_and_counts() {
        let all = [
            outcome(Verdict::Pass),
            outcome(Verdict::Fail),
            outcome(Verdict::Error),
        ];
        let xml = String::from_utf8(junit_xml(&all, Duration::from_secs(1))).unwrap();
        assert!(xml.contains("tests=\"3\""), "{xml}");
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(xml.contains("errors=\"1\""), "{xml}");
        assert!(xml.contains("&lt;&amp;&gt;"), "{xml}");
        assert!(!xml.contains("<2>"), "{xml}");
        assert_eq!(xml.matches("<testcase").count(), 3);
    }

    #[test]
    fn table_names_the_field() {
        let t = render_table(&[outcome(Verdict::Fail)]);
        assert!(t.contains("FAIL") && t.contains("LoanStatus"), "{t}");
        assert!(t.contains("1 failed"), "{t}");
    }

    #[test]
    fn masked_differences_say_so_in_the_table_and_junit() {
        let mut o = outcome(Verdict::Fail);
        o.diffs = vec![Diff::shown(
            "IdNo".into(),
            "110101199001011234",
            "110101199001019934",
            true,
        )];
        let d = &o.diffs[0];
        assert_eq!(
            (d.expected.as_str(), d.actual.as_str()),
            ("1****************4", "1****************4")
        );
        let table = render_table(std::slice::from_ref(&o));
        let xml = String::from_utf8(junit_xml(std::slice::from_ref(&o), Duration::ZERO)).unwrap();
        for text in [&table, &xml] {
            assert!(
                text.contains("IdNo") && text.contains("--reveal to show"),
                "{text}"
            );
            assert!(!text.contains("1101011990"), "{text}");
        }
        o.diffs = vec![Diff::shown("IdNo".into(), "110101199001011234", "1", false)];
        let table = render_table(&[o]);
        assert!(
            table.contains("110101199001011234") && !table.contains("--reveal"),
            "{table}"
        );
    }

    #[test]
    fn volatile_matches_tag_or_plain_path() {
        let v = vec!["PayList.PayDate".to_string(), "TranTime".to_string()];
        assert!(is_volatile(&v, "PayDate", "PayList.PayDate"));
        assert!(!is_volatile(&v, "PayDate", "Other.PayDate"));
        assert!(is_volatile(&v, "TranTime", "TranTime"));
    }

    #[test]
    fn fresh_seq_fits_the_field() {
        let h = HeaderSpec::builtin();
        let s = fresh_seq(&h, 123456, 7, true).unwrap();
        assert_eq!(s.len(), 20);
        assert!(s.ends_with("0000000000007"), "{s}");
        assert_eq!(fresh_seq(&h, 1, 1, false), None);
    }
}
