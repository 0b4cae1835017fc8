//! Connections to one backend, in one of three modes:
//! - `long`: a pool of persistent connections, one request in flight each;
//! - `short`: a new connection per request;
//! - `multiplex`: several requests in flight per pooled connection, answers
//!   matched by channel plus SeqNo.
//!
//! A long connection goes back to the pool only after a whole answer came in
//! time; one that timed out or failed is dropped, so a late answer can never
//! reach the next request. In multiplex mode a late answer finds no waiter
//! and is counted and dropped. Idle connections are checked for EOF or stray
//! data when taken and by the maintenance tick, which also keeps `min_idle`
//! warm with exponential backoff plus jitter, and retires old connections.

use crate::breaker::{Breaker, Pass};
use crate::config::{BackendConfig, BackendMode};
use crate::error::{GwError, RspCode};
use crate::frame::{FrameCodec, FrameError};
use crate::header::trim;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::codec::{Framed, FramedRead, FramedWrite};

type Conn = Framed<TcpStream, FrameCodec>;

/// Where the multiplex key (channel, SeqNo) sits in a fixed header.
#[derive(Debug, Clone)]
pub struct MuxKey {
    pub channel: Range<usize>,
    pub seq: Range<usize>,
}

impl MuxKey {
    /// Whether two messages carry the same channel and SeqNo, compared in
    /// place (the long-mode check runs on every answer).
    fn same(&self, a: &[u8], b: &[u8]) -> bool {
        fn part<'m>(m: &'m [u8], r: &Range<usize>) -> Option<&'m [u8]> {
            m.get(r.clone()).map(trim)
        }
        part(a, &self.channel) == part(b, &self.channel) && part(a, &self.seq) == part(b, &self.seq)
    }

    fn of(&self, msg: &[u8]) -> Option<MuxId> {
        let ch = trim(msg.get(self.channel.clone())?);
        let seq = trim(msg.get(self.seq.clone())?);
        MuxId::new(ch, seq)
    }
}

/// An idle pooled connection, when it was made and last used.
#[derive(Debug)]
struct Idle {
    conn: Conn,
    born: Instant,
    since: Instant,
}

/// A breaker pass not yet judged. Dropped unjudged (the request was
/// cancelled), it frees the half-open probe slot.
struct Verdict<'a> {
    breaker: &'a Breaker,
    pass: Option<Pass>,
}

impl Verdict<'_> {
    fn release(&mut self) {
        if let Some(pass) = self.pass.take() {
            self.breaker.release(pass);
        }
    }
}

impl Drop for Verdict<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// One unit of a gauge, given back when dropped, cancellation included.
/// `Counted(gauge)` takes over a unit counted already.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::AcqRel);
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counters a pool keeps, for logs and metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub reused: AtomicU64,
    pub dropped_dead: AtomicU64,
    pub timeouts: AtomicU64,
    pub retries: AtomicU64,
    pub busy: AtomicU64,
    pub waiters: AtomicUsize,
    /// Multiplexed answers that found no waiter, over every connection the
    /// pool ever had (shared with each connection's reader).
    pub mux: Arc<MuxCounters>,
    pub fast_failed: AtomicU64,
}

/// How one call ended, for the relay to decide on a retry.
#[derive(Debug)]
pub struct CallError {
    pub error: GwError,
    /// A reused pooled connection failed before any answer: the classic
    /// stale-connection case, worth a resend on idempotent routes.
    pub stale_reuse: bool,
}

impl CallError {
    fn new(code: RspCode, detail: String) -> Self {
        CallError {
            error: GwError::new(code, detail),
            stale_reuse: false,
        }
    }
}

/// Reconnect pacing of the warmer.
#[derive(Debug)]
struct Backoff {
    failures: u32,
    next_attempt: Instant,
}

/// The pool of one backend.
#[derive(Debug)]
pub struct Pool {
    id: String,
    address: SocketAddr,
    mode: BackendMode,
    codec: FrameCodec,
    max: usize,
    min_idle: usize,
    slots_total: usize,
    idle_timeout: Duration,
    acquire_timeout: Duration,
    connect_timeout: Duration,
    max_lifetime: Duration,
    backoff_base: Duration,
    backoff_max: Duration,
    slots: Semaphore,
    idle: Mutex<Vec<Idle>>,
    mux: Mutex<Vec<Arc<MuxConn>>>,
    mux_next: AtomicUsize,
    mux_opening: AtomicUsize,
    mux_key: MuxKey,
    mux_owed_max: usize,
    /// Fixed-form answers can be checked against their request's key.
    fixed_form: bool,
    backoff: Mutex<Backoff>,
    last_connect_failed: AtomicBool,
    /// Retry budget in tenths: each request earns 1, each resend costs 10,
    /// so resends stay near 10% of traffic plus a small burst.
    retry_budget: std::sync::atomic::AtomicI64,
    pub breaker: Breaker,
    pub stats: PoolStats,
}

