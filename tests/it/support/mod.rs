//! Helpers shared by the integration tests: a gateway on port 0 with its
//! simulated backends, a framed client, scripted backends that misbehave
//! on purpose, and message builders.

#![allow(dead_code)]

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use txgate::config::RawConfig;
use txgate::fixture::Fixture;
use txgate::frame::FrameCodec;
use txgate::header::{HeaderSpec, Role};
use txgate::sim::Simulator;

pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds, failing after WAIT (for state that has no event to await).
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn header() -> HeaderSpec {
    HeaderSpec::builtin()
}

/// The shipped gateway.toml with every address moved to port 0.
pub fn shipped_config() -> RawConfig {
    let mut raw = RawConfig::load(&root().join("gateway.toml")).expect("gateway.toml loads");
    for l in &mut raw.listeners {
        l.address = "127.0.0.1:0".into();
    }
    for b in &mut raw.backends {
        b.address = "127.0.0.1:0".into();
    }
    raw
}

/// A gateway serving on port 0, with recording simulators for every backend.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub sims: HashMap<String, Arc<Simulator>>,
    pub gateway: Arc<txgate::gateway::Gateway>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        Self::start_with(shipped_config()).await
    }

    /// Starts from `raw`: every backend still on port 0 gets a recording
    /// simulator; the others (scripted backends) are left alone.
    pub async fn start_with(raw: RawConfig) -> TestGateway {
        Self::start_custom(raw, &|_, s| s.recording()).await
    }

    pub async fn start_custom(
        raw: RawConfig,
        customize: &dyn Fn(&str, Simulator) -> Simulator,
    ) -> TestGateway {
        let on_port_zero: Vec<String> = raw
            .backends
            .iter()
            .filter(|b| b.address.ends_with(":0"))
            .map(|b| b.id.clone())
            .collect();
        let simulate = move |id: &str| on_port_zero.iter().any(|b| b == id);
        let running = txgate::app::Running::from_raw(raw, None, &simulate, customize)
            .await
            .expect("gateway starts");
        let addr = running.server.addresses()[0].1;
        let gateway = running.server.gateway().clone();
        let sims = running
            .simulators
            .iter()
            .map(|(s, _)| (s.backend.clone(), s.clone()))
            .collect();
        let stop = CancellationToken::new();
        let task = tokio::spawn(running.run(stop.clone()));
        TestGateway {
            addr,
            sims,
            gateway,
            stop,
            task,
        }
    }

    pub fn received(&self, backend: &str) -> Vec<Bytes> {
        self.sims[backend].received()
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("gateway stops in time")
            .expect("gateway task");
    }
}

/// A caller: a framed connection with the default framing.
pub struct Client {
    pub framed: Framed<TcpStream, FrameCodec>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.expect("connect");
        Client {
            framed: Framed::new(s, FrameCodec::default()),
        }
    }

    pub async fn send(&mut self, msg: impl Into<Bytes>) {
        self.framed.send(msg.into()).await.expect("send");
    }

    /// The next answer; panics on EOF or after WAIT.
    pub async fn recv(&mut self) -> Bytes {
        tokio::time::timeout(WAIT, self.framed.next())
            .await
            .expect("answer in time")
            .expect("an answer, not EOF")
            .expect("a whole frame")
    }

    /// None if the gateway closed the connection.
    pub async fn recv_or_eof(&mut self) -> Option<Bytes> {
        match tokio::time::timeout(WAIT, self.framed.next()).await {
            Ok(Some(Ok(b))) => Some(b),
            Ok(_) => None,
            Err(_) => panic!("neither answer nor EOF in time"),
        }
    }

    pub async fn call(&mut self, msg: impl Into<Bytes>) -> Bytes {
        self.send(msg).await;
        self.recv().await
    }

    /// Writes raw bytes, framing and all.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.framed.get_mut().write_all(bytes).await.expect("write");
    }
}

/// A header field of an answer, trimmed.
pub fn field(msg: &[u8], role: Role) -> String {
    let h = header();
    txgate::header::field_text(&msg[h.range(role)])
        .expect("answer header is GBK")
        .into_owned()
}

pub fn rsp_code(msg: &[u8]) -> String {
    if txgate::body::xml::is_xml(msg) {
        let doc = txgate::body::xml::XmlDoc::parse(msg).expect("XML answer parses");
        return doc.head("RspCode").unwrap_or("").to_string();
    }
    field(msg, Role::RspCode)
}

