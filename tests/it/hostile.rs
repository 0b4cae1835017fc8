//! Hostile callers: random and mutated frames through a live gateway over
//! real sockets.
//!
//! Valid requests from `fixtures/` (fixed and XML forms) are framed, then
//! mutated (bytes flipped, set, inserted; truncated and extended; GBK lead
//! bytes and 0x80–0xFF bytes put in header fields; XML-ified and given a
//! DOCTYPE, deep nesting, a huge attribute, an unclosed tag, entities), the
//! length prefix corrupted, and the bytes delivered whole, byte by byte or
//! in random pieces, then the write side is closed. For every case:
//!
//! - the gateway answers exactly what a model of the framing says it must
//!   (one answer per whole frame, an echo per heartbeat, one GW0001/GW0002
//!   when the length field is bad, nothing for a partial frame cut by EOF),
//!   every answer a valid frame whose header (fixed or XML) parses, with a
//!   RspCode, in the caller's form; then it closes the connection, within
//!   a timeout;
//! - a fresh well-formed caller then gets `000000` for 2969 from CUS;
//! - no thread of the gateway's runtime panicked (a panic in a connection
//!   task only closes that connection, so a panic hook counts them).
//!
//! At the end every message a backend received must be well formed, the
//! gateway still answers and stops cleanly.

use crate::support::*;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use txgate::body::xml::{is_xml, XmlDoc};
use txgate::fixture::Fixture;
use txgate::frame::{FrameCodec, FrameError, Framing, LengthField, DEFAULT_MAX_BODY};
use txgate::header::{trim, HeaderSpec, HeaderType, Role};

/// How long one hostile case may take to be answered and closed.
const CASE_TIMEOUT: Duration = Duration::from_secs(10);

// ---- panics on the gateway's threads -----------------------------------

/// Prefix of the names of the threads that run a hostile test's gateway.
const WORKER: &str = "hostile-gw";

/// The message of the deliberate panic of `the_panic_hook_sees_a_panic_in_a_spawned_task`
/// (not printed).
const SELF_TEST_PANIC: &str = "hostile self-test panic";

/// Messages of panics seen on gateway threads, with the thread's name.
static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn install_panic_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let msg = info.to_string();
            if let Some(name) = thread.name().filter(|n| n.starts_with(WORKER)) {
                if let Ok(mut p) = PANICS.lock() {
                    p.push((name.to_string(), msg.clone()));
                }
            }
            if !msg.contains(SELF_TEST_PANIC) {
                previous(info);
            }
        }));
    });
}

/// A multi-threaded runtime whose threads are named `hostile-gw-<test>`:
/// the gateway's tasks run there, the test's own code on the test thread.
fn runtime(test: &str) -> (tokio::runtime::Runtime, String) {
    install_panic_hook();
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{WORKER}-{test}-{}", N.fetch_add(1, Ordering::Relaxed));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name.clone())
        .enable_all()
        .build()
        .expect("runtime");
    (rt, name)
}

/// Panics seen so far on threads of the runtime named `name`.
fn panics_on(name: &str) -> Vec<String> {
    PANICS
        .lock()
        .map(|p| {
            p.iter()
                .filter(|(t, _)| t == name)
                .map(|(_, m)| m.clone())
                .collect()
        })
        .unwrap_or_default()
}

// ---- the world a case runs in ------------------------------------------

/// A valid request to mutate.
#[derive(Debug, Clone)]
struct Base {
    name: String,
    msg: Vec<u8>,
}

struct World {
    rt: tokio::runtime::Runtime,
    threads: String,
    gw: Option<TestGateway>,
    framing: Framing,
    header: HeaderSpec,
    schemas: &'static txgate::tools::Schemas,
    bases: Vec<Base>,
    probe: Fixture,
    cases: AtomicUsize,
    /// What the cases led to: answer codes, heartbeats, partial frames, resets.
    seen: Mutex<BTreeMap<String, usize>>,
}

