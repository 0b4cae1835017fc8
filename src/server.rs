//! Listeners and the accept loop.
//!
//! A connection permit is checked before a caller is served: beyond the
//! global limit a caller is accepted and closed at once, so the listener
//! stays open and no caller waits on a connection nobody will serve.

use crate::conn::{self, CallerLimits, Shutdown};
use crate::frame::FrameCodec;
use crate::gateway::{Caller, Gateway};
use crate::snapshot::Listener;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A gateway with its listeners bound, ready to serve.
pub struct Server {
    gw: Arc<Gateway>,
    bound: Vec<(Listener, TcpListener)>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: Shutdown,
}

impl Server {
    /// Binds every listener of the snapshot; `listen` replaces the first
    /// listener's address (tests bind port 0 this way).
    pub async fn bind(gw: Arc<Gateway>, listen: Option<SocketAddr>) -> std::io::Result<Server> {
        let snap = gw.snapshot();
        let mut bound = Vec::new();
        for (i, l) in snap.listeners.iter().enumerate() {
            let mut l = l.clone();
            if i == 0 {
                if let Some(a) = listen {
                    l.address = a;
                }
            }
            let tcp = listen_on(l.address, l.defer_accept_secs).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("listener {} on {}: {e}", l.name, l.address),
                )
            })?;
            l.address = tcp.local_addr()?;
            bound.push((l, tcp));
        }
        Ok(Server {
            permits: Arc::new(Semaphore::new(snap.settings.max_connections)),
            gw,
            bound,
            tracker: TaskTracker::new(),
            shutdown: Shutdown::default(),
        })
    }

    /// The addresses actually bound, by listener name.
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        self.bound
            .iter()
            .map(|(l, _)| (l.name.clone(), l.address))
            .collect()
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    /// Serves until `stop` is cancelled, then lets requests in flight finish
    /// within the grace period. Returns when every connection is closed.
    pub async fn run(self, stop: CancellationToken) {
        let snap = self.gw.snapshot();
        let s = &snap.settings;
        let limits = CallerLimits {
            max_in_flight: s.max_in_flight.max(1),
            idle_timeout: Duration::from_millis(s.caller_idle_timeout_ms),
            read_timeout: Duration::from_millis(s.caller_read_timeout_ms),
            write_timeout: Duration::from_millis(s.caller_write_timeout_ms),
        };
        let grace = Duration::from_millis(s.shutdown_grace_ms);
        let max_body = s.max_body;
        for (l, tcp) in self.bound {
            let gw = self.gw.clone();
            let permits = self.permits.clone();
            let tracker = self.tracker.clone();
            let shutdown = self.shutdown.clone();
            let codec = FrameCodec::new(l.framing, max_body);
            self.tracker.spawn(accept_loop(
                gw, l, tcp, codec, limits, permits, tracker, shutdown,
            ));
        }
        let gw = self.gw.clone();
        let maint_stop = self.shutdown.stop_token();
        self.tracker.spawn(async move {
            // Pool health: reap dead or expired idle connections, keep min_idle warm.
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = maint_stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let snap = gw.snapshot();
                for b in snap.backends.values() {
                    b.pool.maintain().await;
                }
            }
        });
        self.tracker.close();
        stop.cancelled().await;
        tracing::info!("shutting down: no new connections; grace {grace:?}");
        self.shutdown.stop();
        tokio::select! {
            _ = self.tracker.wait() => {}
            _ = tokio::time::sleep(grace) => {
                tracing::warn!("grace period over; answering what is left with GW0202");
                self.shutdown.end_grace();
                let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
            }
        }
        for b in snap.backends.values() {
            b.pool.drain();
        }
        tracing::info!("stopped");
    }
}

