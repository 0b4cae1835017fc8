//! A simulated backend (挡板): a real TCP server that stands in for one
//! backend, answering every code the config routes to it from the fixtures.
//!
//! Testers point the gateway at it instead of SCF, IBP or NET. It checks
//! what it receives as the real backend would (the request must decode
//! against the schema), and it can record what it received, byte for byte.

use crate::body::{fixed, xml::XmlDoc};
use crate::config::BodyFormat;
use crate::fixture::Fixture;
use crate::frame::FrameCodec;
use crate::header::{trim, HeaderSpec, Role};
use crate::schema::Schema;
use crate::snapshot::Snapshot;
use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Answers gathered before a write is forced mid-batch.
const BATCH_BYTES: usize = 64 * 1024;

/// One code the simulator answers.
#[derive(Debug)]
struct SimCode {
    schema: Arc<Schema>,
    fixtures: Vec<Fixture>,
    /// Per fixture, the fast fixed-form path (None where it cannot apply).
    fast: Vec<Option<FastAnswer>>,
}

/// A fixture's answer prepared once: the simulator then answers a fixed
/// request by copying its header, laying the fixture's header values over
/// it and appending the ready body. Load tests measure the gateway, not the
/// simulator, so the simulator must be cheap.
#[derive(Debug)]
struct FastAnswer {
    /// Request fields the fixture pins, as byte ranges and their bytes.
    matcher: Vec<(std::ops::Range<usize>, Vec<u8>)>,
    overlays: Vec<(std::ops::Range<usize>, Vec<u8>)>,
    body: Vec<u8>,
}

impl FastAnswer {
    fn build(h: &HeaderSpec, schema: &Schema, f: &Fixture) -> Option<FastAnswer> {
        let req = f.request_message(h, schema, false).ok()?;
        let resp = f.response_message(h, schema, &req, false).ok()?;
        let mut matcher = Vec::new();
        let mut at = h.length();
        for field in schema.request.fields() {
            let set = f
                .request_body
                .get(&field.tag)
                .is_some_and(|v| v.as_str().is_none_or(|s| !s.is_empty()));
            if field.is_group() {
                if set {
                    return None;
                }
                break;
            }
            if set {
                matcher.push((
                    at..at + field.width,
                    req.get(at..at + field.width)?.to_vec(),
                ));
            }
            at += field.width;
        }
        let mut overlays = Vec::new();
        for (tag, _) in &f.response_header {
            let field = h.by_tag(tag)?;
            overlays.push((field.range(), resp.get(field.range())?.to_vec()));
        }
        Some(FastAnswer {
            matcher,
            overlays,
            body: resp.get(h.length()..)?.to_vec(),
        })
    }

    fn matches(&self, req: &[u8]) -> bool {
        self.matcher
            .iter()
            .all(|(r, want)| req.get(r.clone()) == Some(&want[..]))
    }

    fn answer(&self, h: &HeaderSpec, req: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(h.length() + self.body.len());
        out.extend_from_slice(&req[..h.length()]);
        for (r, bytes) in &self.overlays {
            out[r.clone()].copy_from_slice(bytes);
        }
        out.extend_from_slice(&self.body);
        Bytes::from(out)
    }
}

/// What a simulated backend knows and does.
#[derive(Debug)]
pub struct Simulator {
    pub backend: String,
    header: Arc<HeaderSpec>,
    codec: FrameCodec,
    xml: bool,
    codes: HashMap<Box<[u8]>, SimCode>,
    delay: Duration,
    received: Option<Mutex<Vec<Bytes>>>,
}

/// Why a simulator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("backend {0} is not in the config")]
    UnknownBackend(String),
    #[error("fixtures: {0}")]
    Fixture(String),
}

impl Simulator {
    /// A simulator for `backend`, answering from the fixtures in `fixtures`
    /// (a missing folder means empty-bodied answers).
    pub fn new(snap: &Snapshot, backend: &str, fixtures: &Path) -> Result<Simulator, SimError> {
        let b = snap
            .backends
            .get(backend)
            .ok_or_else(|| SimError::UnknownBackend(backend.to_string()))?;
        let all = if fixtures.is_dir() {
            crate::fixture::load_dir(fixtures).map_err(|e| SimError::Fixture(e.to_string()))?
        } else {
            Vec::new()
        };
        let mut codes = HashMap::new();
        for route in snap.codes_served_by(backend) {
            let fixtures: Vec<Fixture> = all
                .iter()
                .filter(|f| f.code == route.code)
                .cloned()
                .collect();
            let fast = fixtures
                .iter()
                .map(|f| FastAnswer::build(&snap.header, &route.schema, f))
                .collect();
            codes.insert(
                Box::<[u8]>::from(route.code.as_bytes()),
                SimCode {
                    schema: route.schema.clone(),
                    fixtures,
                    fast,
                },
            );
        }
        Ok(Simulator {
            backend: backend.to_string(),
            header: snap.header.clone(),
            codec: b.codec(snap.settings.max_body),
            xml: b.config.body == BodyFormat::Xml,
            codes,
            delay: Duration::ZERO,
            received: None,
        })
    }

