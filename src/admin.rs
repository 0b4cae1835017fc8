//! The admin HTTP port: metrics, health, readiness, the config in force,
//! pool state, and reload.
//!
//! Loopback by default (`[admin] address = "127.0.0.1:9900"`): it can
//! reload the config, so it is not for the callers' networks. HTTP is
//! hyper's (server and the small client `txgate reload` uses); nothing here
//! parses HTTP by hand. The endpoints:
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /metrics` | Prometheus text format |
//! | `GET /healthz` | 200 while the process serves (liveness) |
//! | `GET /readyz` | 200, or 503 and why: listeners down, a backend's last connect failed, a breaker not closed |
//! | `GET /routes` | JSON: listeners, channels, backends, routes |
//! | `GET /pools` | JSON: each backend's pool state |
//! | `POST /reload` | re-read and swap the config; 200 with what changed, 422 with why not |

use crate::gateway::Gateway;
use crate::journal::Journal;
use crate::metrics::{Metrics, Sources};
use crate::reload::{ReloadError, Reloader};
use crate::snapshot::Backend;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// `[admin]` in gateway.toml. Read at start; a reload that changes it says
/// a restart is needed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin port at all.
    pub enabled: bool,
    /// Where to listen; port 0 picks a free port (printed as `ADMIN <addr>`).
    pub address: String,
    /// Refuse to start when the port cannot be bound. Off, the gateway
    /// serves anyway and logs the error (a second instance on one host).
    pub required: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            address: "127.0.0.1:9900".into(),
            required: false,
        }
    }
}

/// Why the admin port or its client failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin address \"{0}\" does not parse: {1}")]
    Address(String, std::net::AddrParseError),
    #[error("admin port {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("admin request to {addr}: {source}")]
    Http { addr: String, source: hyper::Error },
    #[error("admin request: {0}")]
    Request(String),
    #[error("admin request to {0} timed out")]
    Timeout(String),
}

/// Everything the admin endpoints read: the gateway and its observers.
/// Also where readiness is decided ([`AdminState::ready`]).
#[derive(Debug)]
pub struct AdminState {
    gateway: Arc<Gateway>,
    metrics: Arc<Metrics>,
    journal: Option<Arc<Journal>>,
    reloader: Arc<Reloader>,
    listeners: Vec<(String, SocketAddr)>,
    serving: AtomicBool,
}

impl AdminState {
    /// `listeners` are the addresses actually bound (after `--listen` and port 0).
    pub fn new(
        gateway: Arc<Gateway>,
        metrics: Arc<Metrics>,
        journal: Option<Arc<Journal>>,
        reloader: Arc<Reloader>,
        listeners: Vec<(String, SocketAddr)>,
    ) -> AdminState {
        AdminState {
            gateway,
            metrics,
            journal,
            reloader,
            listeners,
            serving: AtomicBool::new(false),
        }
    }

    /// Listeners accepting (true once serving, false from shutdown on).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Ready to take traffic: a config is loaded (always, once a gateway
    /// exists), the listeners accept, and every backend is usable. The
    /// error lists every reason, one per line.
    pub fn ready(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !self.serving.load(Ordering::Acquire) {
            problems.push("listeners are not accepting (starting up or shutting down)".to_string());
        }
        let snap = self.gateway.snapshot();
        for b in snap.backends.values() {
            if let Err(why) = backend_ready(b) {
                problems.push(format!("backend {}: {why}", b.id()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The `/metrics` text.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(&Sources {
            gateway: &self.gateway,
            reloads: Some(&self.reloader.stats),
            journal: self.journal.as_deref(),
            ready: Some(self.ready().is_ok()),
        })
    }

    /// The `/routes` document: the config in force.
    pub fn routes_json(&self) -> Value {
        let snap = self.gateway.snapshot();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let routes: Vec<Value> = snap
            .routes_sorted()
            .into_iter()
            .map(|r| {
                let dest: serde_json::Map<String, Value> = r
                    .dest
                    .iter()
                    .map(|(d, b)| (text(d), Value::from(b.id())))
                    .collect();
                json!({
                    "code": r.code,
                    "name": r.name,
                    "kind": lower(&r.kind),
                    "channels": r.channels.iter().map(|c| text(c)).collect::<Vec<_>>(),
                    "backend": r.backend.id(),
                    "dest": dest,
                    "idempotent": r.idempotent,
                    "validate": r.validate,
                    "pad_trailing": r.pad_trailing,
                    "request_timeout_ms": u64::try_from(r.request_timeout.as_millis()).unwrap_or(u64::MAX),
                })
            })
            .collect();
        let mut channels: Vec<_> = snap.channels.values().collect();
        channels.sort_by(|a, b| a.id.cmp(&b.id));
        let channels: Vec<Value> = channels
            .into_iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "name": c.name,
                    "sources": c.sources.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let backends: Vec<Value> = snap
            .backends
            .values()
            .map(|b| {
                json!({
                    "id": b.id(),
                    "name": b.config.name,
                    "address": b.address.to_string(),
                    "mode": lower(&b.config.mode),
                    "framing": b.config.framing.to_string(),
                    "body": lower(&b.config.body),
                })
            })
            .collect();
        let listeners: Vec<Value> = self
            .listeners
            .iter()
            .map(|(name, addr)| json!({"name": name, "address": addr.to_string()}))
            .collect();
        json!({
            "generation": self.reloader.stats.generation.load(Ordering::Relaxed),
            "listeners": listeners,
            "channels": channels,
            "backends": backends,
            "routes": routes,
        })
    }

    /// The `/pools` document: each backend's pool, now.
    pub fn pools_json(&self) -> Value {
        let snap = self.gateway.snapshot();
        let pools: Vec<Value> = snap
            .backends
            .values()
            .map(|b| {
                let p = &b.pool;
                let s = &p.stats;
                let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                json!({
                    "backend": b.id(),
                    "address": b.address.to_string(),
                    "mode": lower(&p.mode()),
                    "max": p.max(),
                    "in_use": p.in_use(),
                    "idle": p.idle_count(),
                    "waiters": s.waiters.load(Ordering::Relaxed),
                    "connects": n(&s.connects),
                    "connect_failures": n(&s.connect_failures),
                    "timeouts": n(&s.timeouts),
                    "retries": n(&s.retries),
                    "busy": n(&s.busy),
                    "reused": n(&s.reused),
                    "dropped": p.dropped(),
                    "fast_failed": n(&s.fast_failed),
                    "late_answers": p.late_answers(),
                    "last_connect_failed": p.last_connect_failed(),
                    "breaker": p.breaker.state().as_str(),
                    "ready": backend_ready(b).err(),
                })
            })
            .collect();
        json!({ "pools": pools })
    }
}

/// A backend is usable when its breaker is closed and its last connect did
/// not fail. (A backend never connected to yet counts as usable.)
pub fn backend_ready(b: &Backend) -> Result<(), String> {
    let state = b.pool.breaker.state();
    if state != crate::breaker::BreakerState::Closed {
        return Err(format!("circuit breaker {}", state.as_str()));
    }
    if b.pool.last_connect_failed() {
        return Err(format!("last connect to {} failed", b.address));
    }
    Ok(())
}

fn lower(v: &impl std::fmt::Debug) -> String {
    format!("{v:?}").to_lowercase()
}

/// The admin port, bound and ready to serve.
#[derive(Debug)]
pub struct AdminServer {
    tcp: TcpListener,
    addr: SocketAddr,
    state: Arc<AdminState>,
}

/// Admin connections served at once; more wait in the accept queue.
const MAX_ADMIN_CONNECTIONS: usize = 32;

impl AdminServer {
    pub async fn bind(address: &str, state: Arc<AdminState>) -> Result<AdminServer, AdminError> {
        let addr: SocketAddr = address
            .parse()
            .map_err(|e| AdminError::Address(address.to_string(), e))?;
        let io = |source| AdminError::Io {
            addr: addr.to_string(),
            source,
        };
        let tcp = TcpListener::bind(addr).await.map_err(io)?;
        let addr = tcp.local_addr().map_err(io)?;
        Ok(AdminServer { tcp, addr, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop`; then answers what is in progress and returns.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(addr = %self.addr, "admin port listening");
        let tracker = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
        loop {
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                a = self.tcp.accept() => a,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    continue;
                }
            };
            let state = self.state.clone();
            let stop = stop.clone();
            tracker.spawn(async move {
                serve_conn(stream, state, stop).await;
                drop(permit);
            });
        }
        tracker.close();
        tracker.wait().await;
    }
}

