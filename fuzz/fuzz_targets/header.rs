//! `HeaderSpec::builtin()` check / parse / values over arbitrary bytes.
//!
//! Properties: never panics; the gateway's rejection of any bytes, fixed
//! or XML, is a message whose header parses; check, parse and values agree
//! on accepting;
//! an accepted header gives text for every role, and its values encode
//! back into a header that checks and reads the same (N fields up to
//! their zero padding).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use txgate::body::xml::XmlDoc;
use txgate::gateway::{header_answer, Form};
use txgate::header::{HeaderType, Role};
use txgate_fuzz::HEADER;

/// The gateway's rejection of `data`, in both forms, must be a message its
/// callers can read: the header (or the XML HEAD) parses, with the code.
fn rejection(data: &[u8]) {
    let h = &*HEADER;
    let msg = "报文格式错误：字段 TranCode（交易码）偏移 0：应为数字";
    let fixed = header_answer(h, Form::Fixed, data, "GW0001", msg);
    assert_eq!(fixed.len(), h.length(), "a rejection has no body");
    h.check(&fixed)
        .unwrap_or_else(|e| panic!("a fixed rejection's header does not parse: {e}"));
    let parsed = h.parse(fixed).expect("checked");
    assert_eq!(parsed.text(h, Role::RspCode), "GW0001");
    assert!(msg.starts_with(&*parsed.text(h, Role::RspMsg)));
    let xml = header_answer(h, Form::Xml, data, "GW0001", msg);
    let doc =
        XmlDoc::parse(&xml).unwrap_or_else(|e| panic!("an XML rejection does not parse: {e}"));
    assert_eq!(doc.head("RspCode"), Some("GW0001"));
    assert_eq!(doc.head("RspMsg"), Some(msg));
    assert!(doc.body_is_empty());
}

fuzz_target!(|data: &[u8]| {
    rejection(data);
    let h = &*HEADER;
    let checked = h.check(data);
    let parsed = h.parse(Bytes::copy_from_slice(data));
    let values = h.values(data);
    assert_eq!(checked.is_ok(), parsed.is_ok(), "check and parse disagree");
    assert_eq!(checked.is_ok(), values.is_ok(), "check and values disagree");
    if let (Err(a), Err(b)) = (&checked, &values) {
        assert_eq!(a, b, "check and values report different faults");
    }
    let (Ok(header), Ok(values)) = (parsed, values) else {
        // A refusal must still render (it becomes RspMsg).
        let _ = checked.map_err(|e| e.to_string());
        return;
    };
    assert!(data.len() >= h.length());
    for (role, f) in h.roles() {
        let text = header.text(h, role);
        let raw = header.raw(h, role);
        assert!(raw.len() <= f.width);
        if f.kind == HeaderType::C {
            assert_eq!(
                txgate::gbk::decode(raw).expect("a checked C field decodes"),
                text,
                "{}",
                f.tag
            );
        }
    }
    assert_eq!(values.len(), h.fields().len());
    let pairs: Vec<(&str, &str)> = values
        .iter()
        .map(|(t, v)| (t.as_str(), v.as_str()))
        .collect();
    let rebuilt = h
        .encode(pairs.iter().copied())
        .unwrap_or_else(|e| panic!("values of a checked header do not encode: {e}"));
    assert_eq!(rebuilt.len(), h.length());
    h.check(&rebuilt)
        .unwrap_or_else(|e| panic!("a re-encoded header does not check: {e}"));
    let again = h.values(&rebuilt).expect("checked above");
    for ((f, (tag, v1)), (_, v2)) in h.fields().iter().zip(&values).zip(&again) {
        match f.kind {
            HeaderType::C => assert_eq!(v1, v2, "{tag}"),
            HeaderType::N => assert_eq!(
                v1.trim_start_matches('0'),
                v2.trim_start_matches('0'),
                "{tag}"
            ),
        }
    }
});