    /// Answers every request after this delay (a slow backend).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Keeps every request received, for tests that check bytes at the backend.
    pub fn recording(mut self) -> Self {
        self.received = Some(Mutex::new(Vec::new()));
        self
    }

    /// The requests received so far, in arrival order.
    pub fn received(&self) -> Vec<Bytes> {
        self.received
            .as_ref()
            .and_then(|r| r.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }

    /// The answer to one request message.
    pub fn answer(&self, req: &[u8]) -> Bytes {
        match self.try_answer(req) {
            Ok(b) => b,
            Err((code, msg)) => self.error_answer(req, code, &msg),
        }
    }

    fn try_answer(&self, req: &[u8]) -> Result<Bytes, (&'static str, String)> {
        let h = &self.header;
        let (code, body) = if self.xml {
            let doc = XmlDoc::parse(req).map_err(|e| ("SIM001", e.to_string()))?;
            let tag = h.field(Role::Code).map(|f| f.tag.as_str()).unwrap_or("");
            let code = doc.head(tag).unwrap_or("").trim().to_string();
            let sc = self.code(code.as_bytes())?;
            let body = doc
                .body(&sc.schema.request)
                .map_err(|e| ("SIM001", e.to_string()))?;
            (code.into_bytes(), body)
        } else {
            h.check(req).map_err(|e| ("SIM001", e.to_string()))?;
            let code = trim(&req[h.range(Role::Code)]).to_vec();
            let sc = self.code(&code)?;
            // The fast path: a valid request whose pinned fields match a fixture.
            if fixed::validate(&sc.schema.request, req, h.length()).is_ok() {
                if let Some(fast) = sc.fast.iter().flatten().find(|f| f.matches(req)) {
                    return Ok(fast.answer(h, req));
                }
            }
            let body = fixed::decode(&sc.schema.request, req, h.length())
                .map_err(|e| ("SIM001", e.to_string()))?;
            (code, body)
        };
        let sc = self.code(&code)?;
        let chosen = sc
            .fixtures
            .iter()
            .find(|f| f.matches(&sc.schema, &body))
            .or_else(|| sc.fixtures.first());
        match chosen {
            Some(f) => f
                .response_message(h, &sc.schema, req, self.xml)
                .map(Bytes::from)
                .map_err(|e| ("SIM002", e.to_string())),
            None => Ok(self.error_answer(req, "000000", "交易成功")),
        }
    }

    fn code(&self, code: &[u8]) -> Result<&SimCode, (&'static str, String)> {
        self.codes.get(code).ok_or_else(|| {
            (
                "SIM404",
                format!(
                    "挡板 {} 不处理交易 {}",
                    self.backend,
                    String::from_utf8_lossy(code)
                ),
            )
        })
    }

    /// The request header echoed with a response code and an empty body.
    fn error_answer(&self, req: &[u8], code: &str, msg: &str) -> Bytes {
        let form = if self.xml {
            crate::gateway::Form::Xml
        } else {
            crate::gateway::Form::Fixed
        };
        crate::gateway::header_answer(&self.header, form, req, code, msg)
    }

    /// Serves callers on `listener` until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        let tracker = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            let sim = self.clone();
            let stop = stop.clone();
            tracker.spawn(async move { sim.serve_conn(stream, stop).await });
        }
        tracker.close();
        tracker.wait().await;
    }

    async fn serve_conn(&self, stream: TcpStream, stop: CancellationToken) {
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, self.codec);
        framed.set_backpressure_boundary(BATCH_BYTES);
        loop {
            let frame = tokio::select! {
                _ = stop.cancelled() => return,
                f = framed.next() => f,
            };
            let mut next = frame;
            // Answer every request that is already here, then flush once: a
            // pipelining caller (a multiplexed pool) gets one write per batch.
            loop {
                let Some(Ok(req)) = next else {
                    let _ = framed.flush().await;
                    return;
                };
                let answer = self.respond(req).await;
                if framed.feed(answer).await.is_err() {
                    return;
                }
                // With a delay, each answer goes out on its own: held back
                // behind the next requests' delays it would come late.
                if !self.delay.is_zero() {
                    break;
                }
                match framed.next().now_or_never() {
                    Some(more) => next = more,
                    None => break,
                }
            }
            if framed.flush().await.is_err() {
                return;
            }
        }
    }

    async fn respond(&self, req: Bytes) -> Bytes {
        if let Some(r) = &self.received {
            if let Ok(mut v) = r.lock() {
                v.push(req.clone());
            }
        }
        if req.is_empty() {
            return Bytes::new();
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.answer(&req)
    }
}