impl World {
    fn new(test: &str, framing: Framing) -> World {
        let (rt, threads) = runtime(test);
        let mut raw = shipped_config();
        for l in &mut raw.listeners {
            l.framing = framing;
        }
        let gw = rt.block_on(TestGateway::start_with(raw));
        let header = header();
        let schemas = schemas();
        let mut bases = Vec::new();
        for f in fixtures() {
            for xml in [false, true] {
                // Not every fixture has both forms; those that build are enough.
                if let Ok(msg) = txgate::tools::fixture_request(&header, schemas, &f, xml) {
                    let form = if xml { "xml" } else { "fixed" };
                    bases.push(Base {
                        name: format!("{} {form}", f.path.display()),
                        msg,
                    });
                }
            }
        }
        assert!(
            bases.len() > 40,
            "fixtures give {} base requests",
            bases.len()
        );
        let probe = fixture("2969", |f| {
            f.format == txgate::fixture::Format::Fixed
                && f.request_header
                    .iter()
                    .any(|(t, v)| t == "ChnlNo" && v == "CUS")
        });
        World {
            rt,
            threads,
            gw: Some(gw),
            framing,
            header,
            schemas,
            bases,
            probe,
            cases: AtomicUsize::new(0),
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    fn gw(&self) -> &TestGateway {
        self.gw.as_ref().expect("gateway running")
    }

    fn addr(&self) -> SocketAddr {
        self.gw().addr
    }

    fn codec(&self) -> FrameCodec {
        FrameCodec::new(self.framing, DEFAULT_MAX_BODY)
    }

    /// A well-formed 2969 request from CUS with a fresh SeqNo.
    fn probe_request(&self) -> Vec<u8> {
        let mut f = self.probe.clone();
        let seq = next_seq("H");
        match f.request_header.iter_mut().find(|(t, _)| t == "SeqNo") {
            Some(slot) => slot.1 = seq,
            None => f.request_header.push(("SeqNo".into(), seq)),
        }
        txgate::tools::fixture_request(&self.header, self.schemas, &f, false)
            .expect("probe request builds")
    }

    /// A fresh caller gets 000000 for 2969 from CUS.
    async fn probe(&self) -> Result<(), String> {
        let framed = self
            .framing
            .frame(&self.probe_request())
            .expect("probe frames");
        let out = exchange(self.addr(), vec![framed]).await?;
        let frames = self.split(&out.bytes)?;
        match frames.as_slice() {
            [answer] if self.rsp_code(answer) == "000000" => Ok(()),
            [answer] => Err(format!(
                "the probe got {} {}",
                self.rsp_code(answer),
                rsp_msg(answer)
            )),
            other => Err(format!("the probe got {} frames", other.len())),
        }
    }

    fn rsp_code(&self, answer: &[u8]) -> String {
        if self.is_xml_answer(answer) {
            return XmlDoc::parse(answer)
                .ok()
                .and_then(|d| d.head("RspCode").map(str::to_string))
                .unwrap_or_default();
        }
        answer
            .get(self.header.range(Role::RspCode))
            .map(|b| String::from_utf8_lossy(trim(b)).into_owned())
            .unwrap_or_default()
    }

    /// The answers in `bytes`, which must be whole frames.
    fn split(&self, bytes: &[u8]) -> Result<Vec<Bytes>, String> {
        // Answers echo the request header; an XML answer echoes HEAD values
        // of any length, so allow more than a request may carry.
        let mut codec = FrameCodec::new(self.framing, 64 << 20);
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) if buf.is_empty() => return Ok(frames),
                Ok(None) => {
                    return Err(format!(
                        "{} bytes of a partial answer frame after {} answers: {:02X?}",
                        buf.len(),
                        frames.len(),
                        &buf[..buf.len().min(32)]
                    ))
                }
                Err(e) => return Err(format!("answers are not framed: {e}")),
            }
        }
    }

    /// Checks one answer: a valid message in `form`, with a response code.
    /// Whether an answer is in XML form. A fixed rejection echoes the
    /// caller's header with its non-GBK fields blanked, so it may start with
    /// spaces and `<` without being XML: such a header-only answer counts as
    /// fixed when it does not parse as XML.
    fn is_xml_answer(&self, answer: &[u8]) -> bool {
        is_xml(answer) && (answer.len() != self.header.length() || XmlDoc::parse(answer).is_ok())
    }

    fn check_answer(&self, answer: &[u8]) -> Result<(), String> {
        if self.is_xml_answer(answer) {
            let doc = XmlDoc::parse(answer).map_err(|e| format!("XML answer: {e}"))?;
            match doc.head("RspCode") {
                Some(c) if !c.is_empty() => Ok(()),
                _ => Err("XML answer without RspCode".into()),
            }
        } else {
            self.header
                .check(answer)
                .map_err(|e| format!("answer header does not parse: {e}"))?;
            if self.rsp_code(answer).is_empty() {
                return Err("answer without RspCode".into());
            }
            Ok(())
        }
    }

    /// Runs one case and checks everything a case must satisfy.
    fn run(&self, case: &Case) -> Result<(), TestCaseError> {
        let writes = case.writes(self);
        let stream: Vec<u8> = writes.concat();
        let expect = model(self.codec(), &stream);
        let panics_before = panics_on(&self.threads).len();
        let fail = |what: String| {
            TestCaseError::fail(format!(
                "{what}\n  base: {}\n  stream: {} bytes, starts {:02X?}",
                self.bases[case.base.index(self.bases.len())].name,
                stream.len(),
                &stream[..stream.len().min(48)]
            ))
        };
        let result = self.rt.block_on(async {
            let out = exchange(self.addr(), writes).await?;
            let answers = self.split(&out.bytes)?;
            let (beats, msgs): (Vec<_>, Vec<_>) = answers.iter().partition(|a| a.is_empty());
            for a in &msgs {
                self.check_answer(a)
                    .map_err(|e| format!("{e}; answer {:02X?}", &a[..a.len().min(64)]))?;
            }
            let wanted = expect.requests.len() + usize::from(expect.bad.is_some());
            self.tally(&out, &expect, &msgs, &stream);
            if out.reset {
                // After a bad length field the gateway drains what the
                // caller still sends (16 MiB at most; the cases send less)
                // and closes gracefully: a reset could lose the answers.
                return Err(format!(
                    "the connection was reset{}",
                    if expect.bad.is_some() {
                        " after a bad length field"
                    } else {
                        ", though the stream was well framed"
                    }
                ));
            }
            {
                if beats.len() != expect.heartbeats {
                    return Err(format!(
                        "{} heartbeat echoes for {} heartbeats",
                        beats.len(),
                        expect.heartbeats
                    ));
                }
                if msgs.len() != wanted {
                    return Err(format!(
                        "{} answers for {} requests{} ({:?})",
                        msgs.len(),
                        expect.requests.len(),
                        if expect.bad.is_some() {
                            " and a bad length field"
                        } else {
                            ""
                        },
                        msgs.iter().map(|m| self.rsp_code(m)).collect::<Vec<_>>()
                    ));
                }
                if let Some(code) = expect.bad {
                    if !msgs.iter().any(|m| self.rsp_code(m) == code) {
                        return Err(format!("no {code} for the bad length field"));
                    }
                }
                // Answers come in the caller's form (the bad-length answer
                // takes the form of whatever bytes were buffered).
                let xml_in = expect.requests.iter().filter(|r| is_xml(r)).count();
                let xml_out = msgs.iter().filter(|m| self.is_xml_answer(m)).count();
                let extra = usize::from(expect.bad.is_some());
                if xml_out < xml_in || xml_out > xml_in + extra {
                    return Err(format!("{xml_out} XML answers for {xml_in} XML requests"));
                }
            }
            self.probe().await
        });
        self.cases.fetch_add(1, Ordering::Relaxed);
        result.map_err(fail)?;
        let panics = panics_on(&self.threads);
        if panics.len() > panics_before {
            return Err(fail(format!(
                "the gateway panicked: {}",
                panics[panics_before..].join("\n")
            )));
        }
        Ok(())
    }

    fn tally(&self, out: &Exchange, expect: &Expect, msgs: &[&Bytes], stream: &[u8]) {
        let mut seen = self.seen.lock().expect("tally");
        let mut add = |k: String| *seen.entry(k).or_default() += 1;
        for m in msgs {
            add(format!("answer {}", self.rsp_code(m)));
        }
        if expect.heartbeats > 0 {
            add("heartbeats".into());
        }
        if let Some(code) = expect.bad {
            add(format!("bad length field {code}"));
        } else if model_left(self.codec(), stream) > 0 {
            add("partial frame at EOF".into());
        }
        if expect.requests.iter().any(|r| is_xml(r)) {
            add("XML requests".into());
        }
        if out.reset {
            add("reset".into());
        }
    }

    /// The end of a test: the gateway still serves, every message a
    /// backend received is well formed, no panic, and it stops in time.
    fn finish(mut self) {
        self.rt
            .block_on(self.probe())
            .expect("the gateway still serves");
        let gw = self.gw.take().expect("gateway running");
        let snap = gw.gateway.snapshot();
        let mut relayed = 0;
        for (backend, sim) in &gw.sims {
            for msg in sim.received() {
                relayed += 1;
                self.header
                    .check(&msg)
                    .unwrap_or_else(|e| panic!("{backend} got a bad header: {e}\n{msg:02X?}"));
                let code = trim(&msg[self.header.range(Role::Code)]);
                let route = snap.route(code).unwrap_or_else(|| {
                    panic!(
                        "{backend} got unrouted code {}",
                        String::from_utf8_lossy(code)
                    )
                });
                if route.validate {
                    txgate::body::fixed::decode(&route.schema.request, &msg, self.header.length())
                        .unwrap_or_else(|e| {
                            panic!(
                                "{backend} got a {} body that does not decode: {e}",
                                String::from_utf8_lossy(code)
                            )
                        });
                }
            }
        }
        assert!(
            relayed > 0,
            "no case reached a backend: the cases are too hostile"
        );
        self.rt.block_on(gw.stop());
        let panics = panics_on(&self.threads);
        assert!(panics.is_empty(), "the gateway panicked: {panics:#?}");
    }
}

