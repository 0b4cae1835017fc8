//! Fault injection: each backend fault gives its documented code, and the
//! next request after recovery succeeds. Plus limits, breaker, duplicates,
//! multiplexing, hostile callers and the one-answer invariant.

use crate::support::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;
use txgate::config::{BackendMode, RawConfig};
use txgate::header::Role;

fn tune(raw: &mut RawConfig, backend: &str, f: impl Fn(&mut txgate::config::BackendConfig)) {
    for b in &mut raw.backends {
        if b.id == backend {
            f(b);
        }
    }
}

/// SCF pointed at a scripted backend, with a short request timeout.
async fn scf_scripted(script: Script, timeout_ms: u64) -> (ScriptedBackend, TestGateway) {
    let backend = ScriptedBackend::start(script).await;
    let mut raw = config_with_backend("SCF", backend.addr);
    tune(&mut raw, "SCF", |b| {
        b.timeouts.request_ms = timeout_ms;
        b.breaker.failures = 0;
    });
    let gw = TestGateway::start_with(raw).await;
    (backend, gw)
}

async fn call_2969(c: &mut Client) -> bytes::Bytes {
    c.call(request("2969", &[("ChnlNo", "CUS")])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_backend_fault_gives_its_code_and_recovery_succeeds() {
    let cases = [
        (Script::Die, "GW0202"),
        (Script::Stall, "GW0202"),
        (Script::Garbage, "GW0204"),
        (Script::WrongSeq, "GW0204"),
        (Script::Slow(Duration::from_millis(600)), "GW0202"),
    ];
    let (backend, gw) = scf_scripted(Script::Echo, 250).await;
    let mut c = gw.client().await;
    for (fault, code) in cases {
        backend.set(fault);
        // 2079 is not idempotent: no resend may hide the fault.
        let answer = c.call(request("2079", &[])).await;
        assert_eq!(rsp_code(&answer), code, "{fault:?}: {}", rsp_msg(&answer));
        backend.set(Script::Echo);
        let answer = call_2969(&mut c).await;
        assert_eq!(
            rsp_code(&answer),
            "000000",
            "after {fault:?}: {}",
            rsp_msg(&answer)
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_at_start_is_gw0201_then_succeeds_once_it_is_up() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut raw = config_with_backend("SCF", addr);
    tune(&mut raw, "SCF", |b| b.breaker.failures = 0);
    let gw = TestGateway::start_with(raw).await;
    let mut c = gw.client().await;
    assert_eq!(rsp_code(&call_2969(&mut c).await), "GW0201");
    let backend = ScriptedBackend::start_on(addr, Script::Echo).await;
    assert_eq!(rsp_code(&call_2969(&mut c).await), "000000");
    assert_eq!(backend.count(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_closing_after_n_requests_is_noticed_before_reuse() {
    let (backend, gw) = scf_scripted(Script::CloseAfter(2), 2000).await;
    let mut c = gw.client().await;
    for i in 0..6 {
        let answer = call_2969(&mut c).await;
        assert_eq!(
            rsp_code(&answer),
            "000000",
            "request {i}: {}",
            rsp_msg(&answer)
        );
    }
    assert!(backend.connections.load(Ordering::SeqCst) >= 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answering_twice_never_gives_a_request_the_wrong_answer() {
    let (backend, gw) = scf_scripted(Script::Twice, 2000).await;
    let mut c = gw.client().await;
    for _ in 0..10 {
        let seq = next_seq("TW");
        let answer = c
            .call(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]))
            .await;
        assert_eq!(field(&answer, Role::Seq), seq);
        let code = rsp_code(&answer);
        assert!(code == "000000" || code == "GW0204", "{code}");
    }
    backend.set(Script::Echo);
    // A duplicate still on its way may meet the first request after the
    // fault (GW0204, and that connection is dropped); the next one succeeds.
    let first = rsp_code(&call_2969(&mut c).await);
    assert!(first == "000000" || first == "GW0204", "{first}");
    assert_eq!(rsp_code(&call_2969(&mut c).await), "000000");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_after_failures_fails_fast_then_closes_after_a_probe() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut raw = config_with_backend("SCF", addr);
    tune(&mut raw, "SCF", |b| {
        b.breaker.failures = 3;
        b.breaker.cooldown_ms = 300;
    });
    for r in &mut raw.routes {
        r.retries = 0;
    }
    let gw = TestGateway::start_with(raw).await;
    let snap = gw.gateway.snapshot();
    let pool = &snap.backends["SCF"].pool;
    let mut c = gw.client().await;
    for _ in 0..3 {
        assert_eq!(rsp_code(&call_2969(&mut c).await), "GW0201");
    }
    assert_eq!(pool.breaker.state(), txgate::breaker::BreakerState::Open);
    let connects_before = pool.stats.connect_failures.load(Ordering::Relaxed);
    let answer = call_2969(&mut c).await;
    assert_eq!(rsp_code(&answer), "GW0201");
    assert!(rsp_msg(&answer).contains("熔断"), "{}", rsp_msg(&answer));
    assert_eq!(
        pool.stats.connect_failures.load(Ordering::Relaxed),
        connects_before,
        "an open breaker fails fast without trying to connect"
    );
    let backend = ScriptedBackend::start_on(addr, Script::Echo).await;
    // After the cool-down one probe goes through and closes the breaker.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let answer = call_2969(&mut c).await;
        if rsp_code(&answer) == "000000" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "breaker never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pool.breaker.state(), txgate::breaker::BreakerState::Closed);
    assert!(backend.count() >= 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_limit_gives_gw0203_without_relaying() {
    let backend = ScriptedBackend::start(Script::Slow(Duration::from_millis(800))).await;
    let mut raw = config_with_backend("SCF", backend.addr);
    tune(&mut raw, "SCF", |b| {
        b.pool.max = 1;
        b.pool.acquire_timeout_ms = 100;
    });
    let gw = TestGateway::start_with(raw).await;
    let mut first = gw.client().await;
    let mut second = gw.client().await;
    first.send(request("2969", &[("ChnlNo", "CUS")])).await;
    // Wait until the first holds the only connection.
    eventually("the first request reached the backend", || {
        backend.count() != 0
    })
    .await;
    let answer = call_2969(&mut second).await;
    assert_eq!(rsp_code(&answer), "GW0203", "{}", rsp_msg(&answer));
    assert_eq!(rsp_code(&first.recv().await), "000000");
    assert_eq!(
        backend.count(),
        1,
        "the refused request never reached the backend"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_rate_limit_gives_gw0203() {
    let mut raw = shipped_config();
    for ch in &mut raw.channels {
        if ch.id == "CUS" {
            ch.rate_limit = Some(1);
            ch.burst = Some(2);
        }
    }
    let gw = TestGateway::start_with(raw).await;
    let mut c = gw.client().await;
    let codes: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(rsp_code(&call_2969(&mut c).await));
        }
        v
    };
    assert_eq!(&codes[..2], ["000000", "000000"]);
    assert!(codes[2..].iter().any(|c| c == "GW0203"), "{codes:?}");
    // Other channels are not limited.
    let answer = c.call(request("2969", &[("ChnlNo", "IBP")])).await;
    assert_eq!(rsp_code(&answer), "000000");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_2079_seq_no_is_gw0103_and_reaches_the_backend_once() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let seq = next_seq("DUP");
    let msg = request("2079", &[("SeqNo", &seq)]);
    let first = c.call(msg.clone()).await;
    assert_eq!(rsp_code(&first), "000000", "{}", rsp_msg(&first));
    let again = c.call(msg.clone()).await;
    assert_eq!(rsp_code(&again), "GW0103");
    assert!(rsp_msg(&again).contains(&seq), "{}", rsp_msg(&again));
    assert_eq!(gw.received("SCF").len(), 1);
    // An idempotent query may repeat its SeqNo.
    let q = request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]);
    assert_eq!(rsp_code(&c.call(q.clone()).await), "000000");
    assert_eq!(rsp_code(&c.call(q).await), "000000");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_no_of_a_request_never_sent_may_be_retried() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut raw = config_with_backend("SCF", addr);
    tune(&mut raw, "SCF", |b| b.breaker.failures = 0);
    let gw = TestGateway::start_with(raw).await;
    let mut c = gw.client().await;
    let msg = request("2079", &[]);
    assert_eq!(rsp_code(&c.call(msg.clone()).await), "GW0201");
    let backend = ScriptedBackend::start_on(addr, Script::Echo).await;
    assert_eq!(rsp_code(&c.call(msg).await), "000000");
    assert_eq!(backend.count(), 1);
    gw.stop().await;
}

async fn multiplex_gateway(script: Script, timeout_ms: u64) -> (ScriptedBackend, TestGateway) {
    let backend = ScriptedBackend::start(script).await;
    let mut raw = config_with_backend("SCF", backend.addr);
    tune(&mut raw, "SCF", |b| {
        b.mode = BackendMode::Multiplex;
        b.pool.max = 2;
        b.timeouts.request_ms = timeout_ms;
        b.breaker.failures = 0;
    });
    let gw = TestGateway::start_with(raw).await;
    (backend, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplex_backend_carries_many_requests_per_connection_out_of_order() {
    let (backend, gw) =
        multiplex_gateway(Script::Concurrent(Duration::from_millis(10)), 5000).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(gw.client().await);
    }
    let mut sent = HashSet::new();
    for c in clients.iter_mut() {
        for _ in 0..10 {
            let seq = next_seq("MX");
            c.send(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]))
                .await;
            sent.insert(seq);
        }
    }
    let mut got = HashSet::new();
    for c in clients.iter_mut() {
        for _ in 0..10 {
            let a = c.recv().await;
            assert_eq!(rsp_code(&a), "000000", "{}", rsp_msg(&a));
            assert!(got.insert(field(&a, Role::Seq)));
        }
    }
    assert_eq!(sent, got);
    assert!(backend.connections.load(Ordering::SeqCst) <= 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplex_late_answer_is_counted_and_dropped() {
    // Step 100 ms × last digit: SeqNos ending in 9 come back after 900 ms.
    let (_backend, gw) =
        multiplex_gateway(Script::Concurrent(Duration::from_millis(100)), 300).await;
    let mut c = gw.client().await;
    let late_seq = "MXLATE00000000000009";
    let answer = c
        .call(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", late_seq)]))
        .await;
    assert_eq!(rsp_code(&answer), "GW0202");
    // A quick one after it gets its own answer, not the late one.
    let quick = "MXQUICK0000000000000";
    let answer = c
        .call(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", quick)]))
        .await;
    assert_eq!(rsp_code(&answer), "000000");
    assert_eq!(field(&answer, Role::Seq), quick);
    let snap = gw.gateway.snapshot();
    let pool = &snap.backends["SCF"].pool;
    eventually("the late answer was counted", || pool.late_answers() != 0).await;
    assert_eq!(pool.late_answers(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_partial_frame_is_closed_and_the_gateway_keeps_serving() {
    let mut raw = shipped_config();
    raw.gateway.caller_read_timeout_ms = 300;
    let gw = TestGateway::start_with(raw).await;
    let mut slow = gw.client().await;
    let msg = txgate::frame::Framing::default()
        .frame(&request("2969", &[("ChnlNo", "CUS")]))
        .unwrap();
    slow.write_raw(&msg[..50]).await;
    assert!(
        slow.recv_or_eof().await.is_none(),
        "the slow caller is cut off"
    );
    let mut c = gw.client().await;
    assert_eq!(rsp_code(&call_2969(&mut c).await), "000000");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_that_never_reads_is_cut_off_and_others_are_served() {
    let backend = ScriptedBackend::start(Script::Big(200_000)).await;
    let mut raw = config_with_backend("SCF", backend.addr);
    raw.gateway.caller_write_timeout_ms = 300;
    raw.gateway.max_in_flight = 4;
    let gw = TestGateway::start_with(raw).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(gw.addr).await.unwrap();
    let mut deaf = Client {
        framed: tokio_util::codec::Framed::new(stream, txgate::frame::FrameCodec::default()),
    };
    let sent = 100;
    for _ in 0..sent {
        use futures::SinkExt;
        if deaf
            .framed
            .send(bytes::Bytes::from(request("2969", &[("ChnlNo", "CUS")])))
            .await
            .is_err()
        {
            break;
        }
    }
    // Meanwhile another caller is served (5222 goes to the simulated NET).
    let mut c = gw.client().await;
    assert_eq!(rsp_code(&c.call(request("5222", &[])).await), "000000");
    // Wait until the gateway gave up writing to the deaf caller.
    eventually("a write timed out", || {
        gw.gateway.stats.write_timeouts.load(Ordering::Relaxed) != 0
    })
    .await;
    // The deaf caller finds, once it reads, that it was cut off early.
    let mut answers = 0;
    while answers < sent && deaf.recv_or_eof().await.is_some() {
        answers += 1;
    }
    assert!(
        answers < sent,
        "all {answers} answers were delivered; no write timeout"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_caller_connections_are_all_answered() {
    let mut raw = shipped_config();
    tune(&mut raw, "SCF", |b| b.pool.max = 64);
    let gw = TestGateway::start_with(raw).await;
    let addr = gw.addr;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let seq = format!("K{:019}", i);
        let msg = request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]);
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let a = c.call(msg).await;
            (seq, field(&a, Role::Seq), rsp_code(&a))
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (sent, got, code) = t.await.unwrap();
        assert_eq!(sent, got);
        assert_eq!(code, "000000");
        ok += 1;
    }
    assert_eq!(ok, 1000);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_global_limit_are_refused_and_the_listener_stays_open() {
    let mut raw = shipped_config();
    raw.gateway.max_connections = 2;
    let gw = TestGateway::start_with(raw).await;
    let mut a = gw.client().await;
    let mut b = gw.client().await;
    assert_eq!(rsp_code(&call_2969(&mut a).await), "000000");
    assert_eq!(rsp_code(&call_2969(&mut b).await), "000000");
    let mut third = gw.client().await;
    third.send(request("2969", &[("ChnlNo", "CUS")])).await;
    assert!(
        third.recv_or_eof().await.is_none(),
        "the third caller is refused"
    );
    drop(a);
    // Once a slot frees, a new caller is served again.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut c = gw.client().await;
        c.send(request("2969", &[("ChnlNo", "CUS")])).await;
        if let Some(ans) = c.recv_or_eof().await {
            assert_eq!(rsp_code(&ans), "000000");
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.stop().await;
}

/// The promise: every request gets exactly one answer, the right one, and a
/// non-idempotent request reaches the backend at most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_one_answer_per_request_and_at_most_once_delivery_under_chaos() {
    let (backend, gw) = scf_scripted(Script::Chaos(Duration::from_millis(400)), 150).await;
    let addr = gw.addr;
    let total_per_client = 250;
    let clients = 8;
    let mut tasks = Vec::new();
    for n in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let mut results = Vec::new();
            let mut pending: HashMap<String, bool> = HashMap::new();
            for i in 0..total_per_client {
                // Mix: 2969 query (idempotent), 2079 and 9185 (not).
                let (code, channel, idem) = match i % 3 {
                    0 => ("2969", "CUS", true),
                    1 => ("2079", "IBP", false),
                    _ => ("9185", "IBP", false),
                };
                let seq = format!("INV{n:02}{i:015}");
                let f = fixture(code, |f| f.format == txgate::fixture::Format::Fixed);
                let msg = request_from(&f, &[("ChnlNo", channel), ("SeqNo", &seq)], false);
                c.send(msg).await;
                pending.insert(seq, idem);
                // Keep up to 4 in flight.
                if pending.len() >= 4 {
                    let a = c.recv().await;
                    let s = field(&a, Role::Seq);
                    let idem = pending
                        .remove(&s)
                        .expect("answer for a request we sent, once");
                    results.push((s, idem, rsp_code(&a)));
                }
            }
            while !pending.is_empty() {
                let a = c.recv().await;
                let s = field(&a, Role::Seq);
                let idem = pending
                    .remove(&s)
                    .expect("answer for a request we sent, once");
                results.push((s, idem, rsp_code(&a)));
            }
            results
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.unwrap());
    }
    let total = clients * total_per_client;
    assert_eq!(answers.len(), total, "every request got exactly one answer");
    let per_seq = backend.per_seq();
    let mut by_code: HashMap<String, usize> = HashMap::new();
    let mut non_idem = 0;
    for (seq, idem, code) in &answers {
        *by_code.entry(code.clone()).or_default() += 1;
        if !idem {
            non_idem += 1;
            let n = per_seq.get(seq).copied().unwrap_or(0);
            assert!(n <= 1, "non-idempotent {seq} reached the backend {n} times");
        }
    }
    let resent: usize = per_seq.values().filter(|&&n| n > 1).count();
    println!(
        "invariant: {total} requests ({non_idem} non-idempotent), {} reached the backend, {resent} idempotent resends; answers by code: {by_code:?}",
        backend.count()
    );
    assert!(by_code.get("000000").copied().unwrap_or(0) > total / 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_answers_every_request_in_flight() {
    // Half the requests stall at the backend past the grace period.
    let backend = ScriptedBackend::start(Script::Stall).await;
    let mut raw = config_with_backend("SCF", backend.addr);
    raw.gateway.shutdown_grace_ms = 300;
    tune(&mut raw, "SCF", |b| b.timeouts.request_ms = 30_000);
    let gw = TestGateway::start_with(raw).await;
    let mut stalled = gw.client().await;
    let mut quick = gw.client().await;
    let n = 5;
    for _ in 0..n {
        stalled.send(request("2969", &[("ChnlNo", "CUS")])).await;
    }
    eventually("the requests reached the backend", || backend.count() >= n).await;
    // Simulated NET answers at once: this one finishes inside the grace.
    quick.send(request("5222", &[])).await;
    eventually("the quick request reached NET", || {
        !gw.received("NET").is_empty()
    })
    .await;
    let done = tokio::spawn(gw.stop());
    assert_eq!(rsp_code(&quick.recv().await), "000000");
    for _ in 0..n {
        let a = stalled.recv().await;
        assert_eq!(rsp_code(&a), "GW0202", "{}", rsp_msg(&a));
    }
    done.await.unwrap();
    assert!(
        stalled.recv_or_eof().await.is_none(),
        "closed after the last answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_caller_connections_without_waiting_out_the_grace() {
    let mut raw = shipped_config();
    raw.gateway.shutdown_grace_ms = 120_000;
    // Off, so that the caller that never sends is accepted before the stop.
    raw.listeners[0].defer_accept_ms = 0;
    let gw = TestGateway::start_with(raw).await;
    // Answered first: the connection's loop has turned, so its shutdown
    // signals were polled once and hold its waker.
    let mut idle = gw.client().await;
    assert_eq!(rsp_code(&idle.call(request("5222", &[])).await), "000000");
    let mut never_sent = gw.client().await;
    tokio::time::timeout(Duration::from_secs(30), gw.stop())
        .await
        .expect("stop waited for the grace period: an idle connection missed the signal");
    assert!(idle.recv_or_eof().await.is_none());
    assert!(never_sent.recv_or_eof().await.is_none());
}

// Under TCP_DEFER_ACCEPT a caller that has connected but sent nothing is
// still the kernel's: shutdown does not wait for it, and its request, sent
// after the gateway stopped, is refused (reset or EOF), never left hanging.
// 30 s here, so that the caller is surely not handed over before the stop.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_a_deferred_caller_that_sends_after_the_gateway_stopped() {
    let mut raw = shipped_config();
    raw.gateway.shutdown_grace_ms = 120_000;
    raw.listeners[0].defer_accept_ms = 30_000;
    let gw = TestGateway::start_with(raw).await;
    let mut silent = gw.client().await;
    assert_eq!(
        gw.gateway.stats.connections.load(Ordering::Relaxed),
        0,
        "the silent caller was handed over"
    );
    gw.stop().await;
    silent.send(request("2969", &[("ChnlNo", "CUS")])).await;
    assert!(silent.recv_or_eof().await.is_none());
}

// Guards the inline slot: the only request in flight on a connection is
// answered GW0202 when the grace ends, like pipelined ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_a_lone_request_in_flight_when_the_grace_ends() {
    let backend = ScriptedBackend::start(Script::Stall).await;
    let mut raw = config_with_backend("SCF", backend.addr);
    raw.gateway.shutdown_grace_ms = 300;
    tune(&mut raw, "SCF", |b| b.timeouts.request_ms = 30_000);
    let gw = TestGateway::start_with(raw).await;
    let mut lone = gw.client().await;
    lone.send(request("2969", &[("ChnlNo", "CUS")])).await;
    eventually("the request reached the backend", || backend.count() >= 1).await;
    let done = tokio::spawn(gw.stop());
    let a = lone.recv().await;
    assert_eq!(rsp_code(&a), "GW0202", "{}", rsp_msg(&a));
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("stopped after the grace")
        .unwrap();
    assert!(
        lone.recv_or_eof().await.is_none(),
        "closed after the answer"
    );
}