impl Pool {
    pub fn new(cfg: &BackendConfig, address: SocketAddr, max_body: usize, mux_key: MuxKey) -> Pool {
        let max = cfg.pool.max.max(1);
        let slots_total = match cfg.mode {
            BackendMode::Multiplex => cfg.pool.max_in_flight.max(1),
            _ => max,
        };
        Pool {
            id: cfg.id.clone(),
            address,
            mode: cfg.mode,
            codec: FrameCodec::new(cfg.framing, max_body),
            max,
            min_idle: cfg.pool.min_idle.min(max),
            slots_total,
            idle_timeout: Duration::from_millis(cfg.pool.idle_timeout_ms),
            acquire_timeout: Duration::from_millis(cfg.pool.acquire_timeout_ms),
            connect_timeout: Duration::from_millis(cfg.timeouts.connect_ms),
            max_lifetime: Duration::from_millis(cfg.pool.max_lifetime_ms),
            backoff_base: Duration::from_millis(cfg.pool.backoff_base_ms.max(1)),
            backoff_max: Duration::from_millis(cfg.pool.backoff_max_ms.max(1)),
            slots: Semaphore::new(slots_total),
            idle: Mutex::new(Vec::with_capacity(max)),
            mux: Mutex::new(Vec::new()),
            mux_next: AtomicUsize::new(0),
            mux_opening: AtomicUsize::new(0),
            mux_key,
            mux_owed_max: MUX_OWED_MAX,
            fixed_form: cfg.body == crate::config::BodyFormat::Fixed,
            backoff: Mutex::new(Backoff {
                failures: 0,
                next_attempt: Instant::now(),
            }),
            last_connect_failed: AtomicBool::new(false),
            retry_budget: std::sync::atomic::AtomicI64::new(100),
            breaker: Breaker::new(&cfg.id, &cfg.breaker),
            stats: PoolStats::default(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn mode(&self) -> BackendMode {
        self.mode
    }

    /// The pool's size limit (connections).
    pub fn max(&self) -> usize {
        self.max
    }

    /// Requests (long, short: connections) busy now.
    pub fn in_use(&self) -> usize {
        self.slots_total - self.slots.available_permits()
    }

    pub fn idle_count(&self) -> usize {
        match self.mode {
            BackendMode::Multiplex => self.mux.lock().map(|v| v.len()).unwrap_or(0),
            _ => self.idle.lock().map(|v| v.len()).unwrap_or(0),
        }
    }

    /// Whether the last attempt to connect failed (for readiness).
    pub fn last_connect_failed(&self) -> bool {
        self.last_connect_failed.load(Ordering::Relaxed)
    }

    /// Takes one resend from the budget; false when it is spent.
    pub fn try_spend_retry(&self) -> bool {
        let before = self.retry_budget.fetch_sub(10, Ordering::AcqRel);
        if before < 10 {
            self.retry_budget.fetch_add(10, Ordering::AcqRel);
            return false;
        }
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Sends one request and waits for its answer, within `timeout` from now.
    pub async fn call(&self, msg: &Bytes, timeout: Duration) -> Result<Bytes, CallError> {
        if self.retry_budget.load(Ordering::Relaxed) < 1000 {
            self.retry_budget.fetch_add(1, Ordering::Relaxed);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let Some(pass) = self.breaker.allow() else {
            self.stats.fast_failed.fetch_add(1, Ordering::Relaxed);
            return Err(CallError::new(
                RspCode::BackendUnreachable,
                format!("后端 {} 熔断中，请求未发送，可稍后重试", self.id),
            ));
        };
        // Guards, because the caller may drop this future at any await (its
        // connection cut, shutdown): a lost half-open probe would keep the
        // breaker failing fast for good, and a lost waiter skews the gauge.
        let mut verdict = Verdict {
            breaker: &self.breaker,
            pass: Some(pass),
        };
        let waiting = Counted::new(&self.stats.waiters);
        let slot = tokio::time::timeout(self.acquire_timeout, self.slots.acquire()).await;
        drop(waiting);
        let Ok(Ok(_slot)) = slot else {
            verdict.release();
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            return Err(CallError::new(
                RspCode::Busy,
                format!(
                    "后端 {} 在途请求已满（{} 个），等待 {} 毫秒无空闲",
                    self.id,
                    self.slots_total,
                    self.acquire_timeout.as_millis()
                ),
            ));
        };
        let result = match self.mode {
            BackendMode::Multiplex => self.call_mux(msg, deadline, timeout).await,
            _ => self.call_exclusive(msg, deadline, timeout).await,
        };
        self.judge(verdict, &result);
        result
    }

    fn judge(&self, mut verdict: Verdict<'_>, result: &Result<Bytes, CallError>) {
        let Some(pass) = verdict.pass.take() else {
            return;
        };
        match result {
            Ok(_) => self.breaker.success(pass),
            Err(e) if e.error.code == RspCode::Busy => {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                self.breaker.release(pass)
            }
            Err(_) => self.breaker.failure(pass),
        }
    }

    async fn call_exclusive(
        &self,
        msg: &Bytes,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let (mut conn, born, reused) = match self.take_idle() {
            Some((c, born)) => (c, born, true),
            // Boxed: connecting is the cold path, and its state would
            // otherwise sit in every request's future (moved twice per message).
            None => (
                Box::pin(self.connect(deadline)).await?,
                Instant::now(),
                false,
            ),
        };
        match exchange(&mut conn, msg, deadline).await {
            Ok(answer) => {
                // An answer for another request means the stream is out of
                // step (a duplicate or stray answer): never reuse it.
                let in_step = !self.fixed_form || self.mux_key.same(&answer, msg);
                if self.mode == BackendMode::Long && in_step {
                    self.put_idle(conn, born);
                } else if !in_step {
                    self.stats.dropped_dead.fetch_add(1, Ordering::Relaxed);
                }
                Ok(answer)
            }
            Err(Exchange::TimedOut) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(CallError::new(
                    RspCode::BackendTimeout,
                    format!("后端 {} 在 {} 毫秒内未应答", self.id, timeout.as_millis()),
                ))
            }
            Err(Exchange::Closed(why)) => Err(CallError {
                error: GwError::new(
                    RspCode::BackendTimeout,
                    format!("后端 {} 连接中断，结果未知：{why}", self.id),
                ),
                stale_reuse: reused,
            }),
            Err(Exchange::BadFrame(e)) => {
                let mut error = GwError::new(
                    RspCode::BadAnswer,
                    format!("后端 {} 应答帧非法：{e}", self.id),
                );
                error.reached_backend = true;
                Err(CallError {
                    error,
                    stale_reuse: false,
                })
            }
        }
    }

    async fn connect_stream(&self, limit: Duration) -> Result<TcpStream, String> {
        let r = match tokio::time::timeout(limit, TcpStream::connect(self.address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                self.stats.connects.fetch_add(1, Ordering::Relaxed);
                Ok(stream)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("{} 毫秒内未连通", limit.as_millis())),
        };
        self.last_connect_failed
            .store(r.is_err(), Ordering::Relaxed);
        if r.is_err() {
            self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn connect(&self, deadline: tokio::time::Instant) -> Result<Conn, CallError> {
        let limit = self
            .connect_timeout
            .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        self.connect_stream(limit)
            .await
            .map(|s| Framed::new(s, self.codec))
            .map_err(|why| {
                CallError::new(
                    RspCode::BackendUnreachable,
                    format!("无法连接后端 {}（{}）：{why}", self.id, self.address),
                )
            })
    }

    fn usable(&self, i: &Idle) -> bool {
        i.since.elapsed() < self.idle_timeout
            && i.born.elapsed() < self.max_lifetime
            && is_alive(&i.conn)
    }

    /// Takes the most recently used idle connection that is still alive.
    fn take_idle(&self) -> Option<(Conn, Instant)> {
        loop {
            let idle = self.idle.lock().ok()?.pop()?;
            if self.usable(&idle) {
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Some((idle.conn, idle.born));
            }
            self.stats.dropped_dead.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn put_idle(&self, conn: Conn, born: Instant) {
        if !conn.read_buffer().is_empty() || born.elapsed() >= self.max_lifetime {
            // Bytes beyond the answer put the stream out of step; old ones retire.
            self.stats.dropped_dead.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(Idle {
                conn,
                born,
                since: Instant::now(),
            });
        }
    }

    /// Drops idle connections that expired or died, and keeps `min_idle`
    /// warm. Run by the server every half second or so.
    pub async fn maintain(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            let before = idle.len();
            idle.retain(|i| self.usable(i));
            let dropped = (before - idle.len()) as u64;
            self.stats
                .dropped_dead
                .fetch_add(dropped, Ordering::Relaxed);
        }
        if let Ok(mut mux) = self.mux.lock() {
            mux.retain(|c| {
                c.shared.alive.load(Ordering::Acquire) && c.born.elapsed() < self.max_lifetime
            });
        }
        if self.mode != BackendMode::Long {
            return;
        }
        while self.idle_count() + self.in_use() < self.min_idle {
            let now = Instant::now();
            let ready = self
                .backoff
                .lock()
                .map(|b| now >= b.next_attempt)
                .unwrap_or(false);
            if !ready {
                return;
            }
            match self.connect_stream(self.connect_timeout).await {
                Ok(s) => {
                    if let Ok(mut b) = self.backoff.lock() {
                        b.failures = 0;
                    }
                    self.put_idle(Framed::new(s, self.codec), Instant::now());
                }
                Err(why) => {
                    let wait = self.next_backoff();
                    tracing::warn!(backend = %self.id, "warming connection failed: {why}; next try in {wait:?}");
                    return;
                }
            }
        }
    }

    /// Exponential backoff with jitter in [0.5, 1.5) of the step.
    fn next_backoff(&self) -> Duration {
        let Ok(mut b) = self.backoff.lock() else {
            return self.backoff_base;
        };
        b.failures = b.failures.saturating_add(1);
        let step = self
            .backoff_base
            .saturating_mul(1u32 << b.failures.min(16).saturating_sub(1))
            .min(self.backoff_max);
        let jitter = 0.5 + rand::random::<f64>();
        let wait = step.mul_f64(jitter);
        b.next_attempt = Instant::now() + wait;
        wait
    }

    /// Closes every idle connection (shutdown, or a reload dropped the backend).
    pub fn drain(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        if let Ok(mut mux) = self.mux.lock() {
            mux.clear();
        }
    }

    // ---- multiplex ----

    async fn call_mux(
        &self,
        msg: &Bytes,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let Some(key) = self.mux_key.of(msg) else {
            return Err(CallError::new(
                RspCode::Malformed,
                "报文头不完整，无法按渠道与流水号匹配应答".into(),
            ));
        };
        let (conn, rx, ticket) = self.mux_register(&key, deadline).await?;
        // From here on, however this future ends (even dropped by a caller
        // that went away), the key is released or remembered as expired.
        let mut guard = Registered {
            shared: &conn.shared,
            key,
            ticket,
            sent: false,
            settled: false,
        };
        let answers_before = conn.shared.answers.load(Ordering::Acquire);
        // The queue is bounded: when the backend stops reading it fills, and
        // the wait for room must end at the deadline like everything else.
        let queued = Queued {
            msg: msg.clone(),
            key,
            deadline,
            ticket,
        };
        let closed = || {
            CallError::new(
                RspCode::BackendUnreachable,
                format!("后端 {} 多路连接已关闭，请求未发送", self.id),
            )
        };
        match conn.tx.try_send(queued) {
            Ok(()) => guard.sent = true,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(closed()),
            // A full queue is the cold path: only then a timed wait, boxed
            // so that its state stays out of every request's future.
            Err(mpsc::error::TrySendError::Full(queued)) => {
                match Box::pin(tokio::time::timeout_at(deadline, conn.tx.send(queued))).await {
                    Ok(Ok(())) => guard.sent = true,
                    Ok(Err(_)) => return Err(closed()),
                    Err(_) => {
                        return Err(CallError::new(
                            RspCode::Busy,
                            format!("后端 {} 多路连接发送队列已满，请求未发送", self.id),
                        ));
                    }
                }
            }
        }
        let answer = tokio::time::timeout_at(deadline, rx).await;
        // Answered, or the connection closed (its table is cleared): nothing
        // is left to release. A timeout is released by the guard (expired).
        guard.settled = answer.is_ok();
        match answer {
            Ok(Ok(answer)) => Ok(answer),
            // The connection closed. Not taken by then, the writer never
            // sends it (it checks the close after marking what it takes).
            Ok(Err(_)) if !conn.shared.was_taken(ticket) => Err(closed()),
            Ok(Err(_)) => Err(CallError::new(
                RspCode::BackendTimeout,
                format!("后端 {} 连接中断，结果未知", self.id),
            )),
            Err(_) => {
                // Not taken by the writer yet, so never to be: its deadline
                // has passed; or taken and dropped as stale. Either way not
                // sent, and safe to send again.
                let unsent = !conn.shared.was_taken(ticket) || conn.shared.skipped(&key, ticket);
                if !unsent {
                    self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                let silent = conn.shared.answers.load(Ordering::Acquire) == answers_before;
                if silent
                    && conn.shared.silent_timeouts.fetch_add(1, Ordering::AcqRel) + 1
                        >= WEDGED_AFTER
                {
                    // Timeouts in a row with not one answer on the connection
                    // while they waited: the backend is wedged. Retire the
                    // connection, so the next requests get a fresh one.
                    tracing::warn!(backend = %self.id, "multiplexed connection answered nothing for {WEDGED_AFTER} timed-out requests in a row; retiring it");
                    self.stats.dropped_dead.fetch_add(1, Ordering::Relaxed);
                    conn.shared.close();
                }
                Err(if unsent {
                    CallError::new(
                        RspCode::Busy,
                        format!(
                            "后端 {} 多路连接发送积压，请求在 {} 毫秒内未能发出，未发送",
                            self.id,
                            timeout.as_millis()
                        ),
                    )
                } else {
                    CallError::new(
                        RspCode::BackendTimeout,
                        format!("后端 {} 在 {} 毫秒内未应答", self.id, timeout.as_millis()),
                    )
                })
            }
        }
    }

    /// Picks a live connection that may carry `key`, opening one if the pool
    /// is not full, and registers the waiter.
    async fn mux_register(
        &self,
        key: &MuxId,
        deadline: tokio::time::Instant,
    ) -> Result<(Arc<MuxConn>, oneshot::Receiver<Bytes>, u64), CallError> {
        loop {
            let open = {
                let Ok(mut live) = self.mux.lock() else {
                    return Err(self.mux_key_busy());
                };
                live.retain(|c| c.shared.alive.load(Ordering::Acquire));
                // Open another connection while the pool is below its size; the
                // counter keeps concurrent callers from overshooting it.
                let opening = self.mux_opening.load(Ordering::Acquire);
                if live.len() + opening < self.max {
                    self.mux_opening.fetch_add(1, Ordering::AcqRel);
                    true
                } else if live.is_empty() {
                    false
                } else {
                    // Round robin over the live connections, under the lock: no
                    // copy of the list per request.
                    let start = self.mux_next.fetch_add(1, Ordering::Relaxed);
                    for i in 0..live.len() {
                        let conn = &live[(start + i) % live.len()];
                        if let Some((rx, ticket)) = conn.shared.register(key) {
                            return Ok((conn.clone(), rx, ticket));
                        }
                    }
                    return Err(self.mux_key_busy());
                }
            };
            if !open {
                // Others are opening the first connections: wait for them briefly.
                if tokio::time::Instant::now() >= deadline {
                    return Err(CallError::new(
                        RspCode::BackendUnreachable,
                        format!("后端 {} 多路连接未能建立，请求未发送", self.id),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            // Counted down however the connect ends, even if this request is
            // dropped meanwhile: a leaked count would stop all reconnects.
            let opening = Counted(&self.mux_opening);
            // Boxed, as in `call_exclusive`: the cold path stays out of every request's future.
            let conn = Box::pin(self.mux_connect(deadline)).await?;
            if let Ok(mut v) = self.mux.lock() {
                v.push(conn.clone());
            }
            drop(opening);
            return match conn.shared.register(key) {
                Some((rx, ticket)) => Ok((conn, rx, ticket)),
                None => Err(self.mux_key_busy()),
            };
        }
    }

    fn mux_key_busy(&self) -> CallError {
        CallError::new(
            RspCode::Busy,
            format!(
                "同一渠道流水号的请求仍在后端 {} 途中或刚超时，请稍后",
                self.id
            ),
        )
    }

    async fn mux_connect(&self, deadline: tokio::time::Instant) -> Result<Arc<MuxConn>, CallError> {
        let conn = self.connect(deadline).await?;
        let parts = conn.into_parts();
        let (r, w) = parts.io.into_split();
        let shared = Arc::new(MuxShared::new(self.stats.mux.clone(), self.mux_owed_max));
        let (tx, mut rx) = mpsc::channel::<Queued>(MUX_QUEUE);
        let mut writer = FramedWrite::new(w, self.codec);
        // Requests queue up to this much before a write is forced mid-batch.
        writer.set_backpressure_boundary(MUX_BATCH_BYTES);
        let wshared = shared.clone();
        tokio::spawn(async move {
            let work = async {
                let mut batch = Vec::new();
                while let Some(first) = rx.recv().await {
                    // Let the other callers that are ready in this turn of the
                    // scheduler queue their requests first: one write carries
                    // them all, instead of one write per request.
                    tokio::task::yield_now().await;
                    batch.push(first);
                    while batch.len() < MUX_QUEUE {
                        match rx.try_recv() {
                            Ok(q) => batch.push(q),
                            Err(_) => break,
                        }
                    }
                    let mut start = 0;
                    while start < batch.len() {
                        // One write's worth at a time is marked taken, before
                        // the close flag and the clock are read: a caller that
                        // finds its request not taken once the connection
                        // closed or its deadline passed knows that it never
                        // will be sent.
                        let (end, last) = mux_chunk(&batch, start);
                        wshared.taken.fetch_max(last, Ordering::SeqCst);
                        if wshared.closed.load(Ordering::SeqCst) {
                            return;
                        }
                        let now = tokio::time::Instant::now();
                        for q in &mut batch[start..end] {
                            // Past its deadline it stays unsent: its caller has its answer.
                            if q.deadline <= now {
                                wshared.unsent(q.key, q.ticket);
                            } else if writer.feed(std::mem::take(&mut q.msg)).await.is_err() {
                                return;
                            }
                        }
                        // Written before the next chunk is marked: a chunk's
                        // feeds never wait, so what is marked taken is
                        // written, and nothing waits marked but unwritten
                        // behind a blocked write.
                        if writer.flush().await.is_err() {
                            return;
                        }
                        start = end;
                    }
                    batch.clear();
                }
            };
            tokio::select! {
                _ = work => {}
                _ = wshared.retired.cancelled() => {}
            }
            wshared.close();
        });
        // A big read buffer takes a whole batch of answers in one read.
        let mut reader = FramedRead::with_capacity(r, self.codec, MUX_BATCH_BYTES);
        let rshared = shared.clone();
        let key = self.mux_key.clone();
        let id = self.id.clone();
        // The reader counts stray answers into the pool's counters, through the shared state.
        tokio::spawn(async move {
            let work = async {
                while let Some(frame) = reader.next().await {
                    let Ok(frame) = frame else { break };
                    if frame.is_empty() {
                        continue;
                    }
                    rshared.answers.fetch_add(1, Ordering::Release);
                    rshared.silent_timeouts.store(0, Ordering::Release);
                    match key.of(&frame) {
                        Some(k) => rshared.deliver(&k, frame),
                        None => {
                            rshared.counters.unmatched.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            };
            // A retired connection stops reading: its socket closes once the
            // writer has stopped too.
            tokio::select! {
                _ = work => {}
                _ = rshared.retired.cancelled() => {}
            }
            tracing::debug!(backend = %id, "multiplexed connection closed");
            rshared.close();
        });
        Ok(Arc::new(MuxConn {
            tx,
            shared,
            born: Instant::now(),
        }))
    }

    /// Connections dropped as dead, expired, out of step, wedged, or owing
    /// too many late answers.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped_dead.load(Ordering::Relaxed)
            + self.stats.mux.retired_owing.load(Ordering::Relaxed)
    }

    /// Answers that came after their request timed out (multiplex mode).
    pub fn late_answers(&self) -> u64 {
        self.stats.mux.late.load(Ordering::Relaxed)
    }

    /// Answers that matched no request at all (multiplex mode).
    pub fn unmatched_answers(&self) -> u64 {
        self.stats.mux.unmatched.load(Ordering::Relaxed)
    }
}

/// Timed-out requests in a row, with no answer read meanwhile, after which
/// a multiplexed connection counts as wedged. One slow request is a late
/// answer to count, not a dead connection.
const WEDGED_AFTER: u32 = 3;

/// How many request bytes a multiplexed connection gathers into one write,
/// and how big a read of answers may be.
const MUX_BATCH_BYTES: usize = 64 * 1024;

/// The end of the chunk of `batch` from `start` that one write carries (at
/// least one request), and the highest ticket in it.
fn mux_chunk(batch: &[Queued], start: usize) -> (usize, u64) {
    let (mut end, mut bytes, mut last) = (start, 0, 0);
    while let Some(q) = batch.get(end) {
        if end > start && bytes + q.msg.len() > MUX_BATCH_BYTES {
            break;
        }
        bytes += q.msg.len();
        last = last.max(q.ticket);
        end += 1;
    }
    (end, last)
}

/// A multiplex key, channel and SeqNo without padding: kept inline, so
/// matching an answer allocates nothing for the usual header widths.
#[derive(Clone, Copy)]
pub struct MuxId {
    buf: [u8; MUX_ID_MAX],
    len: u8,
}

/// Channel plus SeqNo, with a separator; `txgate check` refuses a header
/// whose widths exceed it for a multiplexed backend.
pub const MUX_ID_MAX: usize = 64;

impl MuxId {
    fn new(channel: &[u8], seq: &[u8]) -> Option<MuxId> {
        let len = channel.len() + 1 + seq.len();
        if len > MUX_ID_MAX {
            return None;
        }
        let mut buf = [0u8; MUX_ID_MAX];
        buf[..channel.len()].copy_from_slice(channel);
        buf[channel.len() + 1..len].copy_from_slice(seq);
        Some(MuxId {
            buf,
            len: len as u8,
        })
    }
}

impl MuxId {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

// By the bytes in use only: hashing the whole buffer cost more than the lookup.
impl PartialEq for MuxId {
    fn eq(&self, other: &MuxId) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for MuxId {}

impl std::hash::Hash for MuxId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

impl std::fmt::Debug for MuxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MuxId({:?})",
            String::from_utf8_lossy(&self.buf[..self.len as usize])
        )
    }
}

/// One multiplexed connection: a writer task fed by `tx`, a reader task
/// that hands each answer to the waiter registered under its key.
#[derive(Debug)]
struct MuxConn {
    tx: mpsc::Sender<Queued>,
    shared: Arc<MuxShared>,
    born: Instant,
}

/// A request waiting for the writer, with the deadline past which its
/// caller has its answer and the writer no longer takes it.
#[derive(Debug)]
struct Queued {
    msg: Bytes,
    key: MuxId,
    deadline: tokio::time::Instant,
    /// From `MuxShared::tickets`, to tell whether the writer took it.
    ticket: u64,
}

/// A registered waiter. On drop it releases the key if the request was
/// never queued, or remembers it as expired if it may have been sent, so a
/// late answer is never handed to a newer request with the same key.
struct Registered<'a> {
    shared: &'a MuxShared,
    key: MuxId,
    ticket: u64,
    /// Queued for the writer: it may have reached the backend.
    sent: bool,
    /// Answered, or the connection closed: nothing to release.
    settled: bool,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if self.sent {
            self.shared.expire(self.key, self.ticket);
        } else {
            self.shared.take(&self.key, self.ticket);
        }
    }
}

/// Requests queued for one multiplexed connection's writer; beyond this a
/// caller waits for room, until its deadline.
const MUX_QUEUE: usize = 1024;

/// Timed-out requests whose answers a multiplexed connection may still owe.
/// Their keys are kept until the late answer comes, so that it is told apart
/// from a stray one and never given to a new request with that key; past
/// this many the connection is retired rather than a key forgotten.
const MUX_OWED_MAX: usize = 4096;

/// What a multiplexed connection's reader, writer and callers share: the
/// waiters by key, the keys that timed out, and whether it is alive.
#[derive(Debug)]
struct MuxShared {
    table: Mutex<MuxTable>,
    alive: AtomicBool,
    /// Answers read so far: a request that times out with none read since
    /// it was sent shows a wedged backend.
    answers: AtomicU64,
    /// Such timeouts since the last answer.
    silent_timeouts: std::sync::atomic::AtomicU32,
    /// Tickets handed to queued requests (the first is 1).
    tickets: AtomicU64,
    /// The highest ticket the writer has taken from its queue. Below a
    /// request's ticket, the request is still queued.
    taken: AtomicU64,
    /// Set by `close`, before the waiters are told; the writer checks it
    /// after marking each request taken.
    closed: AtomicBool,
    /// Cancelled to stop the reader and writer of a retired connection.
    retired: tokio_util::sync::CancellationToken,
    counters: Arc<MuxCounters>,
    /// Retire past this many owed answers (`MUX_OWED_MAX`; tests lower it).
    owed_max: usize,
}

/// Waiters and timed-out keys under one lock: each request and each answer
/// takes it once.
#[derive(Debug, Default)]
struct MuxTable {
    pending: HashMap<MuxId, Waiter>,
    /// Keys that timed out and whose late answer has not come yet, with the
    /// ticket of the request that owes it.
    expired: HashMap<MuxId, u64>,
    /// Retiring: no new requests; closed once the last waiter is done.
    draining: bool,
}

/// A request waiting for its answer. The ticket tells it apart from an
/// earlier or later request with the same key.
#[derive(Debug)]
struct Waiter {
    tx: oneshot::Sender<Bytes>,
    ticket: u64,
    /// The writer dropped it as stale: it was never sent, and is owed no
    /// answer when it gives up.
    skipped: bool,
}

impl MuxTable {
    /// A draining connection with no waiter left is done.
    fn drained(&self) -> bool {
        self.draining && self.pending.is_empty()
    }
}

/// Counters of answers that found no waiter.
#[derive(Debug, Default)]
pub struct MuxCounters {
    pub late: AtomicU64,
    pub unmatched: AtomicU64,
    /// Connections retired because they owed too many late answers.
    pub retired_owing: AtomicU64,
}

impl MuxShared {
    fn new(counters: Arc<MuxCounters>, owed_max: usize) -> Self {
        MuxShared {
            table: Mutex::new(MuxTable::default()),
            alive: AtomicBool::new(true),
            answers: AtomicU64::new(0),
            silent_timeouts: std::sync::atomic::AtomicU32::new(0),
            tickets: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            retired: tokio_util::sync::CancellationToken::new(),
            counters,
            owed_max,
        }
    }

    /// Registers a waiter for `key`, with its ticket.
    fn register(&self, key: &MuxId) -> Option<(oneshot::Receiver<Bytes>, u64)> {
        if !self.alive.load(Ordering::Acquire) {
            return None;
        }
        let mut t = self.table.lock().ok()?;
        // Checked again under the lock: `close` clears the table under it.
        if !self.alive.load(Ordering::Acquire)
            || t.expired.contains_key(key)
            || t.pending.contains_key(key)
        {
            return None;
        }
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        t.pending.insert(
            *key,
            Waiter {
                tx,
                ticket,
                skipped: false,
            },
        );
        Some((rx, ticket))
    }

    /// Releases the key of a request that was never queued.
    fn take(&self, key: &MuxId, ticket: u64) {
        let drained = {
            let Ok(mut t) = self.table.lock() else { return };
            if t.pending.get(key).is_some_and(|w| w.ticket == ticket) {
                t.pending.remove(key);
            }
            t.drained()
        };
        if drained {
            self.close();
        }
    }

    /// Called when a queued request gave up: the key is owed a late answer
    /// unless the writer dropped the request unsent.
    fn expire(&self, key: MuxId, ticket: u64) {
        let drained = {
            let Ok(mut t) = self.table.lock() else { return };
            // Only our own waiter: if none is there, the answer came at the
            // last moment (delivery counted it late); if another is, a newer
            // request registered the key after that answer.
            if t.pending.get(&key).is_none_or(|w| w.ticket != ticket) {
                return;
            }
            if t.pending.remove(&key).is_some_and(|w| !w.skipped) {
                t.expired.insert(key, ticket);
            }
            // Decided under the lock, so that it happens once. Retired
            // gently: requests still waiting keep their chance of an answer.
            if t.expired.len() > self.owed_max && !t.draining {
                t.draining = true;
                self.alive.store(false, Ordering::Release);
                self.counters.retired_owing.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    owed = t.expired.len(),
                    "multiplexed connection owes more answers than it may; retiring it"
                );
            }
            t.drained()
        };
        if drained {
            self.close();
        }
    }

    /// The writer dropped a request past its deadline: it was never sent,
    /// so it is owed no answer, and its key is free again once it gives up.
    /// Matched by ticket: the key may belong to another request by now.
    fn unsent(&self, key: MuxId, ticket: u64) {
        let Ok(mut t) = self.table.lock() else { return };
        if t.expired.get(&key) == Some(&ticket) {
            t.expired.remove(&key);
        } else if let Some(w) = t.pending.get_mut(&key) {
            if w.ticket == ticket {
                w.skipped = true;
            }
        }
    }

    /// Whether the writer has taken the request with this ticket from its
    /// queue (it may have been sent). Not taken once the connection closed
    /// or the deadline passed, it never will be.
    fn was_taken(&self, ticket: u64) -> bool {
        self.taken.load(Ordering::SeqCst) >= ticket
    }

    /// Whether the writer dropped this waiting request as stale.
    fn skipped(&self, key: &MuxId, ticket: u64) -> bool {
        self.table.lock().is_ok_and(|t| {
            t.pending
                .get(key)
                .is_some_and(|w| w.ticket == ticket && w.skipped)
        })
    }

    fn deliver(&self, key: &MuxId, answer: Bytes) {
        let (waiter, late, drained) = match self.table.lock() {
            Ok(mut t) => {
                let w = t.pending.remove(key);
                // A late answer frees its key: it is consumed here.
                let late = w.is_none() && t.expired.remove(key).is_some();
                (w, late, t.drained())
            }
            Err(_) => (None, false, false),
        };
        if drained {
            self.close();
        }
        match waiter {
            Some(waiter) => {
                if waiter.tx.send(answer).is_err() {
                    // The waiter gave up between the lookup and now.
                    self.counters.late.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                let counter = if late {
                    &self.counters.late
                } else {
                    &self.counters.unmatched
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    late,
                    "multiplexed answer matches no waiting request; dropped"
                );
            }
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Ok(mut t) = self.table.lock() {
            self.alive.store(false, Ordering::Release);
            // Dropping the senders tells every waiter the connection is gone.
            t.pending.clear();
        } else {
            self.alive.store(false, Ordering::Release);
        }
        self.retired.cancel();
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A pool of backend "T" at `addr`; `settings` are extra TOML lines.
    fn test_pool(addr: SocketAddr, mode: &str, settings: &str) -> Pool {
        let cfg: BackendConfig = toml::from_str(&format!(
            "id = \"T\"\nname = \"t\"\naddress = \"{addr}\"\nmode = \"{mode}\"\n{settings}"
        ))
        .unwrap();
        Pool::new(
            &cfg,
            addr,
            1 << 20,
            MuxKey {
                channel: 0..6,
                seq: 6..26,
            },
        )
    }

    fn mux_pool(addr: SocketAddr) -> Pool {
        test_pool(addr, "multiplex", "pool = { max = 1 }")
    }

    /// A message (the codec adds the ascii8 length) that starts with
    /// channel (6) and SeqNo (20).
    fn frame(seq: usize) -> Bytes {
        Bytes::from(format!("CUS   {seq:<20}{}", "x".repeat(200)))
    }

    /// Echoes every frame back, on every connection, and reports how many
    /// frames each read held.
    async fn echo_counting(listener: TcpListener, reads: mpsc::UnboundedSender<usize>) {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(echo_conn(s, reads.clone()));
        }
    }

    /// Takes the complete ascii8 frames (prefix included) off the front of `buf`.
    fn take_frames(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while buf.len() >= 8 {
            let len: usize = std::str::from_utf8(&buf[..8]).unwrap().parse().unwrap();
            if buf.len() < 8 + len {
                break;
            }
            frames.push(buf.drain(..8 + len).collect());
        }
        frames
    }

    async fn echo_conn(mut s: tokio::net::TcpStream, reads: mpsc::UnboundedSender<usize>) {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            let frames = take_frames(&mut buf);
            if s.write_all(&frames.concat()).await.is_err() {
                return;
            }
            let _ = reads.send(frames.len());
        }
    }

    // One worker, callers as separate tasks: as `serve --workers 1` runs them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn multiplex_sends_requests_ready_together_in_one_write() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Arc::new(mux_pool(listener.local_addr().unwrap()));
        let (tx, mut reads) = mpsc::unbounded_channel();
        tokio::spawn(echo_counting(listener, tx));
        let timeout = Duration::from_secs(5);
        // The first request opens the connection.
        let first = frame(0);
        assert_eq!(pool.call(&first, timeout).await.unwrap(), first);
        assert_eq!(reads.recv().await, Some(1));
        // Twenty caller tasks ready in the same turn share one write. They
        // are spawned from the worker, so none runs before all exist.
        let spawner = tokio::spawn(async move {
            let callers: Vec<_> = (1..=20)
                .map(|seq| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        let m = frame(seq);
                        let a = pool.call(&m, timeout).await.unwrap();
                        assert_eq!(a, m, "each caller gets its own answer");
                    })
                })
                .collect();
            for c in callers {
                c.await.unwrap();
            }
        });
        spawner.await.unwrap();
        let mut got = 0;
        let mut batches = 0;
        while got < 20 {
            got += reads.recv().await.unwrap();
            batches += 1;
        }
        assert_eq!(
            batches, 1,
            "20 requests ready together went out in {batches} writes"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn multiplex_late_answer_is_counted_and_its_key_refused() {
        // A backend that answers SeqNo 8 at once and SeqNo 7 late.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = mux_pool(listener.local_addr().unwrap());
        tokio::spawn(answering(listener, |seq| {
            Some(Duration::from_millis(if seq == 7 { 200 } else { 0 }))
        }));
        let timeout = Duration::from_millis(100);
        let late = frame(7);
        let prompt = frame(8);
        let (e, ok) = tokio::join!(pool.call(&late, timeout), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pool.call(&prompt, timeout).await
        });
        assert_eq!(ok.unwrap(), prompt, "the prompt answer comes back");
        assert_eq!(e.unwrap_err().error.code, RspCode::BackendTimeout);
        // The same channel and SeqNo again, on the same connection (it did
        // answer, so it is not retired): refused, never matched to the late
        // answer.
        let again = pool.call(&late, timeout).await.unwrap_err();
        assert_eq!(again.error.code, RspCode::Busy);
        let counted = async {
            while pool.late_answers() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), counted)
            .await
            .expect("the late answer is counted");
        assert_eq!(pool.late_answers(), 1);
        assert_eq!(pool.unmatched_answers(), 0);
        // The late answer consumed its key: the key serves a new request.
        let answer = pool.call(&late, Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer, late);
        assert_eq!(pool.stats.connects.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn multiplex_connection_retired_for_owing_still_answers_its_waiting_requests() {
        // Odd SeqNos are never answered, 4 after 300 ms, other even ones at once.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut pool = mux_pool(listener.local_addr().unwrap());
        pool.mux_owed_max = 1;
        tokio::spawn(answering(listener, |seq| match seq {
            4 => Some(Duration::from_millis(300)),
            s if s.is_multiple_of(2) => Some(Duration::ZERO),
            _ => None,
        }));
        owe_one(&pool, 1, 2).await;
        let short = Duration::from_millis(100);
        let after = |ms| tokio::time::sleep(Duration::from_millis(ms));
        // 4 waits while 3 times out: the second debt retires the connection.
        let (slow, three, six) = (frame(4), frame(3), frame(6));
        let (slow_answer, owed, answered) = tokio::join!(
            pool.call(&slow, Duration::from_secs(5)),
            pool.call(&three, short),
            async {
                after(20).await;
                pool.call(&six, short).await
            }
        );
        assert_eq!(owed.unwrap_err().error.code, RspCode::BackendTimeout);
        assert_eq!(answered.unwrap(), six);
        assert_eq!(
            slow_answer.unwrap(),
            slow,
            "retired gently: the waiting request got its answer"
        );
        assert_retired_and_replaced(&pool, 8).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn multiplex_request_left_unsent_at_its_deadline_frees_its_key() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = mux_pool(listener.local_addr().unwrap());
        let (tx, mut reads) = mpsc::unbounded_channel();
        tokio::spawn(echo_counting(listener, tx));
        let warm = frame(1);
        assert_eq!(
            pool.call(&warm, Duration::from_secs(5)).await.unwrap(),
            warm
        );
        assert_eq!(reads.recv().await, Some(1));
        // Its deadline has passed before the writer gets to it: the caller
        // is told it was not sent (GW0203), and the writer drops it unsent.
        let stale = frame(2);
        let err = pool.call(&stale, Duration::ZERO).await.unwrap_err();
        assert_eq!(err.error.code, RspCode::Busy, "{}", err.error);
        assert!(!err.error.reached_backend);
        assert!(err.error.detail.contains("未发送"), "{}", err.error);
        let shared = pool.mux.lock().unwrap()[0].shared.clone();
        let settled = async {
            while !shared.table.lock().unwrap().expired.is_empty() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), settled)
            .await
            .expect("the unsent request's key is owed nothing");
        // The same channel and SeqNo again: sent, and answered.
        assert_eq!(
            pool.call(&stale, Duration::from_secs(5)).await.unwrap(),
            stale
        );
        assert_eq!(
            reads.recv().await,
            Some(1),
            "only the retry reached the backend"
        );
        let t = shared.table.lock().unwrap();
        assert!(t.pending.is_empty() && t.expired.is_empty());
    }

    /// Request `owed` times out while `answered`, sent 20 ms later, is
    /// answered: the connection owes one more answer but is not wedged.
    async fn owe_one(pool: &Pool, owed: usize, answered: usize) {
        let (owed, answered) = (frame(owed), frame(answered));
        let (timed_out, ok) = tokio::join!(pool.call(&owed, Duration::from_millis(100)), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pool.call(&answered, Duration::from_secs(5)).await
        });
        assert_eq!(ok.unwrap(), answered);
        assert_eq!(timed_out.unwrap_err().error.code, RspCode::BackendTimeout);
    }

    /// One connection was retired, and the next request is served on a new one.
    async fn assert_retired_and_replaced(pool: &Pool, seq: usize) {
        assert_eq!(pool.dropped(), 1);
        let next = frame(seq);
        assert_eq!(
            pool.call(&next, Duration::from_secs(5)).await.unwrap(),
            next
        );
        assert_eq!(pool.stats.connects.load(Ordering::Relaxed), 2);
    }

    /// Answers each request after the delay `rule` gives for its SeqNo, or never.
    async fn answering(listener: TcpListener, rule: fn(usize) -> Option<Duration>) {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, w) = s.into_split();
                let w = Arc::new(tokio::sync::Mutex::new(w));
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 1 << 16];
                while let Ok(n @ 1..) = r.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    for f in take_frames(&mut buf) {
                        let seq: usize = std::str::from_utf8(&f[8 + 6..8 + 26])
                            .unwrap()
                            .trim()
                            .parse()
                            .unwrap();
                        let Some(delay) = rule(seq) else { continue };
                        let w = w.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = w.lock().await.write_all(&f).await;
                        });
                    }
                }
            });
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn multiplex_connection_owing_too_many_late_answers_is_retired_not_forgetful() {
        // Even SeqNos are answered at once, odd ones never: the connection
        // is alive (not wedged) but owes an answer for every odd request.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut pool = mux_pool(listener.local_addr().unwrap());
        pool.mux_owed_max = 2;
        tokio::spawn(answering(listener, |seq| {
            seq.is_multiple_of(2).then_some(Duration::ZERO)
        }));
        for round in 0..3 {
            owe_one(&pool, 2 * round + 1, 2 * round + 2).await;
            assert_eq!(pool.stats.connects.load(Ordering::Relaxed), 1);
        }
        // Three owed, two allowed.
        assert_retired_and_replaced(&pool, 100).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn multiplex_connection_that_answers_nothing_is_retired_and_replaced() {
        // The first connection is wedged: read, never answered. The second
        // one echoes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = mux_pool(listener.local_addr().unwrap());
        let (tx, mut reads) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut wedged, _) = listener.accept().await.unwrap();
            let mut sink = vec![0u8; 1 << 16];
            let _ = wedged.read(&mut sink).await;
            echo_counting(listener, tx).await;
            drop(wedged);
        });
        let t = Duration::from_millis(100);
        let (a, b, c) = (frame(1), frame(3), frame(4));
        let timed_out = tokio::join!(pool.call(&a, t), pool.call(&b, t), pool.call(&c, t));
        for r in [timed_out.0, timed_out.1, timed_out.2] {
            assert_eq!(r.unwrap_err().error.code, RspCode::BackendTimeout);
        }
        let next = frame(2);
        let answer = pool.call(&next, Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer, next, "a fresh connection serves the next request");
        assert_eq!(reads.recv().await, Some(1));
        assert_eq!(pool.stats.connects.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn multiplex_request_dropped_while_connecting_does_not_block_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = mux_pool(listener.local_addr().unwrap());
        let (tx, _reads) = mpsc::unbounded_channel();
        tokio::spawn(echo_counting(listener, tx));
        // Polled once (it starts connecting), then dropped, as a caller's
        // in-flight requests are when its connection is cut.
        let first = frame(1);
        assert!(pool
            .call(&first, Duration::from_secs(5))
            .now_or_never()
            .is_none());
        assert_eq!(pool.mux_opening.load(Ordering::Acquire), 0);
        let next = frame(2);
        let answer = pool.call(&next, Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer, next);
        // Dropped after it was queued: its key is remembered, not leaked as
        // a waiter, and the same key later is refused rather than mismatched.
        let third = frame(3);
        let mut call = Box::pin(pool.call(&third, Duration::from_secs(5)));
        assert!(futures::poll!(&mut call).is_pending());
        drop(call);
        let t = pool.mux.lock().unwrap()[0].shared.clone();
        assert!(
            t.table.lock().unwrap().pending.is_empty(),
            "no waiter left behind"
        );
    }