// ---- one exchange over a real socket -------------------------------------

struct Exchange {
    bytes: Vec<u8>,
    /// The connection was reset rather than closed, or refused the rest of
    /// what the caller wrote.
    reset: bool,
}

/// Connects, writes `writes` one by one (then closes the write side) while
/// reading everything the gateway sends until it closes.
async fn exchange(addr: SocketAddr, writes: Vec<Vec<u8>>) -> Result<Exchange, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut r, mut w) = stream.into_split();
    let write_failed = std::cell::Cell::new(false);
    let writer = async {
        for chunk in &writes {
            if w.write_all(chunk).await.is_err() {
                // The gateway gave up on this caller; reading tells the rest.
                write_failed.set(true);
                break;
            }
        }
        let _ = w.shutdown().await;
        // Keep the write half (dropping it would not close anything more).
        std::future::pending::<()>().await;
    };
    let reader = async {
        let mut bytes = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) => return (bytes, false),
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(_) => return (bytes, true),
            }
        }
    };
    let both = async {
        tokio::select! {
            out = reader => out,
            _ = writer => unreachable!("the writer never ends"),
        }
    };
    let (bytes, read_failed) = tokio::time::timeout(CASE_TIMEOUT, both)
        .await
        .map_err(|_| format!("neither answered and closed within {CASE_TIMEOUT:?}"))?;
    Ok(Exchange {
        bytes,
        reset: read_failed || write_failed.get(),
    })
}

// ---- what the gateway must answer ----------------------------------------

#[derive(Debug, Default)]
struct Expect {
    heartbeats: usize,
    requests: Vec<Bytes>,
    /// The RspCode of a bad length field, after which the gateway closes.
    bad: Option<&'static str>,
}

/// Decodes the whole stream as the gateway's reader would.
fn model(mut codec: FrameCodec, stream: &[u8]) -> Expect {
    let mut buf = BytesMut::from(stream);
    let mut e = Expect::default();
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(f)) if f.is_empty() => e.heartbeats += 1,
            Ok(Some(f)) => e.requests.push(f),
            // A partial frame cut by EOF gets no answer.
            Ok(None) => return e,
            Err(FrameError::TooLong { .. }) => {
                e.bad = Some("GW0002");
                return e;
            }
            Err(_) => {
                e.bad = Some("GW0001");
                return e;
            }
        }
    }
}

/// Bytes left over (a partial frame) when the stream is well framed.
fn model_left(mut codec: FrameCodec, stream: &[u8]) -> usize {
    let mut buf = BytesMut::from(stream);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
    buf.len()
}

// ---- cases ---------------------------------------------------------------

