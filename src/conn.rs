//! One caller connection: framed reads, a bound on requests in flight, and
//! answers written in whatever order they complete.
//!
//! One task serves the whole connection: requests run as futures in a
//! `FuturesUnordered` next to the reader, so pipelined requests overlap
//! without a task or a channel per message. Answers that are ready
//! together are written with one flush.

use crate::error::{GwError, RspCode};
use crate::frame::{FrameCodec, FrameError};
use crate::gateway::{reject, Caller, Form, Gateway};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// Limits and timers of caller connections.
#[derive(Debug, Clone, Copy)]
pub struct CallerLimits {
    pub max_in_flight: usize,
    pub idle_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

/// Shutdown signals: `stop` ends reading; `hard` ends the grace period, and
/// requests still in flight are answered GW0202.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    stop: CancellationToken,
    hard: CancellationToken,
    /// Set before either token is cancelled. A connection polls each token
    /// once, to leave its waker, and then only once this is set: polling a
    /// token takes two locks, and a connection's loop turns several times
    /// per message.
    signalled: Arc<AtomicBool>,
}

impl Shutdown {
    /// Stop reading new requests; requests in flight go on.
    pub fn stop(&self) {
        self.signalled.store(true, Ordering::Release);
        self.stop.cancel();
    }

    /// The grace period is over: answer what is left with GW0202.
    pub fn end_grace(&self) {
        self.signalled.store(true, Ordering::Release);
        self.hard.cancel();
    }

    /// A token cancelled with `stop`, for loops that wait on it. A child:
    /// cancelling it does not stop anything else.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.child_token()
    }
}

/// Polls a shutdown future when it must: the first time, whenever the waker
/// differs from the one it holds, and once the signal flag is set. In
/// between, the waker it holds is the one that wakes this task.
fn poll_gated<F: Future>(
    armed: &mut Option<Waker>,
    signalled: &AtomicBool,
    fut: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    let same_waker = armed.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
    if same_waker && !signalled.load(Ordering::Acquire) {
        return Poll::Pending;
    }
    *armed = Some(cx.waker().clone());
    fut.poll(cx)
}

