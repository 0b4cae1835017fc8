//! Bodies through the gateway: every error class with its field named,
//! section C layouts checked at the backend, transcoding both ways, and
//! answers that do not decode.

use crate::support::*;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use txgate::fixture::Format;
use txgate::header::Role;

fn vector(name: &str) -> Vec<u8> {
    let p = root().join("../shared/spec/vectors").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The byte offset (in the whole message) of a request field.
fn offset_of(code: &str, tag: &str) -> (usize, usize) {
    let s = &schemas()[code];
    let mut at = header().length();
    for f in s.request.fields() {
        if f.tag == tag {
            return (at, f.width);
        }
        at += f.width;
    }
    panic!("{code} has no request field {tag}");
}

async fn expect_rejection(c: &mut Client, msg: Vec<u8>, code: &str, named: &str) {
    let answer = c.call(msg).await;
    assert_eq!(rsp_code(&answer), code, "{}", rsp_msg(&answer));
    assert!(
        rsp_msg(&answer).contains(named),
        "RspMsg should name {named}: {}",
        rsp_msg(&answer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_error_class_is_answered_with_its_code_and_field() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;

    // Bad digits in an amount.
    let mut m = request("2969", &[("ChnlNo", "CUS")]);
    let (at, w) = offset_of("2969", "Amount");
    m[at + w - 2] = b'A';
    expect_rejection(&mut c, m, "GW0001", "Amount").await;

    // A date that is no calendar date.
    let full = fixture("2981", |f| f.layout.as_deref() == Some("full"));
    let mut m = request_from(&full, &[], false);
    let (at, _) = offset_of("2981", "StartDate");
    m[at..at + 8].copy_from_slice(b"20261341");
    expect_rejection(&mut c, m, "GW0001", "StartDate").await;

    // GBK faults from the shared vectors (2969 bodies from CUS).
    for (v, at) in [
        ("bad-gbk-trail-byte.bin", "232"),
        ("gb18030-four-byte.bin", "232"),
    ] {
        let msg = txgate::tools::unframe(&vector(v), Default::default()).unwrap();
        expect_rejection(&mut c, msg, "GW0003", at).await;
    }
    let msg = txgate::tools::unframe(
        &vector("split-character-at-field-end.bin"),
        Default::default(),
    )
    .unwrap();
    let answer = c.call(msg).await;
    assert_eq!(rsp_code(&answer), "GW0003", "{}", rsp_msg(&answer));

    // A required field left blank.
    let msg = txgate::tools::unframe(&vector("header-only-2969.bin"), Default::default()).unwrap();
    expect_rejection(&mut c, msg, "GW0001", "LoanAppNo").await;

    // An enumeration value not allowed.
    let mut m = request_from(&full, &[], false);
    let (at, w) = offset_of("2981", "ProdType");
    let bad = txgate::gbk::encode("柴油贷").unwrap();
    m[at..at + w].fill(b' ');
    m[at..at + bad.len()].copy_from_slice(&bad);
    expect_rejection(&mut c, m, "GW0001", "ProdType").await;

    assert!(gw.received("SCF").is_empty(), "no bad request was relayed");
    gw.stop().await;
}

fn xml_2969(cust_name: &str) -> Vec<u8> {
    let text = format!(
        "<?xml version=\"1.0\" encoding=\"GBK\"?><ROOT><HEAD><TranCode>2969</TranCode><ChnlNo>CUS</ChnlNo>\
         <SeqNo>{}</SeqNo><TranDate>20261204</TranDate><TranTime>101500</TranTime></HEAD>\
         <BODY><LoanAppNo>LA2026120400001</LoanAppNo><CustName>{cust_name}</CustName><Amount>1.00</Amount></BODY></ROOT>",
        next_seq("X")
    );
    txgate::gbk::encode(&text).unwrap().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_errors_are_answered_in_xml_naming_the_field() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    // DOCTYPE and entities are refused (no XXE).
    let msg = txgate::tools::unframe(&vector("xml-doctype.bin"), Default::default()).unwrap();
    let answer = c.call(msg).await;
    assert!(
        txgate::body::xml::is_xml(&answer),
        "the caller's own format"
    );
    assert_eq!(rsp_code(&answer), "GW0001");
    assert!(rsp_msg(&answer).contains("DOCTYPE"), "{}", rsp_msg(&answer));
    // Over-width: 31 Chinese characters are 62 bytes in a 60-byte field.
    let long = "中".repeat(31);
    let answer = c.call(xml_2969(&long)).await;
    assert!(txgate::body::xml::is_xml(&answer));
    assert_eq!(rsp_code(&answer), "GW0001", "{}", rsp_msg(&answer));
    assert!(
        rsp_msg(&answer).contains("CustName"),
        "{}",
        rsp_msg(&answer)
    );
    // A character GBK cannot encode, as a character reference.
    let answer = c.call(xml_2969("燃气&#x1F600;公司")).await;
    assert_eq!(rsp_code(&answer), "GW0003", "{}", rsp_msg(&answer));
    assert!(
        rsp_msg(&answer).contains("CustName"),
        "{}",
        rsp_msg(&answer)
    );
    assert!(gw.received("SCF").is_empty());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_c_old_and_full_layouts_reach_the_backend_in_full_layout() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let codes = ["1310", "2981", "2983", "2984", "2985", "2967", "2979"];
    for code in codes {
        let schema = &schemas()[code];
        let full_len = header().length() + schema.request.full_len().unwrap();
        let backend = gw
            .gateway
            .snapshot()
            .route(code.as_bytes())
            .unwrap()
            .backend
            .id()
            .to_string();
        for layout in ["old", "full"] {
            let f = fixture(code, |f| {
                f.layout.as_deref() == Some(layout) && f.format == Format::Fixed
            });
            let before = gw.received(&backend).len();
            let sent = request_from(&f, &[], false);
            let answer = c.call(sent.clone()).await;
            assert_eq!(
                rsp_code(&answer),
                "000000",
                "{code} {layout}: {}",
                rsp_msg(&answer)
            );
            let got = gw.received(&backend);
            assert_eq!(got.len(), before + 1);
            let at_backend = got.last().unwrap();
            assert_eq!(
                at_backend.len(),
                full_len,
                "{code} {layout} reaches the backend in full layout"
            );
            assert_eq!(
                &at_backend[..sent.len()],
                &sent[..],
                "{code} {layout}: the sent part is unchanged"
            );
            assert!(
                at_backend[sent.len()..].iter().all(|&b| b == b' '),
                "{code} {layout}: absent conditions are blank"
            );
            if layout == "old" {
                assert!(sent.len() < full_len, "{code}: the old layout is shorter");
            } else {
                assert_eq!(sent.len(), full_len);
            }
        }
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_caller_to_fixed_backend_is_transcoded_both_ways() {
    let gw = TestGateway::start().await;
    let mut c = gw.client().await;
    let f = fixture("2969", |f| f.format == Format::Xml);
    let seq = next_seq("XT");
    let xml = request_from(&f, &[("SeqNo", &seq)], true);
    let fixed = request_from(&f, &[("SeqNo", &seq)], false);
    let answer = c.call(xml).await;
    assert!(
        txgate::body::xml::is_xml(&answer),
        "the caller gets XML back"
    );
    assert_eq!(rsp_code(&answer), "000000", "{}", rsp_msg(&answer));
    let got = gw.received("SCF");
    assert_eq!(&got[0][..], &fixed[..], "the backend got the fixed form");
    // The XML answer carries the fixture's expected body.
    let schema = &schemas()["2969"];
    let doc = txgate::body::xml::XmlDoc::parse(&answer).unwrap();
    let body = doc.body(&schema.response).unwrap();
    let (_, expected) = f.expected_response(schema).unwrap();
    assert_eq!(body, expected);
    assert_eq!(doc.head("SeqNo"), Some(seq.as_str()));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_caller_to_xml_backend_is_transcoded_both_ways() {
    let mut raw = shipped_config();
    for b in &mut raw.backends {
        if b.id == "SCF" {
            b.body = txgate::config::BodyFormat::Xml;
        }
    }
    let gw = TestGateway::start_with(raw).await;
    let mut c = gw.client().await;
    let f = fixture("9419", |f| f.format == Format::Fixed);
    let seq = next_seq("FX");
    let fixed = request_from(&f, &[("SeqNo", &seq)], false);
    let xml = request_from(&f, &[("SeqNo", &seq)], true);
    let answer = c.call(fixed).await;
    assert!(!txgate::body::xml::is_xml(&answer));
    assert_eq!(rsp_code(&answer), "000000", "{}", rsp_msg(&answer));
    let got = gw.received("SCF");
    assert_eq!(&got[0][..], &xml[..], "the backend got the XML form");
    let schema = &schemas()["9419"];
    let body = txgate::body::fixed::decode(&schema.response, &answer, header().length()).unwrap();
    let (_, expected) = f.expected_response(schema).unwrap();
    assert_eq!(body, expected, "groups survive the round trip");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_without_validation_relays_a_body_that_does_not_decode() {
    let mut raw = shipped_config();
    for r in &mut raw.routes {
        if r.code == "2969" {
            r.validate = false;
        }
    }
    let gw = TestGateway::start_with(raw).await;
    let mut c = gw.client().await;
    let mut m = request("2969", &[("ChnlNo", "CUS")]);
    let (at, w) = offset_of("2969", "Amount");
    m[at + w - 1] = b'X';
    let _ = c.call(m.clone()).await;
    assert_eq!(
        gw.received("SCF"),
        vec![Bytes::from(m)],
        "relayed unchanged"
    );
    gw.stop().await;
}

/// A backend that answers every request with a fixed answer, SeqNo patched.
async fn canned_backend(answer: Vec<u8>) -> std::net::SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = tcp.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut f = tokio_util::codec::Framed::new(s, txgate::frame::FrameCodec::default());
                while let Some(Ok(req)) = f.next().await {
                    let mut a = answer.clone();
                    let r = header().range(Role::Seq);
                    a[r.clone()].copy_from_slice(&req[r]);
                    if f.send(Bytes::from(a)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_whose_group_count_does_not_match_is_gw0204() {
    // A good 9419 answer from the simulator, with its record count changed.
    let gw = TestGateway::start().await;
    let f = fixture("9419", |f| f.format == Format::Fixed);
    let req = request_from(&f, &[], false);
    let mut answer = gw.sims["SCF"].answer(&req).to_vec();
    gw.stop().await;
    let schema = &schemas()["9419"];
    let mut at = header().length();
    for fld in schema.response.fields() {
        if fld.tag == "RecNum" {
            break;
        }
        at += fld.width;
    }
    answer[at..at + 4].copy_from_slice(b"0009");
    let addr = canned_backend(answer).await;
    let mut raw = config_with_backend("SCF", addr);
    for r in &mut raw.routes {
        r.validate = true;
    }
    let gw = TestGateway::start_with(raw).await;
    let mut c = gw.client().await;
    let got = c.call(req).await;
    assert_eq!(rsp_code(&got), "GW0204", "{}", rsp_msg(&got));
    assert!(rsp_msg(&got).contains("Rec"), "{}", rsp_msg(&got));
    gw.stop().await;
}
