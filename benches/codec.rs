//! Codec micro-benchmarks (`make bench`), on a realistic message: the 2969
//! 放贷结果查询 answer built from `fixtures/2969/disbursed.toml` (200-byte
//! header + 418-byte fixed body, about 600 bytes, GBK Chinese names), the
//! message of the catalog's performance scenario.
//!
//! Three ways to run this binary:
//! - `cargo bench --bench codec` (cargo passes `--bench`): criterion;
//! - `cargo test --all-targets` (no `--bench`): every operation once,
//!   checked, so `make test` proves the harness builds and works without
//!   spending time measuring (and without criterion rejecting libtest flags
//!   such as `--test-threads`);
//! - `TXGATE_CALLGRIND=OP:N` (`benches/callgrind.sh`): OP repeated N times
//!   and nothing else, for instruction counts under valgrind.
//!
//! The `journal` group measures the transaction journal's per-record work
//! on the 2969 request: `capture` (what the message path copies before
//! queueing) and `render` (the JSON line the writer thread appends), with
//! the shipped `[journal]` settings, and `render_body` with body fields and
//! the masked body as well.
#![forbid(unsafe_code)]

use bytes::{Bytes, BytesMut};
use criterion::{black_box, BatchSize, Criterion, Throughput};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};
use tokio_util::codec::Decoder;
use txgate::body::{self, fixed, xml, Record};
use txgate::config::RawConfig;
use txgate::fixture::Fixture;
use txgate::frame::{FrameCodec, Framing};
use txgate::header::HeaderSpec;
use txgate::journal::{BodyMode, JournalConfig, JournalRecord, RenderBench};
use txgate::observe::TxnEvent;
use txgate::schema::Schema;
use txgate::snapshot::Snapshot;

/// The messages and layouts every benchmark works on, built once.
struct Msgs {
    header: HeaderSpec,
    schema: Schema,
    /// The fixed answer, without length prefix.
    fixed: Vec<u8>,
    /// The same answer framed (`ascii8`).
    framed: Vec<u8>,
    /// The XML form of the answer.
    xml: Vec<u8>,
    head: Vec<(String, String)>,
    body: Record,
    /// The fixed 2969 request, as the journal sees it.
    request: Vec<u8>,
    peer: SocketAddr,
    time: SystemTime,
    /// The journal with the shipped settings, and with body fields and the masked body.
    journal: RenderBench,
    journal_body: RenderBench,
}

/// The event the gateway reports for a 2969 answered by SCF.
fn txn_event(m: &Msgs) -> TxnEvent<'_> {
    event_of(&m.request, &m.schema, m.peer, m.time)
}

fn event_of<'a>(
    request: &'a [u8],
    schema: &'a Schema,
    peer: SocketAddr,
    time: SystemTime,
) -> TxnEvent<'a> {
    TxnEvent {
        time,
        listener: "main",
        peer,
        channel: b"CUS",
        code: b"2969",
        seq: b"CUS20261204000000001",
        date: b"20261204",
        dest: b"SCF",
        backend: Some("SCF"),
        latency: Duration::from_micros(850),
        rsp_code: "000000",
        bytes_in: request.len() + 8,
        bytes_out: 626,
        error: None,
        request,
        schema: Some(schema),
    }
}

