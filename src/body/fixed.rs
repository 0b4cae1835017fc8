//! The fixed-field body codec (nom), driven by a [`Layout`].
//!
//! Decoding goes field by field, each field decoded as strict GBK on its own
//! slice, so a double-byte character split across two fields is caught
//! (the `split-character-at-field-end` vector). Every offset in an error is
//! from the start of the message (header included).

use super::{canonical, Body};
use super::{
    check_rules, check_value, index, path, BodyError, BodyErrorKind, Fault, Record, Value,
};
use crate::gbk;
use crate::schema::{Field, FieldType, Layout};
use nom::bytes::complete::take;
use nom::IResult;

/// Errors are boxed inside nom: the parsers pass them up many levels.
type Res<'a, T> = IResult<&'a [u8], T, Box<BodyError>>;

impl nom::error::ParseError<&[u8]> for Box<BodyError> {
    fn from_error_kind(input: &[u8], _kind: nom::error::ErrorKind) -> Self {
        Box::new(BodyError::other(
            BodyErrorKind::Format,
            "BODY",
            "报文体",
            None,
            "完整的报文体",
            &format!("剩余 {} 字节", input.len()),
        ))
    }
    fn append(_: &[u8], _: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// Decodes the body `msg[body_start..]`; `msg` is the whole message (header
/// plus body, without the length prefix).
pub fn decode(layout: &Layout, msg: &[u8], body_start: usize) -> Result<Body, BodyError> {
    let Some(input) = msg.get(body_start..) else {
        return Err(BodyError::other(
            BodyErrorKind::Format,
            "BODY",
            "报文体",
            Some(msg.len()),
            &format!("至少 {body_start} 字节的报文"),
            &format!("{} 字节", msg.len()),
        ));
    };
    let d = Decoder { len: msg.len() };
    let (rest, rec) = d
        .record(layout.fields(), "", true, input)
        .map_err(|e| match e {
            nom::Err::Error(e) | nom::Err::Failure(e) => *e,
            nom::Err::Incomplete(_) => BodyError::other(
                BodyErrorKind::Format,
                "BODY",
                "报文体",
                None,
                "完整的报文体",
                "不完整",
            ),
        })?;
    if !rest.is_empty() {
        let (tag, label) = layout.fields().last().map_or(("BODY", "报文体"), |f| {
            (f.tag.as_str(), f.label.as_str())
        });
        return Err(BodyError::other(
            BodyErrorKind::Format,
            tag,
            label,
            Some(msg.len() - rest.len()),
            "报文体在此字段后结束",
            &format!("多出 {} 字节", rest.len()),
        ));
    }
    Ok(rec)
}

/// Checks the body as `decode` does, without building it: the gateway's
/// hot path only needs a verdict. The fast walk allocates nothing for ASCII
/// fields; anything it is unsure of (groups, enumerations, a fault) goes
/// through `decode`, which gives the exact error.
pub fn validate(layout: &Layout, msg: &[u8], body_start: usize) -> Result<(), BodyError> {
    if msg
        .get(body_start..)
        .is_some_and(|input| quick_ok(layout, input))
    {
        return Ok(());
    }
    decode(layout, msg, body_start).map(|_| ())
}

/// True only when `decode` would succeed; false means "ask decode".
fn quick_ok(layout: &Layout, mut input: &[u8]) -> bool {
    let blank = |raw: &[u8]| raw.iter().all(|&b| b == b' ');
    for f in layout.fields() {
        if f.trailing && input.is_empty() {
            continue;
        }
        if f.is_group() || input.len() < f.width {
            return false;
        }
        let (raw, rest) = input.split_at(f.width);
        input = rest;
        // Only a required field or an enumeration needs its value; the
        // others need only the verdict on their bytes.
        let wants_value = f.required || !f.values.is_empty();
        // The canonical value as a byte slice, where it can be had for free.
        let value: &[u8] = match f.kind {
            FieldType::C => {
                if !gbk::is_valid(raw) {
                    return false;
                }
                if !wants_value {
                    continue;
                }
                let end = raw
                    .iter()
                    .rposition(|&b| b != b' ' && b != 0)
                    .map_or(0, |p| p + 1);
                &raw[..end]
            }
            // Digits, or all blank: the first byte tells which to test.
            FieldType::N | FieldType::Amount => match raw.first() {
                None => b"",
                Some(b' ') if blank(raw) => b"",
                Some(b' ') => return false,
                Some(_) => {
                    if !raw.iter().all(u8::is_ascii_digit) {
                        return false;
                    }
                    if !wants_value {
                        continue;
                    }
                    let start = raw.iter().position(|&b| b != b'0').unwrap_or(raw.len() - 1);
                    &raw[start..]
                }
            },
            FieldType::Date => {
                if blank(raw) || raw.iter().all(|&b| b == b'0') {
                    b""
                } else if super::is_date(raw) {
                    raw
                } else {
                    return false;
                }
            }
            FieldType::Time => {
                if blank(raw) {
                    b""
                } else if super::is_time(raw) {
                    raw
                } else {
                    return false;
                }
            }
            FieldType::Group => return false,
        };
        if value.is_empty() {
            if f.required {
                return false;
            }
            continue;
        }
        if !f.values.is_empty() {
            // ASCII is the same in GBK and UTF-8: compare the bytes as they are.
            if value.is_ascii() {
                if !f.values.iter().any(|v| v.as_bytes() == value) {
                    return false;
                }
                continue;
            }
            // Other enumerations are compared as text, decoded on the stack.
            let mut buf = [0u8; 192];
            let Some(text) = gbk::decode_into(value, &mut buf) else {
                return false;
            };
            if !f.values.iter().any(|v| v == text) {
                return false;
            }
        }
    }
    input.is_empty()
}

/// Tracks the message length, to turn a remaining input into an offset.
struct Decoder {
    len: usize,
}

impl Decoder {
    fn offset(&self, input: &[u8]) -> usize {
        self.len.saturating_sub(input.len())
    }

    /// Parses one record of `fields`; `top` is the body level.
    fn record<'a>(
        &self,
        fields: &[Field],
        prefix: &str,
        top: bool,
        mut input: &'a [u8],
    ) -> Res<'a, Record> {
        let mut rec = Record {
            fields: Vec::with_capacity(fields.len()),
        };
        for f in fields {
            if top && f.trailing && input.is_empty() {
                rec.fields.push((f.tag.clone(), Value::Text(String::new())));
                continue;
            }
            if f.is_group() {
                let n = self.count(f, &rec, fields, input, prefix)?;
                // A blank count means no records, and reads as "0", as encode
                // writes it and XML derives it: the forms must agree.
                if let Some((_, Value::Text(t))) = rec
                    .fields
                    .iter_mut()
                    .find(|(tag, _)| Some(tag.as_str()) == f.count.as_deref())
                {
                    if t.is_empty() {
                        *t = "0".to_string();
                    }
                }
                let p = path(prefix, &f.tag);
                let mut i = 0;
                let (rest, records) = nom::multi::count(
                    |inp: &'a [u8]| {
                        let rp = index(&p, i);
                        i += 1;
                        self.record(&f.fields, &rp, false, inp)
                    },
                    n,
                )(input)?;
                input = rest;
                rec.fields.push((f.tag.clone(), Value::Group(records)));
            } else {
                let (rest, v) = self.plain(f, prefix, input)?;
                input = rest;
                rec.fields.push((f.tag.clone(), Value::Text(v)));
            }
        }
        Ok((input, rec))
    }

    /// How many records a group has: the value of its (earlier) count field.
    fn count(
        &self,
        g: &Field,
        rec: &Record,
        fields: &[Field],
        input: &[u8],
        prefix: &str,
    ) -> Result<usize, nom::Err<Box<BodyError>>> {
        let tag = g.count.as_deref().unwrap_or("");
        let text = rec.text(tag).unwrap_or("");
        if text.is_empty() {
            return Ok(0);
        }
        text.parse::<usize>().map_err(|_| {
            let cf = fields.iter().find(|f| f.tag == tag).unwrap_or(g);
            nom::Err::Failure(Box::new(BodyError::field(
                cf,
                &path(prefix, tag),
                Some(self.offset(input)),
                Fault::format("合理的记录数", text),
            )))
        })
    }

    /// One plain field: strict GBK on its own bytes, then type and rules.
    /// The field's path is only built for an error.
    fn plain<'a>(&self, f: &Field, prefix: &str, input: &'a [u8]) -> Res<'a, String> {
        let off = self.offset(input);
        let fail = |fault: Fault, at: usize| {
            let p = path(prefix, &f.tag);
            nom::Err::Failure(Box::new(BodyError::field(f, &p, Some(at), fault)))
        };
        let (rest, raw) = take::<_, _, ()>(f.width)(input).map_err(|_| {
            fail(
                Fault::format(
                    format!("{} 字节", f.width),
                    format!("仅剩 {} 字节", input.len()),
                ),
                off,
            )
        })?;
        let text = gbk::decode(raw)
            .map_err(|e| fail(Fault::charset(&e, raw), off + e.offset().unwrap_or(0)))?;
        let value = match f.kind {
            FieldType::C => text.trim_end_matches([' ', '\0']).to_string(),
            _ => canonical(f, &text).map_err(|e| fail(e, off))?,
        };
        check_rules(f, &value).map_err(|e| fail(e, off))?;
        Ok((rest, value))
    }
}