/// Serves one caller connection until it closes, fails, or shutdown ends it.
/// On Linux and FreeBSD the stream is expected to come from a listener with
/// TCP_NODELAY set (`server` binds them so), whose accepted sockets inherit it.
pub async fn serve(
    gw: Arc<Gateway>,
    caller: Caller,
    codec: FrameCodec,
    limits: CallerLimits,
    mut stream: TcpStream,
    shutdown: Shutdown,
) {
    // The listener's TCP_NODELAY is inherited where the OS copies it.
    if !cfg!(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd"
    )) {
        let _ = stream.set_nodelay(true);
    }
    // Borrowed halves: no shared allocation, and dropping the write half
    // makes no `shutdown` call; closing the socket sends the FIN.
    let (r, w) = stream.split();
    let mut reader = FramedRead::new(r, codec);
    let mut writer = FramedWrite::new(w, codec);
    // A request borrows the gateway and the caller: nothing to clone per message.
    let (gw_ref, caller_ref) = (&gw, &caller);
    let start =
        move |id: usize, msg: Bytes| async move { (id, gw_ref.handle(caller_ref, msg).await) };
    // The first request in flight runs in this slot, inside the connection's
    // own future; only requests pipelined behind it go to `in_flight`, which
    // allocates a node and wakes through its own queue per request.
    let mut solo = std::pin::pin!(empty_slot(&start));
    let mut in_flight = FuturesUnordered::new();
    let mut reading = true;
    // One timer, reset only when it fires, checks both the idle and the
    // partial-frame (slowloris) deadlines: no timer work per message.
    let check = (limits.read_timeout / 2)
        .min(limits.idle_timeout / 2)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let timer = tokio::time::sleep(check);
    tokio::pin!(timer);
    // Activity is noted as a flag and timed only when the timer fires: no
    // clock read per message; an idle close comes at most one tick late.
    let mut last_activity = Instant::now();
    let mut active = false;
    let mut partial_since: Option<Instant> = None;
    // After a bad length field the caller may still be writing: closing with
    // unread input sends a reset, which can destroy the answer in flight.
    let mut linger = false;
    // Requests in flight, kept so that the end of the shutdown grace can
    // answer each with GW0202. One waiter on the grace token per connection,
    // not one per request.
    let mut waiting = Waiting::default();
    let hard = shutdown.hard.cancelled();
    tokio::pin!(hard);
    // Made once: a new `cancelled()` future per loop turn takes the token's
    // lock twice per message.
    let stop = shutdown.stop.cancelled();
    tokio::pin!(stop);
    let mut hard_done = false;
    let (mut stop_armed, mut hard_armed) = (None, None);
    let signalled = &*shutdown.signalled;

    loop {
        if !reading && in_flight.is_empty() && solo.is_none() {
            break;
        }
        tokio::select! {
            biased;
            Some((id, answer)) = std::future::poll_fn(|cx| poll_answer(solo.as_mut(), &mut in_flight, cx)) => {
                active = true;
                waiting.done(id);
                if write_answers(&mut writer, answer, &mut in_flight, &mut waiting, limits.write_timeout).await.is_err() {
                    gw.stats.write_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = %caller.peer, "caller did not take its answers within {:?}; closing", limits.write_timeout);
                    return;
                }
            }
            frame = reader.next(), if reading && in_flight.len() + usize::from(solo.is_some()) < limits.max_in_flight => {
                active = true;
                partial_since = None;
                match frame {
                    None => reading = false,
                    Some(Ok(msg)) if msg.is_empty() => {
                        gw.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                        if write_answers(&mut writer, Bytes::new(), &mut in_flight, &mut waiting, limits.write_timeout).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(msg)) => {
                        let id = waiting.add(msg.clone());
                        if solo.is_none() {
                            solo.set(Some(start(id, msg)));
                        } else {
                            in_flight.push(start(id, msg));
                        }
                    }
                    Some(Err(FrameError::Io(e))) => {
                        tracing::debug!("caller read error: {e}");
                        reading = false;
                    }
                    Some(Err(e)) => {
                        // Frame boundaries are lost: answer what we can, then close.
                        let code = match e {
                            FrameError::TooLong { .. } => RspCode::Oversize,
                            _ => RspCode::Malformed,
                        };
                        tracing::warn!(peer = %caller.peer, "bad frame: {e}; closing the connection");
                        let err = GwError::new(code, e.to_string());
                        let snap = gw.snapshot();
                        let rest = reader.read_buffer();
                        let after = rest.get(codec.framing.prefix_len()..).unwrap_or(&[]);
                        let form = Form::of(caller.body, after);
                        let answer = reject(&snap.header, form, after, &err);
                        gw.record_rejection(&caller, form, after, &answer, &err);
                        reading = false;
                        linger = true;
                        let _ = write_answers(&mut writer, answer, &mut in_flight, &mut waiting, limits.write_timeout).await;
                    }
                }
            }
            _ = std::future::poll_fn(|cx| poll_gated(&mut stop_armed, signalled, stop.as_mut(), cx)), if reading => {
                reading = false;
            }
            _ = std::future::poll_fn(|cx| poll_gated(&mut hard_armed, signalled, hard.as_mut(), cx)), if !hard_done && (solo.is_some() || !in_flight.is_empty()) => {
                // The grace is over: drop what is still running and answer it.
                hard_done = true;
                reading = false;
                in_flight.clear();
                solo.set(None);
                let snap = gw.snapshot();
                let err = GwError::new(RspCode::BackendTimeout, "网关停止，请求未在宽限期内完成，结果未知");
                for msg in waiting.drain() {
                    let form = Form::of(caller.body, &msg);
                    let answer = reject(&snap.header, form, &msg, &err);
                    gw.record_rejection(&caller, form, &msg, &answer, &err);
                    if writer.feed(answer).await.is_err() {
                        return;
                    }
                }
                let _ = tokio::time::timeout(limits.write_timeout, writer.flush()).await;
            }
            _ = &mut timer => {
                let now = Instant::now();
                if std::mem::take(&mut active) {
                    last_activity = now;
                }
                if reader.read_buffer().is_empty() {
                    partial_since = None;
                    if in_flight.is_empty() && solo.is_none() && now - last_activity >= limits.idle_timeout {
                        tracing::debug!(peer = %caller.peer, "idle caller connection closed");
                        return;
                    }
                } else {
                    let since = *partial_since.get_or_insert(now);
                    if now - since >= limits.read_timeout {
                        gw.stats.read_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %caller.peer, "partial frame not completed in {:?} (slowloris?); closing", limits.read_timeout);
                        return;
                    }
                }
                timer.as_mut().reset(now + check);
            }
        }
    }
    // Every answer is flushed by now: dropping the socket sends the FIN. Only
    // the linger needs the write side shut first, to keep reading after it.
    if linger {
        let _ = tokio::time::timeout(limits.write_timeout, writer.close()).await;
        // Boxed: its buffer would otherwise sit in every connection's future,
        // and be copied on every spawn.
        Box::pin(linger_close(
            reader.into_inner(),
            limits,
            shutdown.stop.clone(),
        ))
        .await;
    }
}

/// After our FIN, reads and discards what the caller still sends, for a
/// bounded time and amount, so the close is graceful.
async fn linger_close(
    mut rest: tokio::net::tcp::ReadHalf<'_>,
    limits: CallerLimits,
    stop: CancellationToken,
) {
    let mut scratch = vec![0u8; 8192];
    let mut budget: usize = 16 << 20;
    let drain = async {
        use tokio::io::AsyncReadExt;
        while let Ok(n) = rest.read(&mut scratch).await {
            if n == 0 || n >= budget {
                break;
            }
            budget -= n;
        }
    };
    let linger_for = limits.write_timeout.min(Duration::from_secs(2));
    tokio::select! {
        _ = tokio::time::timeout(linger_for, drain) => {}
        _ = stop.cancelled() => {}
    }
}

