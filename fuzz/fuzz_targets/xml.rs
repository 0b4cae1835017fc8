//! `XmlDoc::parse` over arbitrary bytes, then `.body(layout)` against the
//! request and the response layout of every shipped schema.
//!
//! Properties: never panics (DOCTYPE, entities, deep nesting and bad GBK
//! are errors); a body that applies re-encodes to XML that parses and
//! applies to the same record, and converts to the fixed form, which
//! decodes to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use txgate::body::{fixed, xml};
use txgate_fuzz::{fill_blank_counts, HEADER, SCHEMAS};

const MASKED: txgate::mask::Masking<'static> = txgate::mask::Masking {
    header: &[],
    reveal: false,
};

fuzz_target!(|data: &[u8]| {
    // The testers' table (`txgate decode`), with the code's schema and
    // without, masked as by default.
    let code = data.get(HEADER.range(txgate::header::Role::Code));
    let schema = code
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| SCHEMAS.get(c));
    for s in [schema, None] {
        if let Ok(rows) = txgate::body::table(&HEADER, s, data, MASKED) {
            let _ = txgate::body::render_table(&rows);
        }
    }
    let doc = match xml::XmlDoc::parse(data) {
        Ok(doc) => doc,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = doc.body_is_empty();
    for (code, schema) in SCHEMAS.iter() {
        for (side, layout) in [("request", &schema.request), ("response", &schema.response)] {
            let rec = match doc.body(layout) {
                Ok(rec) => rec,
                Err(e) => {
                    let _ = e.to_string();
                    continue;
                }
            };
            // Values that came out of a GBK document encode back into one
            // (the HEAD may hold anything, so it is left out here).
            let out = xml::encode(&HEADER, &[], layout, &rec).unwrap_or_else(|e| {
                panic!("{code} {side}: applied but does not encode: {e}\n{rec:?}")
            });
            let again = xml::XmlDoc::parse(&out)
                .and_then(|d| d.body(layout))
                .unwrap_or_else(|e| panic!("{code} {side}: re-encoded XML does not apply: {e}"));
            assert_eq!(
                again, rec,
                "{code} {side}: XML round trip changed the record"
            );
            // The fixed form of the same record.
            let mut f = vec![b' '; HEADER.length()];
            if fixed::encode(layout, &rec, &mut f).is_ok() {
                let back = fixed::decode(layout, &f, HEADER.length())
                    .unwrap_or_else(|e| panic!("{code} {side}: fixed form does not decode: {e}"));
                assert_eq!(back, rec, "{code} {side}: XML to fixed changed the record");
            }
        }
    }
    // The gateway's own transcoding path, whatever the HEAD holds: the
    // fixed form decodes to the record the XML body gives.
    if let Some(schema) = doc.head("TranCode").and_then(|c| SCHEMAS.get(c)) {
        for (side, layout) in [("request", &schema.request), ("response", &schema.response)] {
            let Ok(f) = doc.to_fixed(&HEADER, layout) else {
                continue;
            };
            HEADER
                .check(&f)
                .unwrap_or_else(|e| panic!("{side}: to_fixed gave a bad header: {e}"));
            if f.len() == HEADER.length() && doc.body_is_empty() {
                continue; // a bodiless response stays bodiless
            }
            let rec = doc.body(layout).expect("to_fixed applied it");
            let mut back = fixed::decode(layout, &f, HEADER.length()).unwrap_or_else(|e| {
                panic!("{side}: to_fixed gave a body that does not decode: {e}")
            });
            fill_blank_counts(layout.fields(), &mut back);
            assert_eq!(back, rec, "{side}: to_fixed changed the record");
        }
    }
});