/// Encodes a body after whatever `out` holds (usually the header). Pads by
/// bytes, checks types as decode does, and never truncates: a value too long
/// for its field is an error naming it. A group's count field is written
/// from the number of records; a non-blank count that disagrees is an error.
pub fn encode(layout: &Layout, body: &Body, out: &mut Vec<u8>) -> Result<(), BodyError> {
    encode_record(layout.fields(), body, "", out)
}

/// The group at this level whose count is `f`, if any.
pub(crate) fn counted_group<'a>(fields: &'a [Field], f: &Field) -> Option<&'a Field> {
    fields
        .iter()
        .find(|g| g.is_group() && g.count.as_deref() == Some(f.tag.as_str()))
}

/// Checks that a record holds only fields of the layout.
pub(crate) fn check_known(fields: &[Field], rec: &Record, prefix: &str) -> Result<(), BodyError> {
    for (tag, _) in &rec.fields {
        if !fields.iter().any(|f| &f.tag == tag) {
            return Err(BodyError::other(
                BodyErrorKind::Format,
                &path(prefix, tag),
                "",
                None,
                "布局中的字段",
                "未知字段",
            ));
        }
    }
    Ok(())
}

/// The records of a group field in a record (none if absent).
pub(crate) fn records_of<'r>(
    f: &Field,
    rec: &'r Record,
    p: &str,
) -> Result<&'r [Record], BodyError> {
    match rec.get(&f.tag) {
        None => Ok(&[]),
        Some(Value::Group(g)) => Ok(g),
        Some(Value::Text(t)) => Err(BodyError::field(
            f,
            p,
            None,
            Fault::format("记录组", t.as_str()),
        )),
    }
}