    /// Accepts one connection and never reads it, for 30 s.
    async fn never_reading(listener: TcpListener) {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multiplex_queue_full_of_an_unread_backend_ends_at_the_deadline() {
        // A backend that accepts and never reads: socket buffers fill, then
        // the writer's queue; callers waiting for room must not hang.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Arc::new(mux_pool(listener.local_addr().unwrap()));
        let held = tokio::spawn(never_reading(listener));
        // Built before any is sent, so all are queued well within the
        // deadline even on a slow, loaded machine.
        let tail = "x".repeat(16 * 1024);
        let msgs: Vec<Bytes> = (0..2500)
            .map(|seq| Bytes::from(format!("CUS   {seq:<20}{tail}")))
            .collect();
        let callers: Vec<_> = msgs
            .into_iter()
            .map(|msg| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.call(&msg, Duration::from_secs(3)).await })
            })
            .collect();
        let all = async {
            let mut codes = HashMap::new();
            for c in callers {
                let code = c.await.unwrap().unwrap_err().error.code;
                *codes.entry(code.as_str()).or_insert(0) += 1;
            }
            codes
        };
        let codes = tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("every caller is answered by its deadline");
        // Those the writer took may have been sent: GW0202. The rest were
        // not, whether queued or waiting for room: GW0203, or GW0201 once
        // the wedged connection is retired at the first timeouts.
        let count = |c: &str| codes.get(c).copied().unwrap_or(0);
        assert!(count("GW0202") > 0, "{codes:?}");
        assert!(count("GW0203") + count("GW0201") > 0, "{codes:?}");
        assert_eq!(
            count("GW0202") + count("GW0203") + count("GW0201"),
            2500,
            "{codes:?}"
        );
        held.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn multiplex_request_still_queued_at_its_deadline_is_answered_not_sent() {
        // A backend that never reads: the writer blocks on the first large
        // requests, and the ones queued behind them are never taken. Its
        // receive buffer is kept small (accepted sockets inherit it), so
        // that 16 MiB cannot fit in the socket buffers on any machine.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(16).unwrap();
        let pool = mux_pool(listener.local_addr().unwrap());
        let held = tokio::spawn(never_reading(listener));
        let tail = "x".repeat(1000 * 1024);
        let msgs: Vec<Bytes> = (0..16)
            .map(|seq| Bytes::from(format!("CUS   {seq:<20}{tail}")))
            .collect();
        // Polled in order on one thread: queued in this order.
        let calls = msgs
            .iter()
            .map(|m| pool.call(m, Duration::from_millis(500)));
        let results =
            tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(calls))
                .await
                .expect("every request is answered at its deadline");
        let errors: Vec<GwError> = results.into_iter().map(|r| r.unwrap_err().error).collect();
        assert_eq!(
            errors[0].code,
            RspCode::BackendTimeout,
            "the first was taken and written: result unknown"
        );
        assert!(errors[0].reached_backend);
        // Not sent: GW0203 at its deadline, or GW0201 if the connection was
        // retired as wedged by the timeouts before it.
        let last = &errors[15];
        assert!(
            matches!(last.code, RspCode::Busy | RspCode::BackendUnreachable),
            "{last}"
        );
        assert!(!last.reached_backend, "{last}");
        assert!(last.detail.contains("未发送"), "{last}");
        held.abort();
    }

    /// Accepts connections and reads them without ever answering.
    async fn silent(listener: TcpListener) {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = vec![0u8; 1 << 16];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn breaker_probe_cancelled_by_its_caller_lets_the_next_probe_through() {
        // The first connection never answers (opens the breaker), the rest echo.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = test_pool(
            listener.local_addr().unwrap(),
            "long",
            "breaker = { failures = 1, cooldown_ms = 0 }",
        );
        let (tx, _reads) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut wedged, _) = listener.accept().await.unwrap();
            let mut sink = vec![0u8; 1 << 16];
            let _ = wedged.read(&mut sink).await;
            echo_counting(listener, tx).await;
            drop(wedged);
        });
        let first = frame(1);
        let err = pool
            .call(&first, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.error.code, RspCode::BackendTimeout);
        assert_eq!(pool.breaker.state(), crate::breaker::BreakerState::Open);
        // The half-open probe is polled once, then its caller goes away.
        let probe = frame(2);
        let mut call = Box::pin(pool.call(&probe, Duration::from_secs(5)));
        assert!(futures::poll!(&mut call).is_pending());
        assert_eq!(pool.breaker.state(), crate::breaker::BreakerState::HalfOpen);
        drop(call);
        let next = frame(3);
        let answer = pool.call(&next, Duration::from_secs(5)).await;
        assert_eq!(
            answer.unwrap(),
            next,
            "a new probe goes through and closes the breaker"
        );
        assert_eq!(pool.breaker.state(), crate::breaker::BreakerState::Closed);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waiter_gauge_counts_down_when_a_waiting_request_is_cancelled() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = test_pool(listener.local_addr().unwrap(), "long", "pool = { max = 1 }");
        tokio::spawn(silent(listener));
        let (a, b) = (frame(1), frame(2));
        let mut holder = Box::pin(pool.call(&a, Duration::from_secs(5)));
        assert!(futures::poll!(&mut holder).is_pending());
        let mut waiter = Box::pin(pool.call(&b, Duration::from_secs(5)));
        assert!(futures::poll!(&mut waiter).is_pending());
        assert_eq!(pool.stats.waiters.load(Ordering::Relaxed), 1);
        drop(waiter);
        assert_eq!(pool.stats.waiters.load(Ordering::Relaxed), 0);
        drop(holder);
        assert_eq!(pool.in_use(), 0, "the cancelled holder gave its slot back");
    }

    #[test]
    fn multiplex_stale_skip_of_an_earlier_request_leaves_a_newer_one_with_its_key_alone() {
        let shared = MuxShared::new(Arc::new(MuxCounters::default()), MUX_OWED_MAX);
        let key = MuxId::new(b"CUS", b"CUS20261204000000001").unwrap();
        // R1 is answered (a stray answer with its key) while still queued;
        // R2 then registers the same key.
        let (_rx1, t1) = shared.register(&key).unwrap();
        shared.deliver(&key, Bytes::from_static(b"stray"));
        let (_rx2, t2) = shared.register(&key).unwrap();
        // The writer reaches R1's stale entry: R2 was sent, not skipped.
        shared.unsent(key, t1);
        assert!(
            !shared.skipped(&key, t2),
            "R2 would be told it was not sent"
        );
        // R2 times out: its key is owed a late answer ...
        shared.expire(key, t2);
        // ... which R1's stale entry, met again, must not forgive.
        shared.unsent(key, t1);
        assert!(
            shared.register(&key).is_none(),
            "R2's late answer could reach a newer request with its key"
        );
        shared.deliver(&key, Bytes::from_static(b"late"));
        assert_eq!(shared.counters.late.load(Ordering::Relaxed), 1);
        assert!(
            shared.register(&key).is_some(),
            "the late answer frees the key"
        );
    }

    #[test]
    fn mux_id_refuses_keys_wider_than_it_holds() {
        assert!(MuxId::new(b"CUS", b"0001").is_some());
        assert!(MuxId::new(&[b'A'; 32], &[b'1'; 31]).is_some());
        assert!(MuxId::new(&[b'A'; 32], &[b'1'; 32]).is_none());
        assert_ne!(MuxId::new(b"CU", b"S1"), MuxId::new(b"CUS", b"1"));
    }
}
