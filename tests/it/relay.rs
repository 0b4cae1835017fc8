//! Relay behaviour: pipelining, short connections, backend modes, failures.

use crate::support::*;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;
use txgate::header::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_is_echoed_and_never_routed() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    c.write_raw(b"00000000").await;
    let answer = c.recv().await;
    assert!(answer.is_empty(), "a heartbeat answer is an empty frame");
    // The connection still serves.
    let answer = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&answer), "000000");
    assert_eq!(
        gw.received("SCF").len(),
        1,
        "the heartbeat reached no backend"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_pipelined_requests_on_one_connection_are_all_answered_by_seq_no() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let mut sent = HashSet::new();
    for _ in 0..5 {
        let seq = next_seq("P");
        c.send(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]))
            .await;
        sent.insert(seq);
    }
    let mut got = HashSet::new();
    for _ in 0..5 {
        let answer = c.recv().await;
        assert_eq!(rsp_code(&answer), "000000");
        got.insert(field(&answer, Role::Seq));
    }
    assert_eq!(sent, got);
    gw.stop().await;
}

// Guards the inline slot of a connection's first request: requests
// pipelined behind a slow one finish first and are answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_behind_a_slow_first_one_are_answered_before_it() {
    // Delay = last digit of SeqNo × 40 ms.
    let backend = ScriptedBackend::start(Script::Concurrent(Duration::from_millis(40))).await;
    let gw = TestGateway::start_with(config_with_backend("SCF", backend.addr)).await;
    let mut c = gw.client().await;
    let slow = format!("{}9", next_seq("Q"));
    c.send(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &slow)]))
        .await;
    let mut fast = HashSet::new();
    for d in ["1", "2"] {
        let seq = format!("{}{d}", next_seq("Q"));
        c.send(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]))
            .await;
        fast.insert(seq);
    }
    let mut order = Vec::new();
    for _ in 0..3 {
        let answer = c.recv().await;
        assert_eq!(rsp_code(&answer), "000000", "{}", rsp_msg(&answer));
        order.push(field(&answer, Role::Seq));
    }
    assert_eq!(order[2], slow, "answers in order {order:?}");
    assert_eq!(order[..2].iter().cloned().collect::<HashSet<_>>(), fast);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_caller_connections_each_get_their_answer() {
    let gw = TestGateway::start().await;
    for _ in 0..5 {
        let mut c = gw.client().await;
        let seq = next_seq("S");
        let answer = c
            .call(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]))
            .await;
        assert_eq!(rsp_code(&answer), "000000");
        assert_eq!(field(&answer, Role::Seq), seq);
        drop(c);
    }
    assert_eq!(gw.received("SCF").len(), 5);
    gw.stop().await;
}

// Guards the shipped TCP_DEFER_ACCEPT: a caller that connects and stays
// silent past the deferral period is still handed over by the kernel, and
// answered when it does send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_that_sends_after_the_defer_accept_period_is_still_answered() {
    let raw = shipped_config();
    assert!(
        raw.listeners[0].defer_accept_ms > 0,
        "the shipped listener defers accept"
    );
    let gw = TestGateway::start_with(raw).await;
    let accepted = || gw.gateway.stats.connections.load(Ordering::Relaxed);
    let before = accepted();
    let mut slow = gw.client().await;
    eventually("the silent caller was handed over", || accepted() != before).await;
    let seq = next_seq("D");
    let answer = slow
        .call(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]))
        .await;
    assert_eq!(rsp_code(&answer), "000000", "{}", rsp_msg(&answer));
    assert_eq!(field(&answer, Role::Seq), seq);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_backend_opens_a_connection_per_request() {
    let backend = ScriptedBackend::start(Script::Echo).await;
    let mut raw = config_with_backend("SCF", backend.addr);
    for b in &mut raw.backends {
        if b.id == "SCF" {
            b.mode = txgate::config::BackendMode::Short;
        }
    }
    let gw = TestGateway::start_with(raw).await;
    let mut c = gw.client().await;
    for _ in 0..3 {
        let answer = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
        assert_eq!(rsp_code(&answer), "000000", "{}", rsp_msg(&answer));
    }
    assert_eq!(backend.count(), 3);
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_mode_backend_reuses_its_pooled_connection() {
    let backend = ScriptedBackend::start(Script::Echo).await;
    let gw = TestGateway::start_with(config_with_backend("SCF", backend.addr)).await;
    let mut c = gw.client().await;
    for _ in 0..4 {
        let answer = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
        assert_eq!(rsp_code(&answer), "000000", "{}", rsp_msg(&answer));
    }
    assert_eq!(backend.count(), 4);
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_is_gw0201() {
    // A port held bound but not listening: connects to it are refused, and
    // no other test can be given it meanwhile (a freed port can be).
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = held.local_addr().unwrap();
    let gw = TestGateway::start_with(config_with_backend("SCF", addr)).await;
    let mut c = gw.client().await;
    let answer = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&answer), "GW0201");
    assert!(rsp_msg(&answer).contains("SCF"), "{}", rsp_msg(&answer));
    gw.stop().await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_slower_than_the_timeout_is_gw0202_and_its_connection_is_not_reused() {
    let backend = ScriptedBackend::start(Script::Slow(Duration::from_millis(1500))).await;
    let mut raw = config_with_backend("SCF", backend.addr);
    for b in &mut raw.backends {
        if b.id == "SCF" {
            b.timeouts.request_ms = 200;
        }
    }
    let gw = TestGateway::start_with(raw).await;
    let mut c = gw.client().await;
    let answer = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&answer), "GW0202");
    let answer = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&answer), "GW0202");
    // The timed-out connection was dropped: the second request needed a new one.
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_with_wrong_seq_no_is_gw0204() {
    let backend = ScriptedBackend::start(Script::WrongSeq).await;
    let gw = TestGateway::start_with(config_with_backend("SCF", backend.addr)).await;
    let mut c = gw.client().await;
    let answer = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&answer), "GW0204");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_answer_is_gw0204() {
    let backend = ScriptedBackend::start(Script::Garbage).await;
    let gw = TestGateway::start_with(config_with_backend("SCF", backend.addr)).await;
    let mut c = gw.client().await;
    let answer = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&answer), "GW0204");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_idempotent_request_is_not_resent_when_the_backend_dies_mid_request() {
    let backend = ScriptedBackend::start(Script::Die).await;
    let gw = TestGateway::start_with(config_with_backend("SCF", backend.addr)).await;
    let mut c = gw.client().await;
    // 2079 (early repayment) moves money: exactly one delivery, result unknown.
    let answer = c.call(request("2079", &[])).await;
    assert_eq!(rsp_code(&answer), "GW0202");
    assert_eq!(backend.count(), 1);
    gw.stop().await;
}