/// The text of a plain field, with a count field reconciled with its group:
/// blank is filled with the number of records, anything else must equal it.
pub(crate) fn text_of(
    fields: &[Field],
    f: &Field,
    rec: &Record,
    p: &str,
    offset: Option<usize>,
) -> Result<String, BodyError> {
    let text = match rec.get(&f.tag) {
        None => "",
        Some(Value::Text(t)) => t.as_str(),
        Some(Value::Group(_)) => {
            return Err(BodyError::field(
                f,
                p,
                offset,
                Fault::format("文本值", "记录组"),
            ))
        }
    };
    let Some(g) = counted_group(fields, f) else {
        return Ok(text.to_string());
    };
    let n = rec.group(&g.tag).map_or(0, <[Record]>::len).to_string();
    let given = canonical(f, text).map_err(|e| BodyError::field(f, p, offset, e))?;
    if !given.is_empty() && given != n {
        return Err(BodyError::field(
            f,
            p,
            offset,
            Fault::format(format!("{n}（{} 的记录数）", g.tag), given),
        ));
    }
    Ok(n)
}

fn encode_record(
    fields: &[Field],
    rec: &Record,
    prefix: &str,
    out: &mut Vec<u8>,
) -> Result<(), BodyError> {
    check_known(fields, rec, prefix)?;
    for f in fields {
        let p = path(prefix, &f.tag);
        if f.is_group() {
            for (i, r) in records_of(f, rec, &p)?.iter().enumerate() {
                encode_record(&f.fields, r, &index(&p, i), out)?;
            }
            continue;
        }
        let start = out.len();
        let text = text_of(fields, f, rec, &p, Some(start))?;
        put(f, &text, out).map_err(|e| BodyError::field(f, &p, Some(start), e))?;
    }
    Ok(())
}

