//! Body codec tests: the shared vectors (body-level ones), every error
//! class, property tests over generated layouts, fuzzing for panics, and the
//! shipped schemas and fixtures in both forms.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::BTreeMap;
use std::path::PathBuf;
use txgate::body::xml::{self, XmlDoc};
use txgate::body::{self, fixed, Body, BodyErrorKind, Record, Value};
use txgate::fixture::{self, Format};
use txgate::header::HeaderSpec;
use txgate::mask::{Masking, Redacted};
use txgate::schema::{self, Field, FieldType, Layout, Schema};

// ---------------------------------------------------------------- helpers

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/spec/vectors"
    ));
    assert!(
        dir.join("vectors.json").is_file(),
        "the shared test vectors are missing: expected {} (shared/spec/vectors beside the repository)",
        dir.display()
    );
    dir
}

/// A vector's message: the frame without its 8-digit length prefix.
fn vector(name: &str) -> Vec<u8> {
    let path = vectors_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (prefix, msg) = bytes.split_at(8);
    let len: usize = std::str::from_utf8(prefix).unwrap().parse().unwrap();
    assert_eq!(len, msg.len(), "{name}: length prefix");
    msg.to_vec()
}

fn vector_json() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(vectors_dir().join("vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn schema_of(fields: &str) -> Schema {
    Schema::from_toml(&format!("code = \"2969\"\nname = \"测试\"\n{fields}")).unwrap()
}

const LOAN_APP_NO: &str =
    "[[request]]\ntag='LoanAppNo'\nlabel='放款申请编号'\ntype='C'\nwidth=32\nrequired=true\n";
const CUST_NAME: &str =
    "[[request]]\ntag='CustName'\nlabel='客户名称'\ntype='C'\nwidth=60\nsensitive=true\n";
const AMOUNT: &str = "[[request]]\ntag='Amount'\nlabel='申请金额'\ntype='amount'\nwidth=15\n";

/// The 2969 request of the vectors: LoanAppNo C32, CustName C60, Amount amount 15.
fn layout_2969() -> Layout {
    schema_of(&format!("{LOAN_APP_NO}{CUST_NAME}{AMOUNT}")).request
}

/// The split-character vector puts the C60 name first (its "field 1").
fn layout_name_first() -> Layout {
    schema_of(&format!("{CUST_NAME}{LOAN_APP_NO}{AMOUNT}")).request
}

fn group_layout() -> Layout {
    schema_of(
        "[[request]]\ntag='RecNum'\nlabel='记录数'\ntype='N'\nwidth=2\n\
         [[request]]\ntag='Records'\nlabel='交易记录'\ntype='group'\ncount='RecNum'\n\
         [[request.fields]]\ntag='TxnDate'\nlabel='交易日期'\ntype='date'\nwidth=8\n\
         [[request.fields]]\ntag='TxnAmt'\nlabel='交易金额'\ntype='amount'\nwidth=10\n",
    )
    .request
}

fn text_body(pairs: &[(&str, &str)]) -> Body {
    Record {
        fields: pairs
            .iter()
            .map(|(t, v)| (t.to_string(), Value::Text(v.to_string())))
            .collect(),
    }
}

fn header() -> HeaderSpec {
    HeaderSpec::builtin()
}

fn head_2969() -> Vec<u8> {
    header()
        .encode([("TranCode", "2969"), ("ChnlNo", "CUS"), ("SeqNo", "S1")])
        .unwrap()
}

// ---------------------------------------------------------------- vectors

#[test]
fn vectors_json_names_existing_files() {
    let dir = vectors_dir();
    let list = vector_json();
    assert!(list.len() >= 10);
    for v in &list {
        let file = v["file"].as_str().unwrap();
        let len = std::fs::metadata(dir.join(file)).unwrap().len();
        assert_eq!(Some(len), v["bytes"].as_u64(), "{file}");
    }
}

#[test]
fn vector_fixed_body_gbk_text_decodes() {
    let msg = vector("fixed-body-gbk-text.bin");
    let entry = vector_json()
        .into_iter()
        .find(|v| v["file"] == "fixed-body-gbk-text.bin")
        .unwrap();
    let layout = layout_2969();
    let body = fixed::decode(&layout, &msg, 200).unwrap();
    for f in entry["body_fields"].as_array().unwrap() {
        let tag = f[0].as_str().unwrap();
        let width = f[1].as_u64().unwrap() as usize;
        assert_eq!(layout.field(tag).unwrap().width, width);
        assert_eq!(body.text(tag), f[2].as_str(), "{tag}");
    }
    // Encoding gives the vector's bytes back.
    let mut out = msg[..200].to_vec();
    fixed::encode(&layout, &body, &mut out).unwrap();
    assert_eq!(out, msg);
    // And it survives a trip through XML.
    let x = body::fixed_to_xml(&header(), &layout, &msg).unwrap();
    assert_eq!(body::xml_to_fixed(&header(), &layout, &x).unwrap(), msg);
}

#[test]
fn vector_bad_gbk_trail_byte_is_charset_at_232() {
    let e = fixed::decode(&layout_2969(), &vector("bad-gbk-trail-byte.bin"), 200).unwrap_err();
    assert!(e.is_charset(), "{e}");
    assert_eq!(e.offset, Some(232), "{e}");
    assert_eq!(e.tag, "CustName");
}

#[test]
fn vector_split_character_is_charset_naming_cust_name() {
    let msg = vector("split-character-at-field-end.bin");
    // Decoding the whole body at once sees nothing wrong: that is the point.
    assert!(txgate::gbk::decode(&msg[200..]).is_ok());
    let e = fixed::decode(&layout_name_first(), &msg, 200).unwrap_err();
    assert!(e.is_charset(), "{e}");
    assert_eq!(e.tag, "CustName");
    assert!(e.to_string().contains("CustName"), "{e}");
    assert_eq!(e.offset, Some(259), "{e}");
}

#[test]
fn vector_gb18030_four_byte_is_charset_at_232() {
    let e = fixed::decode(&layout_2969(), &vector("gb18030-four-byte.bin"), 200).unwrap_err();
    assert!(e.is_charset(), "{e}");
    assert_eq!(e.offset, Some(232), "{e}");
    assert!(e.to_string().contains("CustName"), "{e}");
}

#[test]
fn vector_xml_2969_parses() {
    let msg = vector("xml-2969.bin");
    assert!(xml::is_xml(&msg));
    let doc = XmlDoc::parse(&msg).unwrap();
    assert_eq!(doc.head("TranCode"), Some("2969"));
    assert_eq!(doc.head("DestSys"), Some(""));
    assert_eq!(doc.head("SeqNo"), Some("CUS20261204000000002"));
    let body = doc.body(&layout_2969()).unwrap();
    assert_eq!(body.text("Amount"), Some("123456"));
    assert_eq!(body.text("LoanAppNo"), Some("LA2026120400001"));
    assert_eq!(
        body.text("CustName"),
        Some("中石油昆仑燃气（青岛）有限公司")
    );
    let f = body::xml_to_fixed(&header(), &layout_2969(), &msg).unwrap();
    assert_eq!(&f[200..], &vector("fixed-body-gbk-text.bin")[200..]);
}

#[test]
fn vector_xml_doctype_is_refused_as_format() {
    let e = XmlDoc::parse(&vector("xml-doctype.bin")).unwrap_err();
    assert_eq!(e.kind, BodyErrorKind::Format);
    assert!(!e.is_charset());
    assert!(e.to_string().contains("DOCTYPE"), "{e}");
    assert!(!e.to_string().contains("passwd"));
}

// ---------------------------------------------------------------- error classes

#[test]
fn error_bad_digits() {
    let mut msg = vector("fixed-body-gbk-text.bin");
    msg[300] = b'A';
    let e = fixed::decode(&layout_2969(), &msg, 200).unwrap_err();
    assert_eq!(e.offset, Some(292));
    assert!(e.to_string().contains("Amount"), "{e}");
    assert!(e.to_string().contains("偏移 292"), "{e}");
}

#[test]
fn error_bad_date() {
    let mut msg = head_2969();
    msg.extend_from_slice(b"0120230229000000100");
    let e = fixed::decode(&group_layout(), &msg, 200).unwrap_err();
    assert!(e.to_string().contains("TxnDate"), "{e}");
    assert_eq!(e.offset, Some(202));
    let x = "<ROOT><HEAD/><BODY><Records><Record><TxnDate>20231301</TxnDate></Record></Records></BODY></ROOT>";
    let e = XmlDoc::parse(x.as_bytes())
        .unwrap()
        .body(&group_layout())
        .unwrap_err();
    assert!(e.to_string().contains("TxnDate"), "{e}");
}

#[test]
fn error_over_width_on_encode() {
    let b = text_body(&[("LoanAppNo", "LA1"), ("CustName", &"中".repeat(31))]);
    let e = fixed::encode(&layout_2969(), &b, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("CustName"), "{e}");
    let e = xml::encode(&header(), &[], &layout_2969(), &b).unwrap_err();
    assert!(e.to_string().contains("CustName"), "{e}");
}

#[test]
fn error_split_gbk_char() {
    let mut msg = head_2969();
    let mut name = txgate::gbk::encode("中").unwrap().into_owned();
    name.truncate(1);
    msg.extend_from_slice(b"LA1");
    msg.resize(232, b' ');
    msg.extend_from_slice(&name);
    msg.resize(292, b' ');
    msg.extend_from_slice(b"000000000000001");
    let e = fixed::decode(&layout_2969(), &msg, 200).unwrap_err();
    assert!(e.is_charset());
    assert!(e.to_string().contains("CustName"), "{e}");
}

#[test]
fn error_unmappable_char_on_encode() {
    let b = text_body(&[("LoanAppNo", "LA1"), ("CustName", "王😀")]);
    let e = fixed::encode(&layout_2969(), &b, &mut Vec::new()).unwrap_err();
    assert!(e.is_charset());
    assert!(e.to_string().contains("CustName"), "{e}");
    let e = xml::encode(&header(), &[], &layout_2969(), &b).unwrap_err();
    assert!(e.is_charset());
    assert!(e.to_string().contains("CustName"), "{e}");
}

#[test]
fn error_gb18030_four_byte() {
    let mut msg = vector("fixed-body-gbk-text.bin");
    msg[210..214].copy_from_slice(&[0x81, 0x30, 0x81, 0x30]);
    let e = fixed::decode(&layout_2969(), &msg, 200).unwrap_err();
    assert!(e.is_charset());
    assert_eq!(e.offset, Some(210));
    assert!(e.to_string().contains("LoanAppNo"), "{e}");
}

#[test]
fn error_missing_required_field() {
    let mut msg = vector("fixed-body-gbk-text.bin");
    msg[200..232].fill(b' ');
    let e = fixed::decode(&layout_2969(), &msg, 200).unwrap_err();
    assert!(e.to_string().contains("LoanAppNo"), "{e}");
    let x = "<ROOT><HEAD/><BODY><Amount>1</Amount></BODY></ROOT>";
    let e = XmlDoc::parse(x.as_bytes())
        .unwrap()
        .body(&layout_2969())
        .unwrap_err();
    assert!(e.to_string().contains("LoanAppNo"), "{e}");
    let e = fixed::encode(&layout_2969(), &text_body(&[]), &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("LoanAppNo"), "{e}");
}

#[test]
fn error_group_count_mismatch() {
    let l = group_layout();
    // Count 2, one record: too few bytes for the second.
    let mut msg = head_2969();
    msg.extend_from_slice(b"02202612040000000100");
    let e = fixed::decode(&l, &msg, 200).unwrap_err();
    assert!(e.to_string().contains("Records[2]"), "{e}");
    // Count 0, one record: bytes left over.
    let mut msg = head_2969();
    msg.extend_from_slice(b"00202612040000000100");
    let e = fixed::decode(&l, &msg, 200).unwrap_err();
    assert!(e.to_string().contains("Records"), "{e}");
    // The body's count disagrees with its records, on encode.
    let t: toml::Table =
        toml::from_str("RecNum = '3'\nRecords = [{ TxnDate = '20261204' }]").unwrap();
    let b = Record::from_toml(&l, &t).unwrap();
    let e = fixed::encode(&l, &b, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("RecNum"), "{e}");
    // And in XML.
    let x = "<ROOT><HEAD/><BODY><RecNum>3</RecNum><Records><Record><TxnDate/></Record></Records></BODY></ROOT>";
    let e = XmlDoc::parse(x.as_bytes()).unwrap().body(&l).unwrap_err();
    assert!(e.to_string().contains("RecNum"), "{e}");
}

#[test]
fn error_xml_doctype() {
    let x = "<?xml version=\"1.0\" encoding=\"GBK\"?><!DOCTYPE ROOT SYSTEM \"http://x/y.dtd\"><ROOT><HEAD/></ROOT>";
    let e = XmlDoc::parse(x.as_bytes()).unwrap_err();
    assert_eq!(e.kind, BodyErrorKind::Format);
    assert!(e.to_string().contains("DOCTYPE"), "{e}");
    let entity = "<ROOT><HEAD/><BODY><LoanAppNo>&ext;</LoanAppNo></BODY></ROOT>";
    let e = XmlDoc::parse(entity.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("LoanAppNo"), "{e}");
}

#[test]
fn error_messages_fit_rsp_msg() {
    let mut msg = vector("fixed-body-gbk-text.bin");
    msg[300] = b'A';
    let e = fixed::decode(&layout_2969(), &msg, 200).unwrap_err();
    let bytes = txgate::gbk::encode(&e.to_string()).unwrap().len();
    assert!(bytes <= 100, "{bytes} bytes: {e}");
}

#[test]
fn redacted_masks_the_customer_name() {
    let body = fixed::decode(&layout_2969(), &vector("fixed-body-gbk-text.bin"), 200).unwrap();
    let text = Redacted {
        layout: &layout_2969(),
        body: &body,
    }
    .to_string();
    assert_eq!(
        text,
        "LoanAppNo=LA2026120400001 CustName=中*************司 Amount=123456"
    );
}

#[test]
fn table_shows_header_then_body() {
    let s = schema_of(&format!("{LOAN_APP_NO}{CUST_NAME}{AMOUNT}"));
    let rows = body::table(
        &header(),
        Some(&s),
        &vector("fixed-body-gbk-text.bin"),
        Masking::CLEAR,
    )
    .unwrap();
    assert_eq!(rows[0].tag, "TranCode");
    assert_eq!(rows[0].value, "2969");
    let last = rows.last().unwrap();
    assert_eq!(
        (last.tag.as_str(), last.value.as_str()),
        ("Amount", "123456")
    );
    let xrows = body::table(&header(), Some(&s), &vector("xml-2969.bin"), Masking::CLEAR).unwrap();
    assert!(xrows
        .iter()
        .any(|r| r.tag == "CustName" && r.value.starts_with("中石油")));
    let text = body::render_table(&rows);
    assert!(text.contains("放款申请编号"));
    let raw = body::table(
        &header(),
        None,
        &vector("fixed-body-gbk-text.bin"),
        Masking::CLEAR,
    )
    .unwrap();
    assert_eq!(raw.last().unwrap().tag, "BODY");
}

// ---------------------------------------------------------------- generators

const POOL: &[char] = &[
    'A', 'Z', 'a', 'z', '0', '9', ' ', '-', '_', '&', '<', '>', '"', '\'', '/', '中', '石', '油',
    '昆', '仑', '燃', '气', '（', '）', '青', '岛', '有', '限', '公', '司', '，', '。', '号', '贷',
];

fn gbk_len(s: &str) -> usize {
    txgate::gbk::encode(s).unwrap().len()
}

fn c_text(width: usize) -> BoxedStrategy<String> {
    proptest::collection::vec(proptest::sample::select(POOL), 0..=width.min(40))
        .prop_map(move |chars| {
            let mut s = String::new();
            for c in chars {
                let mut t = s.clone();
                t.push(c);
                if gbk_len(&t) > width {
                    break;
                }
                s = t;
            }
            s.trim_end_matches(' ').to_string()
        })
        .boxed()
}

fn digits(width: usize) -> BoxedStrategy<String> {
    proptest::collection::vec(0u8..10, 1..=width.min(18))
        .prop_map(|d| {
            let s: String = d.iter().map(|d| char::from(b'0' + d)).collect();
            let t = s.trim_start_matches('0');
            if t.is_empty() {
                "0".to_string()
            } else {
                t.to_string()
            }
        })
        .boxed()
}

fn date() -> BoxedStrategy<String> {
    (1900u32..2100, 1u32..=12, 1u32..=31)
        .prop_map(|(y, m, d)| {
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let dim = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            format!("{y:04}{m:02}{:02}", 1 + (d - 1) % dim)
        })
        .boxed()
}

fn time() -> BoxedStrategy<String> {
    (0u32..24, 0u32..60, 0u32..60)
        .prop_map(|(h, m, s)| format!("{h:02}{m:02}{s:02}"))
        .boxed()
}

fn value_strategy(f: &Field) -> BoxedStrategy<Value> {
    if f.kind == FieldType::Group {
        return proptest::collection::vec(record_strategy(&f.fields), 0..4)
            .prop_map(Value::Group)
            .boxed();
    }
    let text = if !f.values.is_empty() {
        proptest::sample::select(f.values.clone()).boxed()
    } else {
        match f.kind {
            FieldType::C => {
                let required = f.required;
                c_text(f.width)
                    .prop_map(move |s| {
                        if required && s.is_empty() {
                            "X".to_string()
                        } else {
                            s
                        }
                    })
                    .boxed()
            }
            FieldType::N | FieldType::Amount => digits(f.width),
            FieldType::Date => date(),
            FieldType::Time => time(),
            FieldType::Group => unreachable!(),
        }
    };
    let text = if f.required {
        text
    } else {
        prop_oneof![1 => Just(String::new()), 3 => text].boxed()
    };
    text.prop_map(Value::Text).boxed()
}

/// Sets every count field to its group's number of records.
fn fix_counts(fields: &[Field], rec: &mut Record) {
    for g in fields.iter().filter(|f| f.kind == FieldType::Group) {
        let n = rec.group(&g.tag).map_or(0, |r| r.len());
        if let Some(c) = &g.count {
            rec.set(c, Value::Text(n.to_string()));
        }
    }
}

fn record_strategy(fields: &[Field]) -> BoxedStrategy<Record> {
    let owned = fields.to_vec();
    let parts: Vec<BoxedStrategy<(String, Value)>> = fields
        .iter()
        .map(|f| {
            let tag = f.tag.clone();
            value_strategy(f)
                .prop_map(move |v| (tag.clone(), v))
                .boxed()
        })
        .collect();
    parts
        .prop_map(move |fs| {
            let mut r = Record { fields: fs };
            fix_counts(&owned, &mut r);
            r
        })
        .boxed()
}

fn plain_field() -> BoxedStrategy<Field> {
    let kind = prop_oneof![
        (1usize..12).prop_map(|w| (FieldType::N, w, vec![])),
        (1usize..40).prop_map(|w| (FieldType::C, w, vec![])),
        (1usize..18).prop_map(|w| (FieldType::Amount, w, vec![])),
        Just((FieldType::Date, 8, vec![])),
        Just((FieldType::Time, 6, vec![])),
        Just((
            FieldType::C,
            6,
            vec!["油易贷".to_string(), "批油贷".to_string(), "A".to_string()]
        )),
        Just((
            FieldType::N,
            2,
            vec!["1".to_string(), "2".to_string(), "10".to_string()]
        )),
    ];
    (kind, any::<bool>(), any::<bool>())
        .prop_map(|((kind, width, values), required, sensitive)| {
            let mut f = Field::new("X", "标签", kind, width);
            f.values = values;
            f.required = required;
            f.sensitive = sensitive;
            f
        })
        .boxed()
}

/// Plain fields, maybe a group (with its count field), then trailing fields.
fn layout_strategy() -> BoxedStrategy<Layout> {
    layout_with(true, 0)
}

fn layout_with(allow_group: bool, min_trailing: usize) -> BoxedStrategy<Layout> {
    let group = if allow_group {
        proptest::option::of(proptest::collection::vec(plain_field(), 1..4)).boxed()
    } else {
        Just(None).boxed()
    };
    (
        proptest::collection::vec(plain_field(), 1..5),
        group,
        proptest::collection::vec(plain_field(), min_trailing..3),
    )
        .prop_map(|(plain, group, trailing)| {
            let mut fields = Vec::new();
            for (i, mut f) in plain.into_iter().enumerate() {
                f.tag = format!("F{i}");
                fields.push(f);
            }
            if let Some(members) = group {
                fields.push(Field::new("Cnt", "记录数", FieldType::N, 2));
                let mut g = Field::new("Grp", "循环域", FieldType::Group, 0);
                g.count = Some("Cnt".into());
                g.record = "Rec".into();
                for (i, mut m) in members.into_iter().enumerate() {
                    m.tag = format!("M{i}");
                    g.fields.push(m);
                }
                fields.push(g);
            }
            for (i, mut f) in trailing.into_iter().enumerate() {
                f.tag = format!("T{i}");
                f.trailing = true;
                f.required = false;
                fields.push(f);
            }
            Layout::new(fields).unwrap()
        })
        .boxed()
}

fn layout_and_body() -> BoxedStrategy<(Layout, Body)> {
    with_body(layout_strategy())
}

fn with_body(layouts: BoxedStrategy<Layout>) -> BoxedStrategy<(Layout, Body)> {
    layouts
        .prop_flat_map(|l| {
            let b = record_strategy(l.fields());
            (Just(l), b)
        })
        .boxed()
}

/// Checks both forms round-trip, and transcoding both ways.
fn round_trip(layout: &Layout, b: &Body) -> Result<(), TestCaseError> {
    let h = header();
    let mut msg = head_2969();
    fixed::encode(layout, b, &mut msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back = fixed::decode(layout, &msg, 200).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, b);
    let head = vec![("TranCode".to_string(), "2969".to_string())];
    let x = xml::encode(&h, &head, layout, b).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let doc = XmlDoc::parse(&x).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let xb = doc
        .body(layout)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&xb, b);
    let x2 =
        body::fixed_to_xml(&h, layout, &msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let f2 = body::xml_to_fixed(&h, layout, &x2).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(f2, msg);
    // Logging never panics and never shows a sensitive value's middle.
    let _ = Redacted { layout, body: b }.to_string();
    Ok(())
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn generated_bodies_round_trip((layout, b) in layout_and_body()) {
        round_trip(&layout, &b)?;
    }

    #[test]
    fn old_layout_requests_decode_and_pad((layout, b) in with_body(layout_with(false, 1))) {
        let mut msg = head_2969();
        fixed::encode(&layout, &b, &mut msg).unwrap();
        let full = msg.clone();
        let min = layout.min_len().unwrap();
        msg.truncate(200 + min);
        let decoded = fixed::decode(&layout, &msg, 200).unwrap();
        for f in layout.fields() {
            if f.trailing {
                prop_assert_eq!(decoded.text(&f.tag), Some(""));
            } else {
                prop_assert_eq!(decoded.get(&f.tag), b.get(&f.tag));
            }
        }
        let padded = fixed::pad_trailing(&layout, &msg, 200).unwrap();
        prop_assert_eq!(padded.len(), full.len());
        prop_assert_eq!(&padded[..200 + min], &full[..200 + min]);
        prop_assert!(padded[200 + min..].iter().all(|&c| c == b' '));
        prop_assert!(fixed::pad_trailing(&layout, &full, 200).is_none());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), start in 0usize..260) {
        for l in [layout_2969(), group_layout()] {
            let _ = fixed::decode(&l, &bytes, start);
            let _ = fixed::pad_trailing(&l, &bytes, start);
            if let Ok(doc) = XmlDoc::parse(&bytes) {
                let _ = doc.body(&l);
            }
        }
        let _ = body::table(&header(), None, &bytes, Masking::CLEAR);
    }

    #[test]
    fn random_xml_like_text_never_panics(s in "[<>/A-Za-z&;#0-9 ?!\\[\\]\"=.-]{0,200}") {
        if let Ok(doc) = XmlDoc::parse(s.as_bytes()) {
            let _ = doc.body(&group_layout());
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        (layout, b) in layout_and_body(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut msg = head_2969();
        fixed::encode(&layout, &b, &mut msg).unwrap();
        let mut x = xml::encode(&header(), &[], &layout, &b).unwrap();
        for m in [&mut msg, &mut x] {
            for (i, byte) in &edits {
                let i = i.index(m.len());
                m[i] = *byte;
            }
            if truncate {
                let n = cut.index(m.len() + 1);
                m.truncate(n);
            }
        }
        let _ = fixed::decode(&layout, &msg, 200);
        let _ = fixed::pad_trailing(&layout, &msg, 200);
        if let Ok(doc) = XmlDoc::parse(&x) {
            let _ = doc.body(&layout);
        }
        let _ = body::xml_to_fixed(&header(), &layout, &x);
        let _ = body::fixed_to_xml(&header(), &layout, &msg);
    }

    #[test]
    fn random_schema_text_never_panics(s in "\\PC{0,300}") {
        let _ = Schema::from_toml(&s);
    }

    #[test]
    fn mutated_schema_text_never_panics(i in any::<prop::sample::Index>(), c in any::<char>(), del in any::<bool>()) {
        let base = format!("code='2969'\nname='x'\n{LOAN_APP_NO}{CUST_NAME}{AMOUNT}[[response]]\ntag='N'\nlabel='n'\ntype='N'\nwidth=2\n[[response]]\ntag='G'\nlabel='g'\ntype='group'\ncount='N'\n[[response.fields]]\ntag='D'\nlabel='d'\ntype='date'\nwidth=8\n");
        let mut chars: Vec<char> = base.chars().collect();
        let at = i.index(chars.len());
        if del { chars.remove(at); } else { chars[at] = c; }
        let text: String = chars.into_iter().collect();
        if let Ok(s) = Schema::from_toml(&text) {
            let _ = s.request.min_len();
        }
    }
}

// ---------------------------------------------------------------- shipped schemas and fixtures

const CATALOG: [&str; 34] = [
    "9418", "9419", "9420", // A
    "5222", "5224", "5225", "9416", // B1
    "5220", "5223", "9183", "5221", "9414", "9178", "9181", "2073", "9201", "9180", "9185", "2969",
    "2075", "2078", "5226", "2077", "2079", "2080", "9415", "9417", // B2
    "1310", "2981", "2983", "2984", "2985", "2967", "2979", // C
];

const SECTION_C: [&str; 7] = ["1310", "2981", "2983", "2984", "2985", "2967", "2979"];

fn shipped_schemas() -> BTreeMap<String, Schema> {
    schema::load_dir(&root().join("schemas")).unwrap_or_else(|errs| {
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        panic!("shipped schemas do not load:\n{}", text.join("\n"))
    })
}

#[test]
fn every_shipped_schema_loads() {
    let all = shipped_schemas();
    let codes: Vec<&str> = all.keys().map(String::as_str).collect();
    let mut want = CATALOG.to_vec();
    want.sort_unstable();
    assert_eq!(codes, want);
    for (code, s) in &all {
        assert!(s.provisional, "{code} should say provisional = true");
        assert!(!s.name.is_empty(), "{code}");
        if SECTION_C.contains(&code.as_str()) {
            assert!(
                s.request.has_trailing(),
                "{code}: section C adds trailing conditions"
            );
        }
    }
}

fn decode_any(
    h: &HeaderSpec,
    layout: &Layout,
    msg: &[u8],
    xml: bool,
) -> (Vec<(String, String)>, Body) {
    if xml {
        let doc = XmlDoc::parse(msg).unwrap();
        let b = if doc.body_is_empty() {
            Record::new()
        } else {
            doc.body(layout).unwrap()
        };
        (doc.head_values().to_vec(), b)
    } else {
        let b = if msg.len() == h.length() {
            Record::new()
        } else {
            fixed::decode(layout, msg, h.length()).unwrap()
        };
        (h.values(msg).unwrap(), b)
    }
}

#[test]
fn every_shipped_fixture_builds_and_decodes_in_both_forms() {
    let schemas = shipped_schemas();
    let fixtures = fixture::load_dir(&root().join("fixtures")).unwrap();
    assert!(!fixtures.is_empty());
    let h = header();
    let mut codes = std::collections::BTreeSet::new();
    for fx in &fixtures {
        let ctx = fx.path.display().to_string();
        let s = schemas
            .get(&fx.code)
            .unwrap_or_else(|| panic!("{ctx}: no schema {}", fx.code));
        codes.insert(fx.code.clone());
        let want_req = Record::from_toml(&s.request, &fx.request_body).unwrap();
        let (want_head, want_rsp) = fx.expected_response(s).unwrap();
        for xml in [false, true] {
            let req = fx
                .request_message(&h, s, xml)
                .unwrap_or_else(|e| panic!("{ctx} (xml {xml}): {e}"));
            let (head, got) = decode_any(&h, &s.request, &req, xml);
            assert_eq!(got, want_req, "{ctx} (xml {xml})");
            assert!(fx.matches(s, &got), "{ctx}: does not match its own request");
            assert!(
                head.iter().any(|(t, v)| t == "TranCode" && v == &fx.code),
                "{ctx}"
            );
            if !xml && fx.layout.as_deref() == Some("old") {
                let padded = fixed::pad_trailing(&s.request, &req, 200)
                    .unwrap_or_else(|| panic!("{ctx}: an old request should need padding"));
                assert_eq!(padded.len(), 200 + s.request.full_len().unwrap());
                assert_eq!(fixed::decode(&s.request, &padded, 200).unwrap(), want_req);
            }
            let rsp = fx
                .response_message(&h, s, &req, xml)
                .unwrap_or_else(|e| panic!("{ctx} (xml {xml}): {e}"));
            let (rhead, got) = decode_any(&h, &s.response, &rsp, xml);
            assert_eq!(got, want_rsp, "{ctx} (xml {xml}) response");
            for (t, v) in &want_head {
                assert!(rhead.iter().any(|(a, b)| a == t && b == v), "{ctx}: {t}");
            }
            let seq = head
                .iter()
                .find(|(t, _)| t == "SeqNo")
                .map(|(_, v)| v.clone());
            let rseq = rhead
                .iter()
                .find(|(t, _)| t == "SeqNo")
                .map(|(_, v)| v.clone());
            assert_eq!(seq, rseq, "{ctx}: SeqNo is echoed");
            // Transcoding both ways keeps the message.
            if !xml && !got.fields.is_empty() {
                let x = body::fixed_to_xml(&h, &s.response, &rsp).unwrap();
                assert_eq!(
                    body::xml_to_fixed(&h, &s.response, &x).unwrap(),
                    rsp,
                    "{ctx}"
                );
            }
            let _ = body::table(&h, Some(s), &req, Masking::CLEAR).unwrap();
            let _ = body::table(&h, Some(s), &rsp, Masking::CLEAR).unwrap();
        }
        if let Some(golden) = fx.golden() {
            let bytes = std::fs::read(&golden).unwrap();
            let req = fx.request_message(&h, s, fx.format == Format::Xml).unwrap();
            assert_eq!(&bytes[8..], &req[..], "{}: golden bytes", golden.display());
            assert_eq!(bytes[..8], *format!("{:08}", req.len()).as_bytes());
        }
    }
    let every: std::collections::BTreeSet<String> = CATALOG.iter().map(|c| c.to_string()).collect();
    assert_eq!(codes, every, "every catalog code has a fixture");
}

#[test]
fn every_shipped_schema_round_trips_generated_values() {
    let schemas = shipped_schemas();
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    for (code, s) in &schemas {
        for (side, layout) in [("request", &s.request), ("response", &s.response)] {
            runner
                .run(&record_strategy(layout.fields()), |b| {
                    round_trip(layout, &b)
                })
                .unwrap_or_else(|e| panic!("{code} {side}: {e}"));
        }
    }
}

#[test]
fn vectors_and_shipped_2969_agree() {
    let s = shipped_schemas().remove("2969").unwrap();
    let msg = vector("fixed-body-gbk-text.bin");
    let b = fixed::decode(&s.request, &msg, 200).unwrap();
    assert_eq!(b.text("Amount"), Some("123456"));
    let doc = XmlDoc::parse(&vector("xml-2969.bin")).unwrap();
    assert_eq!(doc.body(&s.request).unwrap(), b);
}
