//! Routing, allow-lists and DestSys, checked at the simulated backends.

use crate::support::*;
use txgate::header::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b2_code_succeeds_from_net_and_from_ibp() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    for channel in ["NET", "IBP"] {
        let msg = request("9183", &[("ChnlNo", channel)]);
        let answer = c.call(msg.clone()).await;
        assert_eq!(
            rsp_code(&answer),
            "000000",
            "{channel}: {}",
            rsp_msg(&answer)
        );
        assert_eq!(field(&answer, Role::Channel), channel);
    }
    assert_eq!(gw.received("SCF").len(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_5222_blank_dest_reaches_net_and_ibp_dest_reaches_ibp() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let to_net = request("5222", &[("DestSys", "")]);
    let answer = c.call(to_net.clone()).await;
    assert_eq!(rsp_code(&answer), "000000", "{}", rsp_msg(&answer));
    assert_eq!(gw.received("NET"), vec![bytes::Bytes::from(to_net)]);
    assert!(gw.received("IBP").is_empty());

    let to_ibp = request("5222", &[("DestSys", "IBP")]);
    let answer = c.call(to_ibp.clone()).await;
    assert_eq!(rsp_code(&answer), "000000", "{}", rsp_msg(&answer));
    assert_eq!(gw.received("IBP"), vec![bytes::Bytes::from(to_ibp)]);
    assert_eq!(gw.received("NET").len(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_receives_the_callers_bytes_unchanged_and_caller_gets_backends_bytes() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let msg = request("2969", &[("ChnlNo", "CUS")]);
    let answer = c.call(msg.clone()).await;
    assert_eq!(rsp_code(&answer), "000000", "{}", rsp_msg(&answer));
    let got = gw.received("SCF");
    assert_eq!(got.len(), 1);
    assert_eq!(
        &got[0][..],
        &msg[..],
        "the backend saw other bytes than the caller sent"
    );
    let expected = gw.sims["SCF"].answer(&msg);
    assert_eq!(
        answer, expected,
        "the caller saw other bytes than the backend sent"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_code_is_gw0101_and_not_relayed() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let msg = request("2969", &[("TranCode", "9999")]);
    let answer = c.call(msg).await;
    assert_eq!(rsp_code(&answer), "GW0101");
    assert!(rsp_msg(&answer).contains("9999"), "{}", rsp_msg(&answer));
    assert_eq!(
        answer.len(),
        header().length(),
        "a rejection has an empty body"
    );
    assert!(gw.received("SCF").is_empty());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_not_on_allow_list_is_gw0102() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    // 5220 is for NET and IBP; CUS may not call it.
    let answer = c.call(request("5220", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&answer), "GW0102");
    let m = rsp_msg(&answer);
    assert!(m.contains("CUS") && m.contains("5220"), "{m}");
    // A channel nobody configured.
    let answer = c.call(request("5220", &[("ChnlNo", "XYZ")])).await;
    assert_eq!(rsp_code(&answer), "GW0102");
    assert!(gw.received("SCF").is_empty());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_allow_list_denies_everyone() {
    let mut raw = shipped_config();
    for r in &mut raw.routes {
        if r.code == "9183" {
            r.channels.clear();
        }
    }
    let gw = TestGateway::start_with(raw).await;
    let mut c = gw.client().await;
    let answer = c.call(request("9183", &[("ChnlNo", "NET")])).await;
    assert_eq!(rsp_code(&answer), "GW0102");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_bound_to_other_addresses_is_gw0102() {
    let mut raw = shipped_config();
    for ch in &mut raw.channels {
        if ch.id == "CUS" {
            ch.sources = vec!["10.20.0.0/16".into()];
        }
    }
    let gw = TestGateway::start_with(raw).await;
    let mut c = gw.client().await;
    let answer = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&answer), "GW0102");
    assert!(
        rsp_msg(&answer).contains("127.0.0.1"),
        "{}",
        rsp_msg(&answer)
    );
    // Another channel, not bound, still passes on the same connection.
    let answer = c.call(request("2969", &[("ChnlNo", "IBP")])).await;
    assert_eq!(rsp_code(&answer), "000000", "{}", rsp_msg(&answer));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_dest_sys_is_gw0102() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let answer = c.call(request("5222", &[("DestSys", "ZZZ")])).await;
    assert_eq!(rsp_code(&answer), "GW0102");
    assert!(rsp_msg(&answer).contains("ZZZ"), "{}", rsp_msg(&answer));
    assert!(gw.received("NET").is_empty() && gw.received("IBP").is_empty());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalog_code_is_answered_from_its_fixtures() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let mut codes = std::collections::BTreeSet::new();
    for f in fixtures() {
        let xml = f.format == txgate::fixture::Format::Xml;
        let answer = c.call(request_from(&f, &[], xml)).await;
        assert_eq!(
            rsp_code(&answer),
            f.response_header
                .iter()
                .find(|(t, _)| t == "RspCode")
                .map(|(_, v)| v.as_str())
                .unwrap_or("000000"),
            "{}: {}",
            f.path.display(),
            rsp_msg(&answer)
        );
        codes.insert(f.code.clone());
    }
    let snap = gw.gateway.snapshot();
    assert_eq!(codes.len(), snap.routes.len(), "every route has a fixture");
    assert_eq!(snap.routes.len(), 34);
    gw.stop().await;
}