#[derive(Debug, Clone)]
enum XmlTrick {
    Doctype,
    DeepNesting(usize),
    HugeAttribute(usize),
    Unclosed(Index),
    Entity(&'static str),
    SecondRoot,
    Encoding(&'static str),
    LeadInName(u8),
    Cdata(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Truncate(Index),
    Extend(Vec<u8>),
    /// A GBK lead byte inserted (shifting everything after it).
    InsertLead(Index, u8),
    /// A GBK lead byte as the last byte of a header field (split character).
    LeadAtFieldEnd(Index, u8),
    /// 0x80–0xFF bytes written into a C header field.
    HighBytesInC(Index, Vec<u8>),
    /// Random bytes over a whole header field.
    HeaderField(Index, Vec<u8>),
    /// Another transaction code (mostly unrouted ones).
    Code(String),
    /// Another ChnlNo.
    Channel(&'static str),
    /// The same message in XML form (properly if it decodes, else naively).
    Xmlify,
    Xml(XmlTrick),
}

#[derive(Debug, Clone)]
enum Prefix {
    Correct,
    /// Declares more bytes than follow (with EOF after: a partial frame).
    More(usize),
    /// Declares fewer: the rest becomes the next frame's length field.
    Fewer(usize),
    /// One past the maximum body.
    OverMax,
    Zero,
    /// One byte of the length field replaced.
    Byte(Index, u8),
    /// The whole length field random.
    Random(Vec<u8>),
    /// This raw value in the length field (for `+self`, counting the field).
    Raw(u64),
}

#[derive(Debug, Clone)]
enum Delivery {
    Whole,
    /// Byte by byte (the first `n` bytes; the rest at once).
    Bytewise(usize),
    /// In pieces of these sizes, cycled.
    Pieces(Vec<usize>),
}

#[derive(Debug, Clone)]
enum Extra {
    None,
    Heartbeat,
    Garbage(Vec<u8>),
    /// Another (valid) copy of the base request.
    Valid,
}

#[derive(Debug, Clone)]
struct Case {
    base: Index,
    mutations: Vec<Mutation>,
    prefix: Prefix,
    heartbeats_before: usize,
    after: Extra,
    delivery: Delivery,
}

impl Case {
    fn writes(&self, w: &World) -> Vec<Vec<u8>> {
        let base = &w.bases[self.base.index(w.bases.len())];
        let mut msg = base.msg.clone();
        for m in &self.mutations {
            apply(m, &mut msg, w);
        }
        let mut stream = Vec::new();
        for _ in 0..self.heartbeats_before {
            stream.extend(w.framing.frame(&[]).expect("heartbeat"));
        }
        stream.extend(prefix(w.framing, &self.prefix, msg.len()));
        stream.extend_from_slice(&msg);
        match &self.after {
            Extra::None => {}
            Extra::Heartbeat => stream.extend(w.framing.frame(&[]).expect("heartbeat")),
            Extra::Garbage(g) => stream.extend_from_slice(g),
            Extra::Valid => stream.extend(w.framing.frame(&base.msg).expect("valid request")),
        }
        deliver(&self.delivery, stream)
    }
}

fn deliver(d: &Delivery, stream: Vec<u8>) -> Vec<Vec<u8>> {
    match d {
        Delivery::Whole => vec![stream],
        Delivery::Bytewise(n) => {
            let n = (*n).min(stream.len());
            let mut out: Vec<Vec<u8>> = stream[..n].iter().map(|&b| vec![b]).collect();
            if n < stream.len() {
                out.push(stream[n..].to_vec());
            }
            out
        }
        Delivery::Pieces(sizes) => {
            let mut out = Vec::new();
            let mut at = 0;
            for size in sizes.iter().cycle() {
                if at >= stream.len() {
                    break;
                }
                let end = (at + size.max(&1)).min(stream.len());
                out.push(stream[at..end].to_vec());
                at = end;
            }
            out
        }
    }
}

/// The length field for a body of `len` bytes, as `p` corrupts it.
fn prefix(framing: Framing, p: &Prefix, len: usize) -> Vec<u8> {
    let n = framing.prefix_len();
    let declared = match p {
        Prefix::Correct => len,
        Prefix::More(k) => len + k,
        Prefix::Fewer(k) => len.saturating_sub(*k),
        Prefix::OverMax => DEFAULT_MAX_BODY + 1,
        Prefix::Zero => 0,
        Prefix::Byte(i, b) => {
            let mut out = raw_prefix(framing, len);
            out[i.index(n)] = *b;
            return out;
        }
        Prefix::Random(bytes) => {
            let mut out = bytes.clone();
            out.resize(n, b'0');
            return out;
        }
        Prefix::Raw(v) => return write_len(framing, *v),
    };
    raw_prefix(framing, declared)
}

/// Writes `declared` (body bytes) as the length field, saturating at what
/// the field can hold, whether or not it is over the maximum.
fn raw_prefix(framing: Framing, declared: usize) -> Vec<u8> {
    let own = if framing.includes_self {
        framing.prefix_len()
    } else {
        0
    };
    write_len(framing, declared as u64 + own as u64)
}

/// Writes `v` as the length field, saturating at what it can hold.
fn write_len(framing: Framing, v: u64) -> Vec<u8> {
    match framing.field {
        LengthField::Ascii(d) => {
            let max = 10u64.pow(u32::from(d)) - 1;
            format!("{:0width$}", v.min(max), width = usize::from(d)).into_bytes()
        }
        LengthField::U16 => (v.min(u64::from(u16::MAX)) as u16).to_be_bytes().to_vec(),
        LengthField::U32 => (v.min(u64::from(u32::MAX)) as u32).to_be_bytes().to_vec(),
    }
}

fn apply(m: &Mutation, msg: &mut Vec<u8>, w: &World) {
    let h = &w.header;
    let fields = h.fields();
    match m {
        Mutation::Flip(i, x) if !msg.is_empty() => {
            let i = i.index(msg.len());
            msg[i] ^= x.max(&1);
        }
        Mutation::Set(i, b) if !msg.is_empty() => {
            let i = i.index(msg.len());
            msg[i] = *b;
        }
        Mutation::Insert(i, bytes) => {
            let at = i.index(msg.len() + 1);
            msg.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove(i, n) if !msg.is_empty() => {
            let at = i.index(msg.len());
            let end = (at + n).min(msg.len());
            msg.drain(at..end);
        }
        Mutation::Truncate(i) => {
            let keep = i.index(msg.len() + 1);
            msg.truncate(keep);
        }
        Mutation::Extend(bytes) => msg.extend_from_slice(bytes),
        Mutation::InsertLead(i, lead) => {
            let at = i.index(msg.len() + 1);
            msg.insert(at, *lead);
        }
        Mutation::LeadAtFieldEnd(i, lead) => {
            let f = &fields[i.index(fields.len())];
            if let Some(b) = msg.get_mut(f.offset + f.width - 1) {
                *b = *lead;
            }
        }
        Mutation::HighBytesInC(i, bytes) => {
            let cs: Vec<_> = fields.iter().filter(|f| f.kind == HeaderType::C).collect();
            let f = cs[i.index(cs.len())];
            for (k, b) in bytes.iter().take(f.width).enumerate() {
                if let Some(slot) = msg.get_mut(f.offset + k) {
                    *slot = *b;
                }
            }
        }
        Mutation::HeaderField(i, bytes) => {
            let f = &fields[i.index(fields.len())];
            for k in 0..f.width {
                if let Some(slot) = msg.get_mut(f.offset + k) {
                    *slot = bytes.get(k).copied().unwrap_or(b' ');
                }
            }
        }
        Mutation::Code(c) => put_field(msg, h, Role::Code, c.as_bytes()),
        Mutation::Channel(c) => put_field(msg, h, Role::Channel, c.as_bytes()),
        Mutation::Xmlify => *msg = xmlify(msg, w),
        Mutation::Xml(t) => xml_trick(t, msg),
        _ => {}
    }
}

/// Writes `value`, space-padded, over a role's header field (as far as
/// the message reaches).
fn put_field(msg: &mut [u8], h: &HeaderSpec, role: Role, value: &[u8]) {
    for (k, i) in h.range(role).enumerate() {
        if let Some(slot) = msg.get_mut(i) {
            *slot = value.get(k).copied().unwrap_or(b' ');
        }
    }
}

/// The XML form of a fixed message: the gateway's own transcoding when the
/// message decodes, else its header fields and raw body wrapped in XML.
fn xmlify(msg: &[u8], w: &World) -> Vec<u8> {
    if is_xml(msg) {
        return msg.to_vec();
    }
    let h = &w.header;
    let code = msg
        .get(h.range(Role::Code))
        .map(|c| String::from_utf8_lossy(trim(c)).into_owned())
        .unwrap_or_default();
    if let Some(s) = w.schemas.get(&code) {
        if let Ok(x) = txgate::body::fixed_to_xml(h, &s.request, msg) {
            return x;
        }
    }
    let mut out = b"<?xml version=\"1.0\" encoding=\"GBK\"?><ROOT><HEAD>".to_vec();
    for f in h.fields() {
        let raw = msg.get(f.range()).map(trim).unwrap_or_default();
        out.extend_from_slice(format!("<{}>", f.tag).as_bytes());
        out.extend_from_slice(raw);
        out.extend_from_slice(format!("</{}>", f.tag).as_bytes());
    }
    out.extend_from_slice(b"</HEAD><BODY><LoanAppNo>");
    out.extend_from_slice(msg.get(h.length()..).unwrap_or_default());
    out.extend_from_slice(b"</LoanAppNo></BODY></ROOT>");
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Inserts `what` after `after` (or at the start when absent).
fn insert_after(msg: &mut Vec<u8>, after: &[u8], what: &[u8]) {
    let at = find(msg, after).map_or(0, |i| i + after.len());
    msg.splice(at..at, what.iter().copied());
}

fn xml_trick(t: &XmlTrick, msg: &mut Vec<u8>) {
    match t {
        XmlTrick::Doctype => {
            let decl_end = find(msg, b"?>").map_or(0, |i| i + 2);
            msg.splice(
                decl_end..decl_end,
                b"<!DOCTYPE ROOT [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
                    .iter()
                    .copied(),
            );
            insert_after(msg, b"<BODY>", b"<LoanAppNo>&xxe;</LoanAppNo>");
        }
        XmlTrick::DeepNesting(n) => {
            let mut deep = b"<a>".repeat(*n);
            deep.extend(b"</a>".repeat(*n));
            insert_after(msg, b"<BODY>", &deep);
        }
        XmlTrick::HugeAttribute(n) => {
            let mut attr = b" x=\"".to_vec();
            attr.extend(std::iter::repeat_n(b'A', *n));
            attr.push(b'"');
            match find(msg, b"<BODY") {
                Some(i) => {
                    let at = i + b"<BODY".len();
                    msg.splice(at..at, attr);
                }
                None => {
                    let mut el = b"<ROOT".to_vec();
                    el.extend(attr);
                    el.extend_from_slice(b"/>");
                    msg.splice(0..0, el);
                }
            }
        }
        XmlTrick::Unclosed(i) => match find(msg, b"</ROOT>") {
            Some(end) => {
                // Cut somewhere in the last quarter: inside a tag, or before it.
                let from = end * 3 / 4;
                let cut = from + i.index(end - from + 1);
                msg.truncate(cut);
            }
            None => msg.extend_from_slice(b"<ROOT><HEAD><TranCode>2969"),
        },
        XmlTrick::Entity(e) => {
            let at = find(msg, b"</TranCode>").unwrap_or(msg.len());
            msg.splice(at..at, e.bytes());
        }
        XmlTrick::SecondRoot => msg.extend_from_slice(b"<ROOT><HEAD/></ROOT>"),
        XmlTrick::Encoding(enc) => match find(msg, b"GBK") {
            Some(i) => {
                msg.splice(i..i + 3, enc.bytes());
            }
            None => {
                let decl = format!("<?xml version=\"1.0\" encoding=\"{enc}\"?>");
                msg.splice(0..0, decl.bytes());
            }
        },
        XmlTrick::LeadInName(lead) => {
            let at = find(msg, b"<TranCode").map_or(1, |i| i + 2);
            msg.insert(at.min(msg.len()), *lead);
        }
        XmlTrick::Cdata(bytes) => {
            let mut c = b"<![CDATA[".to_vec();
            c.extend_from_slice(bytes);
            c.extend_from_slice(b"]]>");
            let at = find(msg, b"</SeqNo>").unwrap_or(msg.len());
            msg.splice(at..at, c);
        }
    }
}

// ---- strategies ----------------------------------------------------------

fn high_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0x80u8..=0xFF, 1..=max)
}

fn gbk_lead() -> impl Strategy<Value = u8> {
    0x81u8..=0xFE
}

fn xml_tricks() -> impl Strategy<Value = XmlTrick> {
    prop_oneof![
        2 => Just(XmlTrick::Doctype),
        2 => prop_oneof![1usize..64, 30usize..40, 64usize..20_000].prop_map(XmlTrick::DeepNesting),
        1 => prop_oneof![1usize..4096, 100_000usize..900_000].prop_map(XmlTrick::HugeAttribute),
        2 => any::<Index>().prop_map(XmlTrick::Unclosed),
        1 => prop::sample::select(vec!["&x;", "&#0;", "&#xD800;", "&#x110000;", "&amp", "&lt;&gt;&quot;", "&#20013;"])
            .prop_map(XmlTrick::Entity),
        1 => Just(XmlTrick::SecondRoot),
        1 => prop::sample::select(vec!["UTF-8", "GB18030", "gbk", "", "UTF-16"]).prop_map(XmlTrick::Encoding),
        1 => gbk_lead().prop_map(XmlTrick::LeadInName),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(XmlTrick::Cdata),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, x)| Mutation::Flip(i, x)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..300).prop_map(Mutation::Extend),
        2 => (any::<Index>(), gbk_lead()).prop_map(|(i, b)| Mutation::InsertLead(i, b)),
        2 => (any::<Index>(), gbk_lead()).prop_map(|(i, b)| Mutation::LeadAtFieldEnd(i, b)),
        3 => (any::<Index>(), high_bytes(20)).prop_map(|(i, b)| Mutation::HighBytesInC(i, b)),
        3 => (any::<Index>(), prop::collection::vec(any::<u8>(), 0..100))
            .prop_map(|(i, b)| Mutation::HeaderField(i, b)),
        1 => "[0-9]{4}".prop_map(Mutation::Code),
        1 => prop::sample::select(vec!["CUS", "NET", "IBP", "SCF", "ESB", "", "cus"]).prop_map(Mutation::Channel),
        2 => Just(Mutation::Xmlify),
        4 => xml_tricks().prop_map(Mutation::Xml),
    ]
}

fn prefix_strategy(n: usize) -> impl Strategy<Value = Prefix> {
    prop_oneof![
        8 => Just(Prefix::Correct),
        2 => prop_oneof![1usize..4, 1usize..5000].prop_map(Prefix::More),
        2 => (1usize..300).prop_map(Prefix::Fewer),
        1 => Just(Prefix::OverMax),
        1 => Just(Prefix::Zero),
        2 => (any::<Index>(), prop_oneof![Just(b' '), Just(b'-'), Just(b'+'), any::<u8>()])
            .prop_map(|(i, b)| Prefix::Byte(i, b)),
        1 => prop::collection::vec(any::<u8>(), n).prop_map(Prefix::Random),
        1 => (0u64..12).prop_map(Prefix::Raw),
    ]
}

fn case_strategy(framing: Framing) -> impl Strategy<Value = Case> {
    let delivery = prop_oneof![
        4 => Just(Delivery::Whole),
        2 => (1usize..600).prop_map(Delivery::Bytewise),
        3 => prop::collection::vec(1usize..64, 1..8).prop_map(Delivery::Pieces),
    ];
    let after = prop_oneof![
        4 => Just(Extra::None),
        1 => Just(Extra::Heartbeat),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Extra::Garbage),
        2 => Just(Extra::Valid),
    ];
    (
        any::<Index>(),
        prop::collection::vec(mutation(), 0..4),
        prefix_strategy(framing.prefix_len()),
        prop_oneof![3 => Just(0usize), 1 => 1usize..40],
        after,
        delivery,
    )
        .prop_map(
            |(base, mutations, prefix, heartbeats_before, after, delivery)| Case {
                base,
                mutations,
                prefix,
                heartbeats_before,
                after,
                delivery,
            },
        )
}

/// Runs `cases` random cases, then checks that they covered `must` (keys
/// of [`World::tally`]): a generator gone tame fails the test too.
///
/// The cases are the same on every run. To explore further, set
/// `HOSTILE_SEED=<u64>` (other cases) and `HOSTILE_CASES=<n>` (more of them).
fn run_cases(world: &World, cases: u32, must: &[&str]) {
    let cases = std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        max_shrink_time: 30_000,
        ..Config::default()
    };
    let rng = match std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(seed) => {
            eprintln!("hostile: HOSTILE_SEED={seed}");
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
        }
        None => TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let started = Instant::now();
    if let Err(e) = runner.run(&case_strategy(world.framing), |case| world.run(&case)) {
        panic!("{e}");
    }
    let seen = world.seen.lock().expect("tally").clone();
    eprintln!(
        "hostile ({}): {} cases in {:?}: {seen:?}",
        world.framing,
        world.cases.load(Ordering::Relaxed),
        started.elapsed()
    );
    for key in must {
        assert!(seen.contains_key(*key), "no case led to {key:?}: {seen:?}");
    }
}

