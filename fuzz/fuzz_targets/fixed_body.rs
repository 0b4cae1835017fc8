//! The fixed body codec over arbitrary bytes, against the request and the
//! response layout of every shipped schema (loaded once).
//!
//! The input is a message without its length prefix: 200 header bytes,
//! then the body. Properties: decode never panics; when it succeeds,
//! encode succeeds and decoding that again gives the same record
//! (`decode(encode(x)) == x`); fixed to XML and back (the gateway's
//! transcoding) keeps the header values and the record; padding the absent
//! trailing fields keeps the record; a failure names a field and renders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use txgate::body::fixed;
use txgate::header::HeaderType;
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
    let start = HEADER.length();
    for (code, schema) in SCHEMAS.iter() {
        for (side, layout) in [("request", &schema.request), ("response", &schema.response)] {
            let mut rec = match fixed::decode(layout, data, start) {
                Ok(rec) => rec,
                Err(e) => {
                    assert!(!e.tag.is_empty(), "{code} {side}: an error names no field");
                    let _ = e.to_string();
                    continue;
                }
            };
            let mut out = data[..start].to_vec();
            fixed::encode(layout, &rec, &mut out).unwrap_or_else(|e| {
                panic!("{code} {side}: decoded but does not encode: {e}\n{rec:?}")
            });
            if let (Some(full), false) = (layout.full_len(), layout.has_trailing()) {
                assert_eq!(out.len(), start + full, "{code} {side}: fixed length");
            }
            let again = fixed::decode(layout, &out, start).unwrap_or_else(|e| {
                panic!("{code} {side}: re-encoded body does not decode: {e}\n{rec:?}")
            });
            fill_blank_counts(layout.fields(), &mut rec);
            assert_eq!(again, rec, "{code} {side}: decode(encode(x)) != x");
            // The gateway's transcoding for an XML listener or backend:
            // fixed to XML and back keeps the header values and the record.
            if let Ok(x) = txgate::body::fixed_to_xml(&HEADER, layout, data) {
                let back = txgate::body::xml_to_fixed(&HEADER, layout, &x).unwrap_or_else(|e| {
                    panic!("{code} {side}: fixed to XML does not come back: {e}")
                });
                let again = fixed::decode(layout, &back, start).unwrap_or_else(|e| {
                    panic!("{code} {side}: transcoded body does not decode: {e}")
                });
                assert_eq!(again, rec, "{code} {side}: transcoding changed the record");
                // XML HEAD values are trimmed on both sides, so leading
                // spaces of a header field are lost (reported); and an N
                // field the header check took with trailing spaces comes
                // back zero-padded. Compare the rest.
                let trimmed = |m: &[u8]| {
                    HEADER.values(m).ok().map(|v| {
                        v.into_iter()
                            .map(|(t, v)| {
                                let v = v.trim_matches(|c: char| c.is_whitespace() || c == '\0');
                                let n = HEADER.by_tag(&t).is_some_and(|f| f.kind == HeaderType::N);
                                let v = if n { v.trim_start_matches('0') } else { v };
                                (t, v.to_string())
                            })
                            .collect::<Vec<_>>()
                    })
                };
                assert_eq!(
                    trimmed(&back),
                    trimmed(data),
                    "{code} {side}: transcoding changed the header"
                );
            }
            if let Some(padded) = fixed::pad_trailing(layout, data, start) {
                let p = fixed::decode(layout, &padded, start)
                    .unwrap_or_else(|e| panic!("{code} {side}: padded body does not decode: {e}"));
                let mut p = p;
                fill_blank_counts(layout.fields(), &mut p);
                assert_eq!(p, rec, "{code} {side}: padding changed the record");
            }
        }
    }
});