fn msgs() -> Msgs {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = HeaderSpec::load(&root.join("schemas/header.toml")).unwrap_or_else(|e| {
        panic!("schemas/header.toml: {e}");
    });
    let schema = Schema::load(&root.join("schemas/2969.toml"))
        .unwrap_or_else(|e| panic!("schemas/2969.toml: {e}"));
    let fx = Fixture::load(&root.join("fixtures/2969/disbursed.toml"))
        .unwrap_or_else(|e| panic!("fixture: {e}"));
    let req = fx
        .request_message(&header, &schema, false)
        .unwrap_or_else(|e| panic!("request: {e}"));
    let fixed = fx
        .response_message(&header, &schema, &req, false)
        .unwrap_or_else(|e| panic!("response: {e}"));
    let xml_req = fx
        .request_message(&header, &schema, true)
        .unwrap_or_else(|e| panic!("xml request: {e}"));
    let xml = fx
        .response_message(&header, &schema, &xml_req, true)
        .unwrap_or_else(|e| panic!("xml response: {e}"));
    let framed = Framing::default()
        .frame(&fixed)
        .unwrap_or_else(|e| panic!("frame: {e}"));
    let head = header
        .values(&fixed)
        .unwrap_or_else(|e| panic!("values: {e}"));
    let body = fixed::decode(&schema.response, &fixed, header.length())
        .unwrap_or_else(|e| panic!("decode: {e}"));
    let raw = RawConfig::load(&root.join("gateway.toml")).unwrap_or_else(|e| panic!("{e}"));
    let shipped = raw.journal.clone();
    let snap = Snapshot::build(raw, None).unwrap_or_else(|e| panic!("{e}"));
    let peer: SocketAddr = "10.12.201.37:52814"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let time = SystemTime::now();
    let journal_of = |cfg: &JournalConfig| {
        RenderBench::new(cfg, &snap, &event_of(&req, &schema, peer, time))
            .unwrap_or_else(|e| panic!("journal: {e}"))
    };
    let journal = journal_of(&shipped);
    let journal_body = journal_of(&JournalConfig {
        body_fields: vec!["LoanAppNo".into(), "CustName".into()],
        body: BodyMode::Masked,
        ..shipped.clone()
    });
    Msgs {
        header,
        schema,
        fixed,
        framed,
        xml,
        head,
        body,
        request: req,
        peer,
        time,
        journal,
        journal_body,
    }
}

/// The operations, by name, as the callgrind mode and the smoke test run them.
const OPS: [&str; 13] = [
    "frame-decode",
    "header-check",
    "header-parse",
    "header-values",
    "fixed-decode",
    "fixed-encode",
    "xml-decode",
    "xml-encode",
    "xml-to-fixed",
    "fixed-to-xml",
    "journal-capture",
    "journal-render",
    "journal-render-body",
];

/// Runs one operation once; returns a size so the optimizer keeps the work.
fn run_op(m: &Msgs, op: &str, out: &mut Vec<u8>) -> usize {
    let h = &m.header;
    let layout = &m.schema.response;
    match op {
        "frame-decode" => {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::from(&m.framed[..]);
            codec.decode(&mut buf).ok().flatten().map_or(0, |b| b.len())
        }
        "header-check" => usize::from(h.check(black_box(&m.fixed)).is_ok()),
        "header-parse" => h
            .parse(Bytes::copy_from_slice(&m.fixed))
            .map_or(0, |p| p.message().len()),
        "header-values" => h.values(black_box(&m.fixed)).map_or(0, |v| v.len()),
        "fixed-decode" => {
            fixed::decode(layout, black_box(&m.fixed), h.length()).map_or(0, |b| b.fields.len())
        }
        "fixed-encode" => {
            out.clear();
            out.extend_from_slice(&m.fixed[..h.length()]);
            fixed::encode(layout, black_box(&m.body), out).map_or(0, |()| out.len())
        }
        "xml-decode" => xml::XmlDoc::parse(black_box(&m.xml))
            .and_then(|d| d.body(layout))
            .map_or(0, |b| b.fields.len()),
        "xml-encode" => {
            xml::encode(h, black_box(&m.head), layout, black_box(&m.body)).map_or(0, |v| v.len())
        }
        "xml-to-fixed" => body::xml_to_fixed(h, layout, black_box(&m.xml)).map_or(0, |v| v.len()),
        "fixed-to-xml" => body::fixed_to_xml(h, layout, black_box(&m.fixed)).map_or(0, |v| v.len()),
        "journal-capture" => m.journal.capture(black_box(&txn_event(m))),
        "journal-render" => {
            out.clear();
            m.journal.render(out);
            out.len()
        }
        "journal-render-body" => {
            out.clear();
            m.journal_body.render(out);
            out.len()
        }
        _ => 0,
    }
}