// ---- the tests -----------------------------------------------------------

/// What the random cases must have led to at least once.
const MUST: &[&str] = &[
    "answer 000000",
    "answer GW0001",
    "answer GW0002",
    "answer GW0003",
    "answer GW0101",
    "answer GW0102",
    "heartbeats",
    "bad length field GW0001",
    "bad length field GW0002",
    "partial frame at EOF",
    "XML requests",
];

#[test]
fn mutated_frames_never_break_the_gateway() {
    let world = World::new("ascii8", Framing::default());
    run_cases(&world, 1500, MUST);
    world.finish();
}

#[test]
fn mutated_frames_on_a_binary_self_inclusive_listener() {
    let world = World::new("u32self", "u32+self".parse().expect("framing"));
    run_cases(&world, 400, MUST);
    world.finish();
}

/// Runs a fixed list of streams, each checked like a random case.
fn run_streams(world: &World, streams: Vec<(&str, Vec<Vec<u8>>)>) {
    for (what, writes) in streams {
        let stream = writes.concat();
        let expect = model(world.codec(), &stream);
        let out = world
            .rt
            .block_on(exchange(world.addr(), writes))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(!out.reset, "{what}: reset");
        let answers = world
            .split(&out.bytes)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let beats = answers.iter().filter(|a| a.is_empty()).count();
        assert_eq!(beats, expect.heartbeats, "{what}: heartbeat echoes");
        let msgs: Vec<_> = answers.iter().filter(|a| !a.is_empty()).collect();
        for a in &msgs {
            world
                .check_answer(a)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        let codes: Vec<String> = msgs.iter().map(|m| world.rsp_code(m)).collect();
        let wanted = expect.requests.len() + usize::from(expect.bad.is_some());
        assert_eq!(msgs.len(), wanted, "{what}: answers {codes:?}");
        if let Some(code) = expect.bad {
            assert!(
                codes.iter().any(|c| c == code),
                "{what}: {codes:?}, no {code}"
            );
        }
        world
            .rt
            .block_on(world.probe())
            .unwrap_or_else(|e| panic!("after {what}: {e}"));
        assert!(
            panics_on(&world.threads).is_empty(),
            "{what}: the gateway panicked: {:?}",
            panics_on(&world.threads)
        );
    }
}

#[test]
fn edge_streams_on_the_shipped_listener() {
    let world = World::new("edges", Framing::default());
    let f = world.framing;
    let valid = f.frame(&world.probe_request()).expect("frame");
    let body = &valid[8..];
    let streams: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("declared longer than sent, then EOF", vec![
            [b"00000900".as_slice(), body].concat(),
        ]),
        ("declared at the maximum, nothing sent", vec![b"01048576".to_vec()]),
        ("declared over the maximum", vec![b"01048577".to_vec()]),
        ("a length field cut by EOF", vec![b"0000".to_vec()]),
        ("a hundred heartbeats", vec![b"00000000".repeat(100)]),
        ("heartbeats byte by byte", b"00000000".repeat(5).iter().map(|&b| vec![b]).collect()),
        ("heartbeat then a body with no length", vec![[b"00000000".as_slice(), body].concat()]),
        ("zero-length prefix and a lone digit", vec![b"000000000".to_vec()]),
        ("spaces for a length", vec![b"        ".to_vec()]),
        ("a signed length", vec![[b"+0000399".as_slice(), body].concat()]),
        ("a valid frame one byte per write", valid.iter().map(|&b| vec![b]).collect()),
        ("a valid frame in 7-byte pieces", valid.chunks(7).map(<[u8]>::to_vec).collect()),
        ("two frames split mid-prefix", {
            let two = [valid.as_slice(), &f.frame(&world.probe_request()).expect("frame")].concat();
            let cut = valid.len() + 3;
            vec![two[..cut].to_vec(), two[cut..].to_vec()]
        }),
        ("a valid frame then a truncated one", vec![[valid.as_slice(), &valid[..100]].concat()]),
        ("header only", vec![f.frame(&body[..200]).expect("frame")]),
        ("shorter than a header", vec![f.frame(&body[..37]).expect("frame")]),
        ("one byte", vec![f.frame(b"\x81").expect("frame")]),
        ("all 0xFF", vec![f.frame(&[0xFF; 400]).expect("frame")]),
        ("a GB18030 four-byte sequence in SeqNo", vec![{
            let mut m = body.to_vec();
            m[20..24].copy_from_slice(&[0x81, 0x30, 0x81, 0x30]);
            f.frame(&m).expect("frame")
        }]),
        ("0x80-0xFF in every C field", vec![{
            let mut m = body.to_vec();
            for fl in world.header.fields().iter().filter(|x| x.kind == HeaderType::C) {
                for (k, b) in m[fl.range()].iter_mut().enumerate() {
                    *b = 0x80 + (k as u8 % 0x80);
                }
            }
            f.frame(&m).expect("frame")
        }]),
        ("XML with a DOCTYPE", vec![f.frame(
            b"<?xml version=\"1.0\" encoding=\"GBK\"?><!DOCTYPE ROOT [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><ROOT><HEAD><TranCode>2969</TranCode><ChnlNo>CUS</ChnlNo></HEAD><BODY><LoanAppNo>&x;</LoanAppNo></BODY></ROOT>",
        ).expect("frame")]),
        ("XML nested 200 000 deep", vec![f.frame(&b"<a>".repeat(200_000)).expect("frame")]),
        ("XML billion laughs", vec![f.frame(
            b"<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><ROOT><HEAD><TranCode>&c;</TranCode></HEAD></ROOT>",
        ).expect("frame")]),
        ("XML with a 1000 000-byte attribute", vec![{
            let mut x = b"<ROOT a=\"".to_vec();
            x.extend(std::iter::repeat_n(b'A', 1_000_000));
            x.extend_from_slice(b"\"><HEAD/></ROOT>");
            f.frame(&x).expect("frame")
        }]),
        ("XML unclosed", vec![f.frame(b"<ROOT><HEAD><TranCode>2969</TranCode><ChnlNo>CUS").expect("frame")]),
        ("XML with a huge HEAD value", vec![{
            let mut x = b"<ROOT><HEAD><TranCode>2969</TranCode><ChnlNo>CUS</ChnlNo><SeqNo>".to_vec();
            x.extend(std::iter::repeat_n(b'9', 500_000));
            x.extend_from_slice(b"</SeqNo></HEAD><BODY/></ROOT>");
            f.frame(&x).expect("frame")
        }]),
    ];
    run_streams(&world, streams);
    world.finish();
}