/// An empty request slot, typed after the futures `start` makes (an async
/// block's type has no name to write).
fn empty_slot<F>(_start: &impl Fn(usize, Bytes) -> F) -> Option<F> {
    None
}

/// The next finished request: the slot's first, then the pipelined ones.
/// Pending, not done, while the slot still runs and the set is empty.
fn poll_answer<F: Future<Output = (usize, Bytes)>>(
    mut solo: Pin<&mut Option<F>>,
    in_flight: &mut FuturesUnordered<F>,
    cx: &mut Context<'_>,
) -> Poll<Option<(usize, Bytes)>> {
    if let Some(running) = solo.as_mut().as_pin_mut() {
        if let Poll::Ready(done) = running.poll(cx) {
            solo.set(None);
            return Poll::Ready(Some(done));
        }
    }
    // Not polled while empty: each poll registers the waker, work for
    // nothing on a connection with one request at a time. (An empty set
    // would answer `Ready(None)`, which must not end the branch while the
    // inline slot still runs.)
    if in_flight.is_empty() {
        return if solo.is_some() {
            Poll::Pending
        } else {
            Poll::Ready(None)
        };
    }
    in_flight.poll_next_unpin(cx)
}

/// Requests in flight on one connection, by slot; slots are reused, so the
/// hot path allocates nothing here once the connection is warm.
#[derive(Debug, Default)]
struct Waiting {
    slots: Vec<Option<Bytes>>,
    free: Vec<usize>,
}

impl Waiting {
    fn add(&mut self, msg: Bytes) -> usize {
        match self.free.pop() {
            Some(id) => {
                self.slots[id] = Some(msg);
                id
            }
            None => {
                self.slots.push(Some(msg));
                self.slots.len() - 1
            }
        }
    }

    fn done(&mut self, id: usize) {
        if let Some(slot) = self.slots.get_mut(id) {
            *slot = None;
            self.free.push(id);
        }
    }

    fn drain(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        self.free.clear();
        self.slots.drain(..).flatten()
    }
}

/// Writes one answer, and any others already complete, with one flush.
async fn write_answers<W, F>(
    writer: &mut FramedWrite<W, FrameCodec>,
    first: Bytes,
    in_flight: &mut FuturesUnordered<F>,
    waiting: &mut Waiting,
    timeout: Duration,
) -> Result<(), ()>
where
    W: tokio::io::AsyncWrite + Unpin,
    F: std::future::Future<Output = (usize, Bytes)>,
{
    let work = async {
        writer.feed(first).await.map_err(|_| ())?;
        // Answers already done go out in the same write. Not polled while
        // empty: a poll with the no-op waker would replace the task's own
        // (cloning one waker, dropping the other) for nothing.
        while !in_flight.is_empty() {
            let Some(Some((id, more))) = in_flight.next().now_or_never() else {
                break;
            };
            waiting.done(id);
            writer.feed(more).await.map_err(|_| ())?;
        }
        writer.flush().await.map_err(|_| ())
    };
    tokio::pin!(work);
    // A caller that reads keeps up: the write completes at once, and no
    // timer is set. Only a write that would block is timed (the next poll
    // registers the task's waker in place of this no-op one).
    if let Some(done) = (&mut work).now_or_never() {
        return done;
    }
    tokio::time::timeout(timeout, work).await.map_err(|_| ())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; never ready.
    struct Polls(Arc<AtomicUsize>);

    impl Future for Polls {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Poll::Pending
        }
    }

    struct Wake;
    impl futures::task::ArcWake for Wake {
        fn wake_by_ref(_: &Arc<Self>) {}
    }

    #[test]
    fn gated_shutdown_signal_is_polled_again_for_a_new_waker_or_once_signalled() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut fut = std::pin::pin!(Polls(polls.clone()));
        let signalled = AtomicBool::new(false);
        let mut armed = None;
        let (a, b) = (
            futures::task::waker(Arc::new(Wake)),
            futures::task::waker(Arc::new(Wake)),
        );
        let mut poll_with = |w: &Waker| {
            let _ = poll_gated(
                &mut armed,
                &signalled,
                fut.as_mut(),
                &mut Context::from_waker(w),
            );
            polls.load(Ordering::Relaxed)
        };
        assert_eq!(poll_with(&a), 1, "the first poll leaves the waker");
        assert_eq!(poll_with(&a), 1, "the same waker: not polled again");
        assert_eq!(
            poll_with(&b),
            2,
            "another waker: polled, so it is the one held"
        );
        assert_eq!(poll_with(&b), 2);
        signalled.store(true, Ordering::Release);
        assert_eq!(poll_with(&b), 3, "signalled: polled every time");
    }
}
