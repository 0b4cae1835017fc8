//! `HeaderSpec::builtin()` check / parse / values over arbitrary bytes.
//!
//! Properties: never panics; check, parse and values agree on accepting;
//! an accepted header gives text for every role, and its values encode
//! back into a header that checks and reads the same (N fields up to
//! their zero padding).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use txgate::header::HeaderType;
use txgate_fuzz::HEADER;

fuzz_target!(|data: &[u8]| {
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
