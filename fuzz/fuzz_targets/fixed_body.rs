//! The fixed body codec over arbitrary bytes, against the request and the
//! response layout of every shipped schema (loaded once).
//!
//! The input is a message without its length prefix: 200 header bytes,
//! then the body. Properties: decode never panics; when it succeeds,
//! encode succeeds and decoding that again gives the same record
//! (`decode(encode(x)) == x`); padding the absent trailing fields keeps the
//! record; a failure names a field and renders as text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use txgate::body::fixed;
use txgate_fuzz::{fill_blank_counts, HEADER, SCHEMAS};

fuzz_target!(|data: &[u8]| {
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