#[test]
fn zero_lengths_on_self_inclusive_listeners() {
    for framing in ["ascii8+self", "u16+self", "ascii4"] {
        let framing: Framing = framing.parse().expect("framing");
        let world = World::new("zero", framing);
        let n = framing.prefix_len();
        let beat_self = raw_prefix(framing, 0);
        let mut streams: Vec<(&str, Vec<Vec<u8>>)> = vec![
            ("zero", vec![vec![zero_byte(framing); n]]),
            ("the length of the length field", vec![beat_self.clone()]),
            ("twenty heartbeats", vec![beat_self.repeat(20)]),
        ];
        if framing.includes_self {
            // Self-inclusive lengths 1..prefix_len are shorter than the field.
            streams.push(("one", vec![one(framing)]));
        }
        let valid = framing.frame(&world.probe_request()).expect("frame");
        streams.push((
            "a valid frame byte by byte",
            valid.iter().map(|&b| vec![b]).collect(),
        ));
        run_streams(&world, streams);
        world.finish();
    }
}

/// The zero digit of a length field.
fn zero_byte(f: Framing) -> u8 {
    match f.field {
        LengthField::Ascii(_) => b'0',
        _ => 0,
    }
}

/// A length field declaring 1 (less than a self-inclusive field itself).
fn one(f: Framing) -> Vec<u8> {
    let n = f.prefix_len();
    match f.field {
        LengthField::Ascii(_) => format!("{:0n$}", 1).into_bytes(),
        LengthField::U16 => 1u16.to_be_bytes().to_vec(),
        LengthField::U32 => 1u32.to_be_bytes().to_vec(),
    }
}