pub fn rsp_msg(msg: &[u8]) -> String {
    if txgate::body::xml::is_xml(msg) {
        let doc = txgate::body::xml::XmlDoc::parse(msg).expect("XML answer parses");
        return doc.head("RspMsg").unwrap_or("").to_string();
    }
    field(msg, Role::RspMsg)
}

static SEQ: AtomicUsize = AtomicUsize::new(1);

/// A SeqNo no other test uses.
pub fn next_seq(prefix: &str) -> String {
    format!("{prefix}T{:016}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// The shipped fixtures, loaded once per test binary.
pub fn fixtures() -> Vec<Fixture> {
    static ALL: std::sync::OnceLock<Vec<Fixture>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| txgate::fixture::load_dir(&root().join("fixtures")).expect("fixtures load"))
        .clone()
}

/// The shipped schemas, loaded once per test binary.
pub fn schemas() -> &'static txgate::tools::Schemas {
    static ALL: std::sync::OnceLock<txgate::tools::Schemas> = std::sync::OnceLock::new();
    ALL.get_or_init(|| txgate::tools::load_schemas(&root().join("schemas")))
}

/// The first fixture of a code matching `pick`.
pub fn fixture(code: &str, pick: impl Fn(&Fixture) -> bool) -> Fixture {
    static ALL: std::sync::OnceLock<Vec<Fixture>> = std::sync::OnceLock::new();
    ALL.get_or_init(fixtures)
        .iter()
        .find(|f| f.code == code && pick(f))
        .cloned()
        .unwrap_or_else(|| panic!("a fixture for {code}"))
}

/// A fixture's request (fixed form) with its header fields replaced.
pub fn request(code: &str, overrides: &[(&str, &str)]) -> Vec<u8> {
    let f = fixture(code, |f| f.format == txgate::fixture::Format::Fixed);
    request_from(&f, overrides, false)
}

pub fn request_from(f: &Fixture, overrides: &[(&str, &str)], xml: bool) -> Vec<u8> {
    let mut f = f.clone();
    for (tag, value) in overrides {
        match f.request_header.iter_mut().find(|(t, _)| t == tag) {
            Some(slot) => slot.1 = value.to_string(),
            None => f.request_header.push((tag.to_string(), value.to_string())),
        }
    }
    if !overrides.iter().any(|(t, _)| *t == "SeqNo") {
        let seq = next_seq("F");
        if let Some(slot) = f.request_header.iter_mut().find(|(t, _)| t == "SeqNo") {
            slot.1 = seq;
        } else {
            f.request_header.push(("SeqNo".into(), seq));
        }
    }
    txgate::tools::fixture_request(&header(), schemas(), &f, xml).expect("fixture request builds")
}

/// What a scripted backend does with each request it reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Script {
    /// Echo the header with RspCode 000000 and no body.
    Echo,
    /// Echo after a delay.
    Slow(Duration),
    /// Read the request and never answer.
    Stall,
    /// Read the request and close the connection.
    Die,
    /// Answer with bytes that are no message.
    Garbage,
    /// Answer with another SeqNo.
    WrongSeq,
    /// Answer twice.
    Twice,
    /// Answer N requests on a connection, then close it.
    CloseAfter(usize),
    /// Answer every request concurrently (pipelined, out of order), each after
    /// a delay of (last digit of SeqNo) × the given step.
    Concurrent(Duration),
    /// Echo with a body of this many bytes.
    Big(usize),
    /// Per request, a fault chosen from the SeqNo: echo, late, die, garbage,
    /// wrong SeqNo or twice.
    Chaos(Duration),
}

/// A backend that behaves as scripted: a real TCP server on port 0 that
/// counts what it received. Its script can be changed while it runs.
pub struct ScriptedBackend {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Bytes>>>,
    pub connections: Arc<AtomicUsize>,
    script: Arc<Mutex<Script>>,
    task: JoinHandle<()>,
}

impl ScriptedBackend {
    pub async fn start(script: Script) -> ScriptedBackend {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(tcp, script)
    }