/// Writes one plain value, padded to its width.
fn put(f: &Field, text: &str, out: &mut Vec<u8>) -> Result<(), Fault> {
    if f.kind == FieldType::C {
        let t = text.trim_end_matches([' ', '\0']);
        let bytes = gbk::encode(t).map_err(|e| Fault::charset(&e, &[]))?;
        if bytes.len() > f.width {
            return Err(Fault::format(
                format!("不超过 {} 字节", f.width),
                format!("{} 字节", bytes.len()),
            ));
        }
        check_rules(f, t)?;
        out.extend_from_slice(&bytes);
        out.resize(out.len() + f.width - bytes.len(), b' ');
        return Ok(());
    }
    let v = check_value(f, text)?;
    if v.is_empty() {
        out.resize(out.len() + f.width, b' ');
    } else {
        // Digits only here, so bytes and chars agree; the width was checked.
        out.resize(out.len() + f.width.saturating_sub(v.len()), b'0');
        out.extend_from_slice(v.as_bytes());
    }
    Ok(())
}

/// For section C's old-layout requests: when the body ends before the
/// trailing fields (on a field boundary), the message with the absent
/// trailing fields appended as blanks. `None` when nothing needs adding, the
/// layout has no trailing fields or has a group, or the body's length is no
/// trailing boundary (decode reports that).
pub fn pad_trailing(layout: &Layout, msg: &[u8], body_start: usize) -> Option<Vec<u8>> {
    if !layout.has_trailing() {
        return None;
    }
    let min = layout.min_len()?;
    let full = layout.full_len()?;
    let body_len = msg.len().checked_sub(body_start)?;
    if body_len < min || body_len >= full {
        return None;
    }
    let mut boundary = min;
    for f in layout.fields().iter().filter(|f| f.trailing) {
        if boundary == body_len {
            break;
        }
        boundary += f.width;
    }
    if boundary != body_len {
        return None;
    }
    let mut out = Vec::with_capacity(body_start + full);
    out.extend_from_slice(msg);
    out.resize(body_start + full, b' ');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    fn layout(fields: &str) -> Layout {
        Schema::from_toml(&format!("code='1'\nname='t'\n{fields}"))
            .unwrap()
            .request
    }

    fn l2969() -> Layout {
        layout(
            "[[request]]\ntag='LoanAppNo'\nlabel='放款申请编号'\ntype='C'\nwidth=32\nrequired=true\n\
             [[request]]\ntag='CustName'\nlabel='客户名称'\ntype='C'\nwidth=60\nsensitive=true\n\
             [[request]]\ntag='Amount'\nlabel='申请金额'\ntype='amount'\nwidth=15\n",
        )
    }

    fn group_layout() -> Layout {
        layout(
            "[[request]]\ntag='RecNum'\nlabel='记录数'\ntype='N'\nwidth=2\n\
             [[request]]\ntag='Records'\nlabel='交易记录'\ntype='group'\ncount='RecNum'\n\
             [[request.fields]]\ntag='TxnDate'\nlabel='交易日期'\ntype='date'\nwidth=8\n\
             [[request.fields]]\ntag='Amt'\nlabel='金额'\ntype='amount'\nwidth=6\n\
             [[request]]\ntag='Memo'\nlabel='备注'\ntype='C'\nwidth=4\n",
        )
    }

    fn body(pairs: &[(&str, &str)]) -> Record {
        Record {
            fields: pairs
                .iter()
                .map(|(t, v)| (t.to_string(), Value::Text(v.to_string())))
                .collect(),
        }
    }

    fn with_header(b: &[u8]) -> Vec<u8> {
        let mut m = vec![b' '; 200];
        m.extend_from_slice(b);
        m
    }

    #[test]
    fn round_trip_2969() {
        let l = l2969();
        let b = body(&[
            ("LoanAppNo", "LA2026120400001"),
            ("CustName", "中石油昆仑燃气（青岛）有限公司"),
            ("Amount", "123456"),
        ]);
        let mut out = vec![b' '; 200];
        encode(&l, &b, &mut out).unwrap();
        assert_eq!(out.len(), 307);
        assert_eq!(&out[292..], b"000000000123456");
        assert_eq!(decode(&l, &out, 200).unwrap(), b);
    }

    #[test]
    fn bad_digits_name_the_field_and_offset() {
        let l = l2969();
        let mut m = with_header(&[b' '; 107]);
        m[200] = b'A';
        m[292..307].copy_from_slice(b"0000000012A45  ");
        let e = decode(&l, &m, 200).unwrap_err();
        assert_eq!(e.tag, "Amount");
        assert_eq!(e.offset, Some(292));
        assert!(!e.is_charset());
        assert!(e.to_string().contains("Amount"), "{e}");
    }

    #[test]
    fn required_blank_is_an_error() {
        let l = l2969();
        let m = with_header(&[b' '; 107]);
        let e = decode(&l, &m, 200).unwrap_err();
        assert_eq!(e.tag, "LoanAppNo");
        assert!(e.to_string().contains("LoanAppNo"), "{e}");
    }

    #[test]
    fn groups_decode_by_count() {
        let l = group_layout();
        let m = with_header(b"0220261204000100202402290000054321");
        let b = decode(&l, &m, 200).unwrap();
        let g = b.group("Records").unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].text("Amt"), Some("100"));
        assert_eq!(g[1].text("TxnDate"), Some("20240229"));
        assert_eq!(g[1].text("Amt"), Some("5"));
        assert_eq!(b.text("Memo"), Some("4321"));
        let mut out = vec![b' '; 200];
        encode(&l, &b, &mut out).unwrap();
        assert_eq!(out, m);
    }

    /// Guards the agreement found by fuzzing: a blank count reads as "0".
    #[test]
    fn blank_group_count_reads_as_zero_and_round_trips() {
        let l = group_layout();
        let m = with_header(b"  memo");
        let b = decode(&l, &m, 200).unwrap();
        assert_eq!(b.text("RecNum"), Some("0"));
        assert!(b.group("Records").unwrap().is_empty());
        let mut out = vec![b' '; 200];
        encode(&l, &b, &mut out).unwrap();
        assert_eq!(decode(&l, &out, 200).unwrap(), b);
    }

    #[test]
    fn bad_date_in_a_group_is_named() {
        let l = group_layout();
        let m = with_header(b"0120230229000100    ");
        let e = decode(&l, &m, 200).unwrap_err();
        assert_eq!(e.tag, "Records[1].TxnDate");
        assert_eq!(e.offset, Some(202));
    }

    #[test]
    fn group_count_disagreeing_with_bytes() {
        let l = group_layout();
        // Count 3, but only two records and the memo follow.
        let e = decode(&l, &with_header(b"0320261204000100202601010000054321"), 200).unwrap_err();
        assert!(e.tag.starts_with("Records[3]"), "{e}");
        // Count 1: the second record is left over.
        let e = decode(&l, &with_header(b"0120261204000100202601010000054321"), 200).unwrap_err();
        assert_eq!(e.tag, "Memo", "{e}");
        // Encoding with a count that disagrees with the records.
        let mut b = decode(&l, &with_header(b"0120261204000100    "), 200).unwrap();
        b.set("RecNum", Value::Text("5".into()));
        let e = encode(&l, &b, &mut Vec::new()).unwrap_err();
        assert_eq!(e.tag, "RecNum");
    }

    #[test]
    fn over_width_is_never_truncated() {
        let l = l2969();
        let b = body(&[("LoanAppNo", &"X".repeat(33))]);
        let e = encode(&l, &b, &mut Vec::new()).unwrap_err();
        assert_eq!(e.tag, "LoanAppNo");
        let b = body(&[("LoanAppNo", "A"), ("Amount", &"9".repeat(16))]);
        assert_eq!(encode(&l, &b, &mut Vec::new()).unwrap_err().tag, "Amount");
    }

    #[test]
    fn unmappable_char_on_encode_is_charset() {
        let l = l2969();
        let b = body(&[("LoanAppNo", "A"), ("CustName", "王😀")]);
        let e = encode(&l, &b, &mut Vec::new()).unwrap_err();
        assert!(e.is_charset());
        assert_eq!(e.tag, "CustName");
    }

    #[test]
    fn trailing_fields_may_be_absent() {
        let l = layout(
            "[[request]]\ntag='A'\nlabel='a'\ntype='C'\nwidth=2\n\
             [[request]]\ntag='B'\nlabel='b'\ntype='date'\nwidth=8\ntrailing=true\n\
             [[request]]\ntag='C'\nlabel='c'\ntype='N'\nwidth=3\ntrailing=true\n",
        );
        let full = with_header(b"ab20261204007");
        assert_eq!(decode(&l, &full, 200).unwrap().text("C"), Some("7"));
        let old = with_header(b"ab");
        let b = decode(&l, &old, 200).unwrap();
        assert_eq!(b.text("B"), Some(""));
        assert_eq!(b.text("C"), Some(""));
        let mid = with_header(b"ab20261204");
        assert_eq!(decode(&l, &mid, 200).unwrap().text("B"), Some("20261204"));
        let e = decode(&l, &with_header(b"ab2026"), 200).unwrap_err();
        assert_eq!(e.tag, "B");
        assert_eq!(
            pad_trailing(&l, &old, 200).unwrap(),
            with_header(b"ab           ")
        );
        assert_eq!(
            pad_trailing(&l, &mid, 200).unwrap(),
            with_header(b"ab20261204   ")
        );
        assert_eq!(pad_trailing(&l, &full, 200), None);
        assert_eq!(pad_trailing(&l, &with_header(b"ab2026"), 200), None);
        assert_eq!(pad_trailing(&l2969(), &old, 200), None);
    }

    #[test]
    fn short_message_is_an_error_not_a_panic() {
        let l = l2969();
        assert!(decode(&l, b"abc", 200).is_err());
        assert!(decode(&l, &with_header(b"LA"), 200).is_err());
    }

    #[test]
    fn enumeration_is_checked() {
        let l = layout(
            "[[request]]\ntag='P'\nlabel='产品'\ntype='C'\nwidth=6\nvalues=['油易贷','批油贷']\n",
        );
        let mut ok = Vec::new();
        encode(&l, &body(&[("P", "批油贷")]), &mut ok).unwrap();
        let mut m = vec![b' '; 200];
        m.extend_from_slice(&gbk::encode("油油油").unwrap());
        let e = decode(&l, &m, 200).unwrap_err();
        assert_eq!(e.tag, "P");
        assert!(encode(&l, &body(&[("P", "其他")]), &mut Vec::new()).is_err());
    }

    #[test]
    fn validate_agrees_with_decode_on_mutated_messages() {
        use proptest::prelude::*;
        let layout = l2969();
        let good = with_header(&{
            let mut out = Vec::new();
            encode(
                &layout,
                &body(&[
                    ("LoanAppNo", "LA1"),
                    ("CustName", "中石油"),
                    ("Amount", "12"),
                ]),
                &mut out,
            )
            .unwrap();
            out
        });
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(
                &(
                    proptest::collection::vec((0usize..400, any::<u8>()), 0..4),
                    0usize..420,
                ),
                |(flips, cut)| {
                    let mut m = good.clone();
                    for (at, b) in flips {
                        if at < m.len() {
                            m[at] = b;
                        }
                    }
                    m.truncate(cut.max(200));
                    let v = validate(&layout, &m, 200).is_ok();
                    let d = decode(&layout, &m, 200).is_ok();
                    prop_assert_eq!(v, d);
                    Ok(())
                },
            )
            .unwrap();
        assert!(validate(&layout, &good, 200).is_ok());
    }
}
#[cfg(test)]
mod fast_path {
    /// Guards the hot path: the performance-test interface must validate
    /// without falling back to the allocating decoder.
    #[test]
    fn shipped_2969_request_and_answer_take_the_fast_path() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let s = crate::schema::Schema::load(&root.join("schemas/2969.toml")).unwrap();
        let h = crate::header::HeaderSpec::builtin();
        let f = crate::fixture::Fixture::load(&root.join("fixtures/2969/disbursed.toml")).unwrap();
        let req = f.request_message(&h, &s, false).unwrap();
        let resp = f.response_message(&h, &s, &req, false).unwrap();
        assert!(super::quick_ok(&s.request, &req[200..]), "request");
        assert!(super::quick_ok(&s.response, &resp[200..]), "response");
    }

    /// Guards the fast walk's shortcuts: over every shipped fixture, request
    /// and answer, with bytes changed to the ones field checks turn on, it
    /// never passes a body that `decode` refuses.
    #[test]
    fn fast_walk_never_passes_what_decode_refuses_in_any_shipped_schema() {
        use proptest::prelude::*;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let h = crate::header::HeaderSpec::builtin();
        let schemas = crate::schema::load_dir(&root.join("schemas")).unwrap();
        let mut messages = Vec::new();
        for f in crate::fixture::load_dir(&root.join("fixtures")).unwrap() {
            let s = &schemas[&f.code];
            let req = f.request_message(&h, s, false).unwrap();
            let resp = f.response_message(&h, s, &req, false).unwrap();
            messages.push((s.request.clone(), req.to_vec()));
            messages.push((s.response.clone(), resp.to_vec()));
        }
        assert!(messages.len() >= 68, "every fixture's request and answer");
        let byte = prop_oneof![
            Just(b' '),
            Just(b'0'),
            Just(b'9'),
            Just(b'A'),
            Just(0u8),
            Just(0x30u8),
            Just(0x81u8),
            Just(0xFFu8),
            any::<u8>(),
        ];
        let mut runner =
            proptest::test_runner::TestRunner::new(proptest::test_runner::Config::with_cases(2000));
        runner
            .run(
                &(
                    0..messages.len(),
                    proptest::collection::vec((0usize..1000, byte), 1..4),
                ),
                |(which, flips)| {
                    let (layout, good) = &messages[which];
                    let mut m = good.clone();
                    for (at, b) in flips {
                        let at = 200 + at % (m.len() - 200).max(1);
                        if at < m.len() {
                            m[at] = b;
                        }
                    }
                    if super::quick_ok(layout, &m[200..]) {
                        prop_assert!(
                            super::decode(layout, &m, 200).is_ok(),
                            "the fast walk passed a body decode refuses"
                        );
                    }
                    Ok(())
                },
            )
            .unwrap();
    }
}