fn criterion_benches(c: &mut Criterion, m: &Msgs) {
    let h = &m.header;
    let layout = &m.schema.response;

    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(m.framed.len() as u64));
    g.bench_function("decode", |b| {
        let mut codec = FrameCodec::default();
        b.iter_batched_ref(
            || BytesMut::from(&m.framed[..]),
            |buf| codec.decode(buf).ok().flatten(),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Bytes(h.length() as u64));
    g.bench_function("check", |b| b.iter(|| h.check(black_box(&m.fixed))));
    let shared = Bytes::copy_from_slice(&m.fixed);
    g.bench_function("parse", |b| {
        b.iter(|| h.parse(black_box(shared.clone())).is_ok())
    });
    g.bench_function("values", |b| b.iter(|| h.values(black_box(&m.fixed))));
    g.finish();

    let mut g = c.benchmark_group("fixed");
    g.throughput(Throughput::Bytes(m.fixed.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| fixed::decode(layout, black_box(&m.fixed), h.length()))
    });
    // What the gateway's hot path runs on every request and answer.
    g.bench_function("validate", |b| {
        b.iter(|| fixed::validate(layout, black_box(&m.fixed), h.length()))
    });
    let mut out = Vec::with_capacity(1024);
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(&m.fixed[..h.length()]);
            fixed::encode(layout, black_box(&m.body), &mut out)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("xml");
    g.throughput(Throughput::Bytes(m.xml.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| xml::XmlDoc::parse(black_box(&m.xml)).and_then(|d| d.body(layout)))
    });
    g.bench_function("encode", |b| {
        b.iter(|| xml::encode(h, black_box(&m.head), layout, black_box(&m.body)))
    });
    g.finish();

    let mut g = c.benchmark_group("transcode");
    g.throughput(Throughput::Bytes(m.fixed.len() as u64));
    g.bench_function("xml_to_fixed", |b| {
        b.iter(|| body::xml_to_fixed(h, layout, black_box(&m.xml)))
    });
    g.bench_function("fixed_to_xml", |b| {
        b.iter(|| body::fixed_to_xml(h, layout, black_box(&m.fixed)))
    });
    g.finish();

    let mut g = c.benchmark_group("journal");
    g.throughput(Throughput::Elements(1));
    let event = txn_event(m);
    g.bench_function("capture", |b| {
        b.iter(|| m.journal.capture(black_box(&event)))
    });
    let mut out = Vec::with_capacity(1 << 16);
    g.bench_function("render", |b| {
        b.iter(|| {
            out.clear();
            m.journal.render(&mut out);
            out.len()
        })
    });
    g.bench_function("render_body", |b| {
        b.iter(|| {
            out.clear();
            m.journal_body.render(&mut out);
            out.len()
        })
    });
    g.finish();
}

fn main() {
    let m = msgs();
    let mut out = Vec::with_capacity(1024);

    if let Ok(spec) = std::env::var("TXGATE_CALLGRIND") {
        let (op, n) = spec.split_once(':').unwrap_or((spec.as_str(), "1000"));
        let Ok(n) = n.parse::<u64>() else {
            eprintln!("TXGATE_CALLGRIND={spec}: expected OP:N");
            std::process::exit(2);
        };
        if !OPS.contains(&op) {
            eprintln!(
                "TXGATE_CALLGRIND: unknown op {op}; one of {}",
                OPS.join(", ")
            );
            std::process::exit(2);
        }
        let mut sum = 0usize;
        for _ in 0..n {
            sum = sum.wrapping_add(run_op(&m, op, &mut out));
        }
        println!("{op} × {n}: {}", black_box(sum));
        return;
    }

    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test`: each operation once, and it must do its work.
        println!(
            "codec bench smoke test: fixed answer {} bytes, XML answer {} bytes",
            m.fixed.len(),
            m.xml.len()
        );
        for op in OPS {
            let n = run_op(&m, op, &mut out);
            assert!(n > 0, "{op} failed on the 2969 answer");
            if op.starts_with("journal-render") {
                // The line must read back as `txgate journal` reads it.
                let line = String::from_utf8_lossy(&out);
                if let Err(e) = serde_json::from_str::<JournalRecord>(&line) {
                    panic!("{op}: {e}: {line}");
                }
                println!("  {op}: ok: {}", line.trim_end());
            } else {
                println!("  {op}: ok");
            }
        }
        return;
    }

    println!(
        "2969 answer: {} bytes fixed (header {} + body {}), {} bytes XML",
        m.fixed.len(),
        m.header.length(),
        m.fixed.len() - m.header.length(),
        m.xml.len()
    );
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &m);
    c.final_summary();
}
