//! What the fuzz targets share: the shipped header layout and schemas,
//! loaded once per process, and a tiny deterministic splitter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;
use txgate::header::HeaderSpec;
use txgate::schema::Schema;

/// The shipped header layout (`schemas/header.toml`, compiled in).
pub static HEADER: LazyLock<HeaderSpec> = LazyLock::new(HeaderSpec::builtin);

/// Every shipped schema, by code, loaded once from `../schemas`.
pub static SCHEMAS: LazyLock<BTreeMap<String, Schema>> = LazyLock::new(|| {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let schemas = txgate::schema::load_dir(&dir)
        .unwrap_or_else(|e| panic!("shipped schemas in {} must load: {e:?}", dir.display()));
    assert!(!schemas.is_empty(), "no schemas in {}", dir.display());
    schemas
});

/// Every framing a listener or backend may declare.
pub const FRAMINGS: [&str; 18] = [
    "ascii4",
    "ascii5",
    "ascii6",
    "ascii7",
    "ascii8",
    "ascii9",
    "ascii10",
    "u16",
    "u32",
    "ascii4+self",
    "ascii5+self",
    "ascii6+self",
    "ascii7+self",
    "ascii8+self",
    "ascii9+self",
    "ascii10+self",
    "u16+self",
    "u32+self",
];

/// Chunk lengths (1..=64) for feeding `len` bytes in pieces, derived from
/// `seed` with a xorshift so that one input always splits the same way.
pub fn chunks(len: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = ((x % 64) as usize + 1).min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// Fills blank count fields with their group's number of records, at every
/// level: the form `fixed::encode` and the XML decoder give them. The fixed
/// decoder keeps a blank count blank (0 records), so without this
/// `decode(encode(x)) == x` fails on every message whose count is blank
/// (reported; remove this once the fixed decoder agrees with the others).
pub fn fill_blank_counts(fields: &[txgate::schema::Field], rec: &mut txgate::body::Record) {
    use txgate::body::Value;
    for g in fields.iter().filter(|f| f.is_group()) {
        let n = rec.group(&g.tag).map_or(0, <[_]>::len);
        if let Some(count) = &g.count {
            if rec.text(count) == Some("") {
                rec.set(count, Value::Text(n.to_string()));
            }
        }
    }
    for (tag, v) in &mut rec.fields {
        if let (Value::Group(records), Some(g)) = (v, fields.iter().find(|f| &f.tag == tag)) {
            for r in records {
                fill_blank_counts(&g.fields, r);
            }
        }
    }
}