    /// Serves on a given address (a backend that comes up late).
    pub async fn start_on(addr: SocketAddr, script: Script) -> ScriptedBackend {
        let tcp = TcpListener::bind(addr)
            .await
            .expect("bind the reserved port");
        Self::serve(tcp, script)
    }

    fn serve(tcp: TcpListener, script: Script) -> ScriptedBackend {
        let addr = tcp.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(script));
        let (r, c, sc) = (received.clone(), connections.clone(), script.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = tcp.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_conn(s, r.clone(), sc.clone()));
            }
        });
        ScriptedBackend {
            addr,
            received,
            connections,
            script,
            task,
        }
    }

    pub fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// How many times each SeqNo reached this backend.
    pub fn per_seq(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for req in self.received.lock().unwrap().iter() {
            *m.entry(field(req, Role::Seq)).or_insert(0) += 1;
        }
        m
    }
}

async fn serve_conn(s: TcpStream, received: Arc<Mutex<Vec<Bytes>>>, script: Arc<Mutex<Script>>) {
    let (rd, wr) = s.into_split();
    let mut reader = tokio_util::codec::FramedRead::new(rd, FrameCodec::default());
    let writer = Arc::new(tokio::sync::Mutex::new(
        tokio_util::codec::FramedWrite::new(wr, FrameCodec::default()),
    ));
    let mut answered = 0usize;
    while let Some(Ok(req)) = reader.next().await {
        if req.is_empty() {
            continue;
        }
        received.lock().unwrap().push(req.clone());
        let current = *script.lock().unwrap();
        let current = match current {
            Script::Chaos(late) => chaos_pick(&req, late),
            other => other,
        };
        let answers: Vec<Bytes> = match current {
            Script::Echo | Script::Chaos(_) => vec![echo(&req)],
            Script::Slow(d) => {
                tokio::time::sleep(d).await;
                vec![echo(&req)]
            }
            Script::Stall => {
                std::future::pending::<()>().await;
                vec![]
            }
            Script::Die => return,
            Script::Garbage => vec![Bytes::from_static(b"this is not a message")],
            Script::WrongSeq => {
                let mut b = echo(&req).to_vec();
                b[header().range(Role::Seq)].fill(b'9');
                vec![Bytes::from(b)]
            }
            Script::Twice => vec![echo(&req), echo(&req)],
            Script::CloseAfter(n) => {
                if answered >= n {
                    return;
                }
                vec![echo(&req)]
            }
            Script::Big(n) => {
                let mut b = echo(&req).to_vec();
                b.resize(b.len() + n, b' ');
                vec![Bytes::from(b)]
            }
            Script::Concurrent(step) => {
                let digit = field(&req, Role::Seq)
                    .bytes()
                    .last()
                    .map(|b| (b.wrapping_sub(b'0') % 10) as u32)
                    .unwrap_or(0);
                let w = writer.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(step * digit).await;
                    let _ = w.lock().await.send(echo(&req)).await;
                });
                answered += 1;
                continue;
            }
        };
        answered += 1;
        let mut w = writer.lock().await;
        for a in answers {
            if w.send(a).await.is_err() {
                return;
            }
        }
    }
}

/// The chaos script's choice for one request, from a hash of its SeqNo.
fn chaos_pick(req: &[u8], late: Duration) -> Script {
    let seq = field(req, Role::Seq);
    let h = seq.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    });
    match h % 10 {
        0 => Script::Slow(late),
        1 => Script::Die,
        2 => Script::Garbage,
        3 => Script::WrongSeq,
        4 => Script::Twice,
        _ => Script::Echo,
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The request header echoed with success and an empty body.
pub fn echo(req: &[u8]) -> Bytes {
    let h = header();
    let mut out = req[..h.length().min(req.len())].to_vec();
    h.put_truncated(&mut out, Role::RspCode, "000000");
    h.put_truncated(&mut out, Role::RspMsg, "交易成功");
    Bytes::from(out)
}

/// A config with one backend's address pointing at `addr`, and that route
/// relayed without body checks (scripted backends answer empty bodies).
pub fn config_with_backend(backend: &str, addr: SocketAddr) -> RawConfig {
    let mut raw = shipped_config();
    for b in &mut raw.backends {
        if b.id == backend {
            b.address = addr.to_string();
        }
    }
    for r in &mut raw.routes {
        if r.backend == backend {
            r.validate = false;
        }
    }
    raw
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