/// Binds a caller listener. TCP_NODELAY is set here, on the listening
/// socket: Linux and the BSDs copy it to every accepted socket, which saves
/// short-connection callers a `setsockopt` per message. The backlog is
/// larger than the standard library's 128, for bursts of short connections.
/// With `defer_accept_secs` the kernel hands a caller over only once its
/// request has started to arrive: callers always speak first here, and a
/// short-connection caller then costs one wake-up, not two.
fn listen_on(addr: SocketAddr, defer_accept_secs: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: not on Windows, where it allows another
    // process to take over the port.
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    if defer_accept_secs > 0 {
        set_defer_accept(&socket, defer_accept_secs)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_defer_accept(socket: &tokio::net::TcpSocket, secs: u32) -> std::io::Result<()> {
    let secs = i32::try_from(secs).unwrap_or(i32::MAX);
    nix::sys::socket::setsockopt(socket, defer::DeferAccept, &secs).map_err(std::io::Error::from)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_defer_accept(_socket: &tokio::net::TcpSocket, _secs: u32) -> std::io::Result<()> {
    tracing::warn!("defer_accept_ms is set, but only Linux has TCP_DEFER_ACCEPT; ignored");
    Ok(())
}

/// TCP_DEFER_ACCEPT, which neither nix, socket2 nor stable std offers.
/// nix's own macro defines it, as it defines the options nix ships: the one
/// FFI call is the macro's (expanded here, so `forbid(unsafe_code)` does
/// not see it).
#[cfg(any(target_os = "linux", target_os = "android"))]
mod defer {
    use nix::{getsockopt_impl, libc, setsockopt_impl, sockopt_impl};
    sockopt_impl!(
        /// The seconds a listener waits for a caller's first bytes.
        DeferAccept,
        Both,
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        i32
    );
}

/// Pending connections the kernel queues before `accept` (it caps this at
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 1024;

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    gw: Arc<Gateway>,
    listener: Listener,
    tcp: TcpListener,
    codec: FrameCodec,
    limits: CallerLimits,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: Shutdown,
) {
    tracing::info!(listener = %listener.name, addr = %listener.address, "listening");
    let listener_name: Arc<str> = listener.name.as_str().into();
    // Made once: short-connection callers pass here once per message.
    let stopped = shutdown.stop_token().cancelled_owned();
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            a = tcp.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep listening.
                tracing::warn!(listener = %listener.name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            gw.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
            gw.observers().iter().for_each(|o| o.on_refused());
            tracing::warn!(peer = %peer, "connection limit reached; refusing caller");
            drop(stream);
            continue;
        };
        gw.stats.connections.fetch_add(1, Ordering::Relaxed);
        gw.observers().iter().for_each(|o| o.on_connection(true));
        let caller = Caller {
            listener: listener_name.clone(),
            body: listener.body,
            peer,
        };
        // At debug, like the per-message span: an enabled span costs a registry
        // entry per connection, which short-connection callers pay per message.
        let span = tracing::debug_span!("conn", listener = %listener.name, peer = %peer);
        let gw = gw.clone();
        let shutdown = shutdown.clone();
        // Boxed once here, so that spawning moves a pointer, not the whole
        // connection state (short-connection callers pay this per message).
        let serve = Box::pin(async move {
            conn::serve(gw.clone(), caller, codec, limits, stream, shutdown).await;
            gw.observers().iter().for_each(|o| o.on_connection(false));
            drop(permit);
        });
        tracker.spawn(tracing::Instrument::instrument(serve, span));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the per-connection `set_nodelay` that `conn::serve` skips on
    /// these systems: the accepted socket must carry the listener's option.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    #[tokio::test]
    async fn accepted_callers_inherit_nodelay_from_the_listener() {
        let listener = listen_on("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        let addr = listener.local_addr().unwrap();
        let (_client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (stream, _) = accepted.unwrap();
        assert!(stream.nodelay().unwrap(), "TCP_NODELAY was not inherited");
    }

    /// Guards `defer_accept_ms`: the option reaches the socket when asked
    /// for, and only then.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[tokio::test]
    async fn defer_accept_is_set_on_the_listener_only_when_configured() {
        let get = |l: &TcpListener| nix::sys::socket::getsockopt(l, defer::DeferAccept).unwrap();
        let deferred = listen_on("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        assert!(
            get(&deferred) >= 2,
            "TCP_DEFER_ACCEPT not set: {}",
            get(&deferred)
        );
        let plain = listen_on("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        assert_eq!(get(&plain), 0);
    }

    /// A deferred listener holds a silent caller back, and hands it over as
    /// soon as its first bytes arrive, long before the deferral period (60 s
    /// here, so the 300 ms look cannot race the kernel's timer) ends.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[tokio::test]
    async fn deferred_listener_hands_over_a_caller_when_its_request_arrives() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = listen_on("127.0.0.1:0".parse().unwrap(), 60).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let early = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(early.is_err(), "a caller that sent nothing was handed over");
        client.write_all(b"00000000").await.unwrap();
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .expect("the caller's first bytes did not hand it over")
            .unwrap();
        let mut got = [0u8; 8];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"00000000");
    }
}