async fn serve_conn(stream: TcpStream, state: Arc<AdminState>, stop: CancellationToken) {
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("admin connection: {e}");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const ENDPOINTS: [(&str, &str); 6] = [
    ("/metrics", "GET"),
    ("/healthz", "GET"),
    ("/readyz", "GET"),
    ("/routes", "GET"),
    ("/pools", "GET"),
    ("/reload", "POST"),
];

async fn handle(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let method = req.method();
    let Some((_, allowed)) = ENDPOINTS.iter().find(|(p, _)| *p == path) else {
        let list: Vec<String> = ENDPOINTS.iter().map(|(p, m)| format!("{m} {p}")).collect();
        return respond(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("not found; endpoints:\n{}\n", list.join("\n")),
        );
    };
    let ok_method = method.as_str() == *allowed || (*allowed == "GET" && method == Method::HEAD);
    if !ok_method {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            format!("{path} takes {allowed}\n"),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        return r;
    }
    match path {
        "/healthz" => respond(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" => match state.ready() {
            Ok(()) => respond(StatusCode::OK, TEXT, "ready\n"),
            Err(why) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready:\n{why}\n"),
            ),
        },
        "/metrics" => respond(StatusCode::OK, PROMETHEUS, state.metrics_text()),
        "/routes" => json_response(StatusCode::OK, &state.routes_json()),
        "/pools" => json_response(StatusCode::OK, &state.pools_json()),
        "/reload" => match state.reloader.reload().await {
            Ok(outcome) => {
                json_response(StatusCode::OK, &json!({ "ok": true, "outcome": outcome }))
            }
            Err(e) => {
                let status = match e {
                    ReloadError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                json_response(
                    status,
                    &json!({
                        "ok": false,
                        "error": e.to_string(),
                        "generation": state.reloader.stats.generation.load(Ordering::Relaxed),
                    }),
                )
            }
        },
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    }
}

/// An answer of the admin port, as the client got it.
#[derive(Debug, Clone)]
pub struct AdminResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// One request to an admin port (what `txgate reload` and the tests use).
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    timeout: Duration,
) -> Result<AdminResponse, AdminError> {
    let at = addr.to_string();
    let work = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| AdminError::Io {
                addr: at.clone(),
                source,
            })?;
        let http = |source| AdminError::Http {
            addr: at.clone(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, at.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| AdminError::Request(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.into_body().collect().await.map_err(http)?.to_bytes();
        driver.abort();
        Ok(AdminResponse {
            status,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| AdminError::Timeout(addr.to_string()))?
}
