//! Connections to one backend: a pool of long connections, or one
//! connection per request in short mode.
//!
//! A pooled connection carries one request at a time. It goes back to the
//! pool only after a whole answer came in time; a connection that timed
//! out or failed is dropped, so a late answer can never reach the next
//! request. Idle connections are checked for EOF or stray data when taken.

use crate::config::{BackendConfig, BackendMode};
use crate::error::{GwError, RspCode};
use crate::frame::{FrameCodec, FrameError};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;

type Conn = Framed<TcpStream, FrameCodec>;

/// An idle pooled connection and when it was last used.
#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// Counters a pool keeps, read by logs and (later) metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub reused: AtomicU64,
    pub dropped_dead: AtomicU64,
    pub timeouts: AtomicU64,
    pub retries: AtomicU64,
}

/// How one call ended, for the relay to decide on a retry.
#[derive(Debug)]
pub struct CallError {
    pub error: GwError,
    /// The connection was an old pooled one that failed before any answer:
    /// the classic stale-connection case, worth one resend on idempotent routes.
    pub stale_reuse: bool,
}

/// The pool of one backend.
#[derive(Debug)]
pub struct Pool {
    id: String,
    address: SocketAddr,
    mode: BackendMode,
    codec: FrameCodec,
    max: usize,
    idle_timeout: Duration,
    acquire_timeout: Duration,
    connect_timeout: Duration,
    slots: Semaphore,
    idle: Mutex<Vec<Idle>>,
    pub stats: PoolStats,
}

impl Pool {
    pub fn new(cfg: &BackendConfig, address: SocketAddr, max_body: usize) -> Pool {
        Pool {
            id: cfg.id.clone(),
            address,
            mode: cfg.mode,
            codec: FrameCodec::new(cfg.framing, max_body),
            max: cfg.pool.max.max(1),
            idle_timeout: Duration::from_millis(cfg.pool.idle_timeout_ms),
            acquire_timeout: Duration::from_millis(cfg.pool.acquire_timeout_ms),
            connect_timeout: Duration::from_millis(cfg.timeouts.connect_ms),
            slots: Semaphore::new(cfg.pool.max.max(1)),
            idle: Mutex::new(Vec::with_capacity(cfg.pool.max)),
            stats: PoolStats::default(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Connections busy now.
    pub fn in_use(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Sends one request and waits for its answer, within `timeout` from now.
    pub async fn call(&self, msg: &Bytes, timeout: Duration) -> Result<Bytes, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let _slot = match tokio::time::timeout(self.acquire_timeout, self.slots.acquire()).await {
            Ok(Ok(p)) => p,
            _ => {
                return Err(CallError {
                    error: GwError::new(
                        RspCode::Busy,
                        format!(
                            "后端 {} 连接池已满（{} 个），等待 {} 毫秒无空闲连接",
                            self.id,
                            self.max,
                            self.acquire_timeout.as_millis()
                        ),
                    ),
                    stale_reuse: false,
                })
            }
        };
        let (mut conn, reused) = match self.take_idle() {
            Some(c) => (c, true),
            None => (self.connect(deadline).await?, false),
        };
        match exchange(&mut conn, msg, deadline).await {
            Ok(answer) => {
                if self.mode == BackendMode::Long {
                    self.put_idle(conn);
                }
                Ok(answer)
            }
            Err(Exchange::TimedOut) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(CallError {
                    error: GwError::new(
                        RspCode::BackendTimeout,
                        format!("后端 {} 在 {} 毫秒内未应答", self.id, timeout.as_millis()),
                    ),
                    stale_reuse: false,
                })
            }
            Err(Exchange::Closed(why)) => Err(CallError {
                error: GwError::new(
                    RspCode::BackendTimeout,
                    format!("后端 {} 连接中断，结果未知：{why}", self.id),
                ),
                stale_reuse: reused,
            }),
            Err(Exchange::BadFrame(e)) => Err(CallError {
                error: GwError::new(
                    RspCode::BadAnswer,
                    format!("后端 {} 应答帧非法：{e}", self.id),
                ),
                stale_reuse: false,
            }),
        }
    }

    async fn connect(&self, deadline: tokio::time::Instant) -> Result<Conn, CallError> {
        let limit = self
            .connect_timeout
            .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let unreachable = |why: String| CallError {
            error: GwError::new(
                RspCode::BackendUnreachable,
                format!("无法连接后端 {}（{}）：{why}", self.id, self.address),
            ),
            stale_reuse: false,
        };
        match tokio::time::timeout(limit, TcpStream::connect(self.address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                self.stats.connects.fetch_add(1, Ordering::Relaxed);
                Ok(Framed::new(stream, self.codec))
            }
            Ok(Err(e)) => {
                self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                Err(unreachable(e.to_string()))
            }
            Err(_) => {
                self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                Err(unreachable(format!("{} 毫秒内未连通", limit.as_millis())))
            }
        }
    }

    /// Takes the most recently used idle connection that is still alive.
    fn take_idle(&self) -> Option<Conn> {
        loop {
            let idle = self.idle.lock().ok()?.pop()?;
            if idle.since.elapsed() < self.idle_timeout && is_alive(&idle.conn) {
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Some(idle.conn);
            }
            self.stats.dropped_dead.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn put_idle(&self, conn: Conn) {
        if !conn.read_buffer().is_empty() {
            // Bytes beyond the answer: the stream is out of step. Drop it.
            self.stats.dropped_dead.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Drops idle connections that expired or died; run now and then.
    pub fn reap(&self) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let before = idle.len();
        let timeout = self.idle_timeout;
        idle.retain(|i| i.since.elapsed() < timeout && is_alive(&i.conn));
        let dropped = before - idle.len();
        self.stats
            .dropped_dead
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }

    /// Closes every idle connection (on shutdown, or when a reload drops the backend).
    pub fn drain(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// An idle connection is alive if a read would block: EOF or stray bytes mean not.
fn is_alive(conn: &Conn) -> bool {
    let mut probe = [0u8; 1];
    match conn.get_ref().try_read(&mut probe) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

enum Exchange {
    TimedOut,
    Closed(String),
    BadFrame(FrameError),
}

async fn exchange(
    conn: &mut Conn,
    msg: &Bytes,
    deadline: tokio::time::Instant,
) -> Result<Bytes, Exchange> {
    let work = async {
        conn.send(msg.clone()).await.map_err(|e| match e {
            FrameError::Io(e) => Exchange::Closed(e.to_string()),
            other => Exchange::BadFrame(other),
        })?;
        loop {
            match conn.next().await {
                // A heartbeat from the backend is not an answer.
                Some(Ok(frame)) if frame.is_empty() => continue,
                Some(Ok(frame)) => return Ok(frame),
                Some(Err(FrameError::Io(e))) => return Err(Exchange::Closed(e.to_string())),
                Some(Err(e)) => return Err(Exchange::BadFrame(e)),
                None => return Err(Exchange::Closed("后端关闭连接".into())),
            }
        }
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(Exchange::TimedOut),
    }
}