#[test]
fn a_partial_frame_without_eof_is_closed_by_the_read_timer() {
    let (rt, threads) = runtime("slowloris");
    let mut raw = shipped_config();
    raw.gateway.caller_read_timeout_ms = 300;
    let gw = rt.block_on(TestGateway::start_with(raw));
    let msg = request("2969", &[("ChnlNo", "CUS")]);
    let req = Framing::default().frame(&msg).expect("frame");
    rt.block_on(async {
        let mut s = TcpStream::connect(gw.addr).await.expect("connect");
        s.write_all(&req[..150]).await.expect("write");
        let started = Instant::now();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(CASE_TIMEOUT, s.read(&mut buf))
            .await
            .expect("the gateway closes a stalled partial frame")
            .unwrap_or(0);
        assert_eq!(n, 0, "no answer to a partial frame: {:02X?}", &buf[..n]);
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "closed before the read timeout: {:?}",
            started.elapsed()
        );
        // Still serving.
        let mut c = gw.client().await;
        let answer = c.call(msg).await;
        assert_eq!(rsp_code(&answer), "000000");
    });
    rt.block_on(gw.stop());
    assert!(panics_on(&threads).is_empty(), "{:?}", panics_on(&threads));
}

#[test]
fn rejection_echoes_only_n_fields_that_parse() {
    let world = World::new("echo", Framing::default());
    let mut msg = world.probe_request();
    let date = world.header.range(Role::Date);
    msg[date.start] = b'X';
    let framed = world.framing.frame(&msg).expect("frame");
    let out = world
        .rt
        .block_on(exchange(world.addr(), vec![framed]))
        .expect("exchange");
    let answers = world.split(&out.bytes).expect("framed answers");
    assert_eq!(answers.len(), 1);
    assert_eq!(world.rsp_code(&answers[0]), "GW0001");
    world
        .header
        .check(&answers[0])
        .expect("the rejection's own header parses");
    world.finish();
}

