//! The gateway's own rejections: right code, readable RspMsg, caller's format.

use crate::support::*;

fn vector(name: &str) -> Vec<u8> {
    let p = root().join("../shared/spec/vectors").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_digit_length_is_gw0001_then_the_connection_closes() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    c.write_raw(&vector("non-digit-length.bin")).await;
    let answer = c.recv().await;
    assert_eq!(rsp_code(&answer), "GW0001");
    assert!(rsp_msg(&answer).contains("长度"), "{}", rsp_msg(&answer));
    assert!(c.recv_or_eof().await.is_none(), "the connection is closed");
    // The gateway serves the next caller.
    let mut c = gw.client().await;
    let answer = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&answer), "000000");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_declared_length_is_gw0002_then_the_connection_closes() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    c.write_raw(&vector("oversize-length.bin")).await;
    let answer = c.recv().await;
    assert_eq!(rsp_code(&answer), "GW0002");
    assert!(c.recv_or_eof().await.is_none());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_header_vector_is_routed_and_checked() {
    // header-only-2969 has a valid header and no body: 2969 requires LoanAppNo.
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    c.write_raw(&vector("header-only-2969.bin")).await;
    let answer = c.recv().await;
    assert_eq!(rsp_code(&answer), "GW0001");
    assert!(
        rsp_msg(&answer).contains("LoanAppNo"),
        "{}",
        rsp_msg(&answer)
    );
    assert!(gw.received("SCF").is_empty());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_header_digits_are_gw0001_naming_the_field() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let mut msg = request("2969", &[("ChnlNo", "CUS")]);
    let h = header();
    let r = h.range(txgate::header::Role::Date);
    msg[r.start] = b'X';
    let answer = c.call(msg).await;
    assert_eq!(rsp_code(&answer), "GW0001");
    assert!(
        rsp_msg(&answer).contains("TranDate"),
        "{}",
        rsp_msg(&answer)
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_message_is_gw0001() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let answer = c.call(&b"2969CUS"[..]).await;
    assert_eq!(rsp_code(&answer), "GW0001");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_vector_layout_matches_ours() {
    // The shared vector is a GW0102 rejection as protocol.md §5 describes it.
    let v = vector("rejection-gw0102.bin");
    let msg = txgate::tools::unframe(&v, Default::default()).unwrap();
    assert_eq!(rsp_code(&msg), "GW0102");
    assert_eq!(rsp_msg(&msg), "渠道无权限：渠道 NET 不可调用交易 5220");
    // Ours for the same case reads the same.
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let answer = c.call(request("5220", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_msg(&answer), "渠道无权限：渠道 CUS 不可调用交易 5220");
    gw.stop().await;
}