#[test]
fn the_panic_hook_sees_a_panic_in_a_spawned_task() {
    // What a panicking connection task looks like from outside: its
    // JoinHandle is dropped by the server, the caller just sees EOF.
    let (rt, threads) = runtime("selftest");
    let joined = rt.block_on(rt.spawn(async { panic!("{SELF_TEST_PANIC}") }));
    assert!(joined.is_err());
    let seen = panics_on(&threads);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains(SELF_TEST_PANIC), "{seen:?}");
}

#[test]
fn a_caller_still_writing_after_a_bad_length_field_gets_its_answer() {
    // 13 heartbeats, a length field with a '+', then 700 KB written in small
    // pieces: the gateway answers GW0001 and closes while input is unread,
    // and about one time in forty the caller sees EOF without the GW0001
    // (and without the last heartbeat echo).
    let world = World::new("linger", Framing::default());
    for round in 0..200 {
        let mut s = b"00000000".repeat(13);
        s.extend_from_slice(b"0000+598");
        s.extend(std::iter::repeat_n(b'x', 700_000));
        let writes = deliver(&Delivery::Pieces(vec![14, 22, 2, 29, 4]), s);
        let out = world
            .rt
            .block_on(exchange(world.addr(), writes))
            .expect("exchange");
        let answers = world.split(&out.bytes).expect("framed answers");
        let beats = answers.iter().filter(|a| a.is_empty()).count();
        let codes: Vec<String> = answers
            .iter()
            .filter(|a| !a.is_empty())
            .map(|a| world.rsp_code(a))
            .collect();
        assert_eq!(
            (beats, codes),
            (13, vec!["GW0001".to_string()]),
            "round {round}"
        );
    }
    world.finish();
}
