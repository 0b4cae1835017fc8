//! Message bodies, driven by a schema [`Layout`]: the values ([`Record`],
//! [`Value`]), the one error type of the body codecs ([`BodyError`]), the
//! fixed codec ([`fixed`]), the XML codec ([`xml`]), transcoding between the
//! two, and the field tables testers read.
//!
//! Canonical values, so that `decode(encode(x)) == x` in both forms:
//! - `C`: the text without its right padding;
//! - `N` and `amount`: the digits without leading zeros (`"0"` for zero,
//!   `""` for blank); amounts are always fen;
//! - `date` and `time`: the digits, or `""` for blank (an all-zero date is blank).

pub mod fixed;
mod transcode;
pub mod xml;

pub use transcode::{fixed_to_xml, xml_to_fixed};

use crate::gbk::{self, GbkError};
use crate::header::{HeaderError, HeaderSpec, Role};
use crate::mask::Masking;
use crate::schema::{Field, FieldType, Layout, Schema};
use std::fmt;

/// A field's value: text for plain fields, records for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Group(Vec<Record>),
}

impl Value {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            Value::Group(_) => None,
        }
    }

    pub fn as_group(&self) -> Option<&[Record]> {
        match self {
            Value::Group(g) => Some(g),
            Value::Text(_) => None,
        }
    }
}

/// One record of fields by tag, in layout order: a whole body, or one
/// record of a group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub fields: Vec<(String, Value)>,
}

/// A decoded message body.
pub type Body = Record;

impl Record {
    pub fn new() -> Record {
        Record::default()
    }

    pub fn get(&self, tag: &str) -> Option<&Value> {
        self.fields.iter().find(|(t, _)| t == tag).map(|(_, v)| v)
    }

    pub fn text(&self, tag: &str) -> Option<&str> {
        self.get(tag).and_then(Value::as_text)
    }

    pub fn group(&self, tag: &str) -> Option<&[Record]> {
        self.get(tag).and_then(Value::as_group)
    }

    /// Sets a field, replacing an earlier value of the same tag.
    pub fn set(&mut self, tag: &str, value: Value) {
        match self.fields.iter_mut().find(|(t, _)| t == tag) {
            Some((_, v)) => *v = value,
            None => self.fields.push((tag.to_string(), value)),
        }
    }

    /// Builds a body from TOML (fixtures, `txgate encode`): values are
    /// strings (non-negative integers are taken as their digits), a group is
    /// an array of tables. Missing fields are blank, unknown tags an error.
    /// Values are checked for type and width and put in canonical form; a
    /// blank count field is filled with the number of records.
    pub fn from_toml(layout: &Layout, table: &toml::Table) -> Result<Record, BodyError> {
        record_from_toml(layout.fields(), table, "")
    }

    /// The body as TOML, the inverse of [`Record::from_toml`].
    pub fn to_toml(&self) -> toml::Table {
        let mut t = toml::Table::new();
        for (tag, v) in &self.fields {
            let v = match v {
                Value::Text(s) => toml::Value::String(s.clone()),
                Value::Group(rs) => {
                    toml::Value::Array(rs.iter().map(|r| toml::Value::Table(r.to_toml())).collect())
                }
            };
            t.insert(tag.clone(), v);
        }
        t
    }
}

fn record_from_toml(
    fields: &[Field],
    table: &toml::Table,
    prefix: &str,
) -> Result<Record, BodyError> {
    for (tag, _) in table.iter() {
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
    let mut rec = Record {
        fields: Vec::with_capacity(fields.len()),
    };
    for f in fields {
        let p = path(prefix, &f.tag);
        let v = table.get(&f.tag);
        let value = if f.is_group() {
            let mut records = Vec::new();
            match v {
                None => {}
                Some(toml::Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let Some(t) = item.as_table() else {
                            return Err(BodyError::field(
                                f,
                                &p,
                                None,
                                Fault::format("记录表", "非表"),
                            ));
                        };
                        records.push(record_from_toml(&f.fields, t, &index(&p, i))?);
                    }
                }
                Some(_) => {
                    return Err(BodyError::field(
                        f,
                        &p,
                        None,
                        Fault::format("记录数组", "非数组"),
                    ))
                }
            }
            Value::Group(records)
        } else {
            let text = match v {
                None => String::new(),
                Some(toml::Value::String(s)) => s.clone(),
                Some(toml::Value::Integer(i)) if *i >= 0 => i.to_string(),
                Some(other) => {
                    return Err(BodyError::field(
                        f,
                        &p,
                        None,
                        Fault::format("字符串", other.type_str()),
                    ))
                }
            };
            Value::Text(canonical(f, &text).map_err(|e| BodyError::field(f, &p, None, e))?)
        };
        rec.fields.push((f.tag.clone(), value));
    }
    // Fill blank count fields from the number of records.
    for g in fields.iter().filter(|f| f.is_group()) {
        let n = rec.group(&g.tag).map_or(0, <[Record]>::len);
        if let Some(count) = &g.count {
            if rec.text(count) == Some("") {
                rec.set(count, Value::Text(n.to_string()));
            }
        }
    }
    Ok(rec)
}

/// `Records[2].TxnDate`-style paths name a field inside a group.
pub(crate) fn path(prefix: &str, tag: &str) -> String {
    if prefix.is_empty() {
        tag.to_string()
    } else {
        format!("{prefix}.{tag}")
    }
}

/// The path of record `i` (0-based) of a group, written 1-based.
pub(crate) fn index(group_path: &str, i: usize) -> String {
    format!("{group_path}[{}]", i + 1)
}

/// Whether a fault is the charset's (GW0003) or the format's (GW0001).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyErrorKind {
    Format,
    Charset,
}

/// A fault in a message body (or a header met while transcoding): which
/// field, where, what was expected and what was found. Its Display is the
/// Chinese text the gateway puts in `RspMsg`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct BodyError {
    pub kind: BodyErrorKind,
    /// The field's tag, or its path inside a group (`Records[2].TxnDate`).
    pub tag: String,
    pub label: String,
    /// Byte offset from the start of the message (fixed form), when known.
    pub offset: Option<usize>,
    pub expected: String,
    pub found: String,
}

/// Longest `found` kept in an error, in characters: `RspMsg` holds 100 bytes.
const FOUND_MAX: usize = 16;

impl BodyError {
    /// Charset faults become GW0003, the rest GW0001.
    pub fn is_charset(&self) -> bool {
        self.kind == BodyErrorKind::Charset
    }

    /// An error for a schema field; a sensitive field's value is masked.
    pub(crate) fn field(f: &Field, path: &str, offset: Option<usize>, fault: Fault) -> BodyError {
        let found = if f.sensitive && fault.kind == BodyErrorKind::Format {
            crate::mask::mask(&fault.found)
        } else {
            fault.found
        };
        Self::other(fault.kind, path, &f.label, offset, &fault.expected, &found)
    }

    /// An error not tied to a schema field (document structure, header).
    pub(crate) fn other(
        kind: BodyErrorKind,
        tag: &str,
        label: &str,
        offset: Option<usize>,
        expected: &str,
        found: &str,
    ) -> BodyError {
        BodyError {
            kind,
            tag: tag.to_string(),
            label: label.to_string(),
            offset,
            expected: expected.to_string(),
            found: shorten(found),
        }
    }

    fn render(&self) -> String {
        let mut s = format!("字段 {}", self.tag);
        if !self.label.is_empty() {
            s.push('（');
            s.push_str(&self.label);
            s.push('）');
        }
        if let Some(o) = self.offset {
            if self.label.is_empty() {
                s.push(' ');
            }
            s.push_str(&format!("偏移 {o}"));
        }
        s.push_str("：应为");
        if self
            .expected
            .starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            s.push(' ');
        }
        s.push_str(&self.expected);
        if self.found.is_empty() {
            s.push_str("，实际为空");
        } else {
            s.push_str(&format!("，实际为 \"{}\"", self.found));
        }
        s
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= FOUND_MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(FOUND_MAX).collect();
        t.push('…');
        t
    }
}

impl From<HeaderError> for BodyError {
    fn from(e: HeaderError) -> BodyError {
        match e {
            HeaderError::Short { expected, found } => BodyError::other(
                BodyErrorKind::Format,
                "HEAD",
                "报文头",
                Some(0),
                &format!("{expected} 字节"),
                &format!("{found} 字节"),
            ),
            HeaderError::NotDigits {
                tag,
                label,
                offset,
                found,
            } => BodyError::other(
                BodyErrorKind::Format,
                &tag,
                &label,
                Some(offset),
                "数字",
                found.trim_end(),
            ),
            HeaderError::Charset {
                tag,
                label,
                offset,
                source,
            } => {
                let f = Fault::charset(&source, &[]);
                BodyError::other(
                    BodyErrorKind::Charset,
                    &tag,
                    &label,
                    Some(offset),
                    &f.expected,
                    &f.found,
                )
            }
            HeaderError::TooLong {
                tag,
                label,
                value,
                width,
            } => BodyError::other(
                BodyErrorKind::Format,
                &tag,
                &label,
                None,
                &format!("不超过 {width} 字节"),
                &format!(
                    "{} 字节",
                    gbk::encode(&value).map_or(value.len(), |b| b.len())
                ),
            ),
        }
    }
}

/// What is wrong with one value, before it is tied to a field and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub kind: BodyErrorKind,
    pub expected: String,
    pub found: String,
}

impl Fault {
    pub(crate) fn format(expected: impl Into<String>, found: impl Into<String>) -> Fault {
        Fault {
            kind: BodyErrorKind::Format,
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// A charset fault; `bytes` are the field's bytes, for showing the bad pair.
    pub(crate) fn charset(e: &GbkError, bytes: &[u8]) -> Fault {
        let at = |o: usize, n: usize| -> String {
            bytes
                .iter()
                .skip(o)
                .take(n)
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (expected, found) = match e {
            GbkError::SplitCharacter { offset } => {
                ("完整的双字节字符", format!("截断的 {}", at(*offset, 1)))
            }
            GbkError::BadTrail { lead, trail, .. } => {
                ("合法 GBK 字符", format!("{lead:02X} {trail:02X}"))
            }
            GbkError::FourByte { offset } => {
                ("GBK 双字节字符", format!("GB18030 {}", at(*offset, 4)))
            }
            GbkError::BadLead { byte, .. } => ("合法 GBK 首字节", format!("{byte:02X}")),
            GbkError::Unmapped { offset } => ("可映射的 GBK 字符", at(*offset, 2)),
            GbkError::Unencodable { ch } => ("GBK 可编码字符", format!("U+{:04X}", u32::from(*ch))),
        };
        Fault {
            kind: BodyErrorKind::Charset,
            expected: expected.to_string(),
            found,
        }
    }
}

/// The canonical form of a plain field's text, checking its type and that
/// it fits the field's width in GBK bytes (required and enumeration rules are
/// [`check_rules`]'s).
pub(crate) fn canonical(f: &Field, text: &str) -> Result<String, Fault> {
    let blank = text.bytes().all(|b| b == b' ');
    match f.kind {
        FieldType::N | FieldType::Amount => {
            if blank {
                return Ok(String::new());
            }
            if !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Fault::format("数字", text));
            }
            let t = text.trim_start_matches('0');
            let t = if t.is_empty() { "0" } else { t };
            if t.len() > f.width {
                return Err(Fault::format(
                    format!("不超过 {} 位数字", f.width),
                    format!("{} 位", t.len()),
                ));
            }
            Ok(t.to_string())
        }
        FieldType::Date => {
            if blank || (text.len() == f.width && text.bytes().all(|b| b == b'0')) {
                return Ok(String::new());
            }
            if is_date(text.as_bytes()) {
                Ok(text.to_string())
            } else {
                Err(Fault::format("日期 YYYYMMDD", text))
            }
        }
        FieldType::Time => {
            if blank {
                return Ok(String::new());
            }
            if is_time(text.as_bytes()) {
                Ok(text.to_string())
            } else {
                Err(Fault::format("时间 HHMMSS", text))
            }
        }
        FieldType::C => {
            let t = text.trim_end_matches([' ', '\0']);
            let bytes = gbk::encode(t).map_err(|e| Fault::charset(&e, &[]))?;
            if bytes.len() > f.width {
                return Err(Fault::format(
                    format!("不超过 {} 字节", f.width),
                    format!("{} 字节", bytes.len()),
                ));
            }
            Ok(t.to_string())
        }
        FieldType::Group => Err(Fault::format("记录组", "文本")),
    }
}

/// The required and enumeration rules, on a canonical value.
pub(crate) fn check_rules(f: &Field, value: &str) -> Result<(), Fault> {
    if value.is_empty() {
        if f.required {
            return Err(Fault::format("非空值（必填）", ""));
        }
        return Ok(());
    }
    if !f.values.is_empty() && !f.values.iter().any(|v| v == value) {
        let mut expected = String::from("取值 ");
        for (i, v) in f.values.iter().enumerate() {
            if i == 4 {
                expected.push_str("/…");
                break;
            }
            if i > 0 {
                expected.push('/');
            }
            expected.push_str(v);
        }
        return Err(Fault::format(expected, value));
    }
    Ok(())
}

/// Canonical form plus rules: what every codec runs on a text value.
pub(crate) fn check_value(f: &Field, text: &str) -> Result<String, Fault> {
    let v = canonical(f, text)?;
    check_rules(f, &v)?;
    Ok(v)
}

pub(crate) fn is_date(s: &[u8]) -> bool {
    if s.len() != 8 || !s.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let n = |r: std::ops::Range<usize>| {
        s.get(r).map_or(0, |d| {
            d.iter().fold(0u32, |a, b| a * 10 + u32::from(b - b'0'))
        })
    };
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    y >= 1 && (1..=days).contains(&d)
}

pub(crate) fn is_time(s: &[u8]) -> bool {
    if s.len() != 6 || !s.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let n = |i: usize| {
        s.get(i..i + 2).map_or(99, |d| {
            d.iter().fold(0u32, |a, b| a * 10 + u32::from(b - b'0'))
        })
    };
    n(0) < 24 && n(2) < 60 && n(4) < 60
}

/// One line of a field table for testers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub tag: String,
    pub label: String,
    pub value: String,
    /// 0 for header and body fields, 1 for a group's records, 2 for their fields.
    pub depth: usize,
}

/// The fields of a message as rows (`txgate decode` and `send` print them):
/// the header, then the body, fixed or XML as detected. Values are masked
/// as `masking` says: sensitive body fields (group members too) and the
/// journal's masked header fields, unless it reveals.
/// With a schema, the request layout is used when `RspCode` is blank and the
/// response layout otherwise; a response with an empty body shows no body
/// rows. Without a schema nothing says what in the body is sensitive, so
/// unless it reveals, a fixed body is hidden (its length shown) and XML
/// element values are masked; revealed, the body is shown raw (fixed) or
/// element by element (XML).
pub fn table(
    header: &HeaderSpec,
    schema: Option<&Schema>,
    msg: &[u8],
    masking: Masking<'_>,
) -> Result<Vec<Row>, BodyError> {
    let mut rows = Vec::new();
    if xml::is_xml(msg) {
        let doc = xml::XmlDoc::parse(msg)?;
        for (tag, value) in doc.head_values() {
            rows.push(Row {
                tag: tag.clone(),
                label: header
                    .by_tag(tag)
                    .map(|f| f.label.clone())
                    .unwrap_or_default(),
                value: Masking::show(masking.masks_header(tag), value),
                depth: 0,
            });
        }
        let rsp_tag = header.field(Role::RspCode).map(|f| f.tag.as_str());
        let is_response = rsp_tag
            .and_then(|t| doc.head(t))
            .is_some_and(|v| !v.is_empty());
        match schema {
            Some(s) => {
                let layout = if is_response { &s.response } else { &s.request };
                if !(is_response && doc.body_is_empty()) {
                    let body = doc.body(layout)?;
                    body_rows(layout.fields(), &body, 0, masking, &mut rows);
                }
            }
            None => {
                let first = rows.len();
                doc.raw_rows(&mut rows);
                if masking.masks_field(None) {
                    for r in &mut rows[first..] {
                        r.value = crate::mask::mask(&r.value);
                    }
                }
            }
        }
        return Ok(rows);
    }
    for (tag, value) in header.values(msg)? {
        rows.push(Row {
            label: header
                .by_tag(&tag)
                .map(|f| f.label.clone())
                .unwrap_or_default(),
            value: Masking::show(masking.masks_header(&tag), &value),
            tag,
            depth: 0,
        });
    }
    let start = header.length();
    let rest = msg.get(start..).unwrap_or_default();
    let rsp = header.range(Role::RspCode);
    let is_response = msg
        .get(rsp)
        .is_some_and(|r| r.iter().any(|&b| b != b' ' && b != 0));
    match schema {
        Some(s) => {
            let layout = if is_response { &s.response } else { &s.request };
            if !(is_response && rest.is_empty()) {
                body_rows(
                    layout.fields(),
                    &fixed::decode(layout, msg, start)?,
                    0,
                    masking,
                    &mut rows,
                );
            }
        }
        None if !rest.is_empty() => rows.push(Row {
            tag: "BODY".into(),
            label: "报文体".into(),
            value: if masking.masks_field(None) {
                format!(
                    "（{} 字节；无报文定义，不知哪些字段敏感，已隐去 hidden: no schema; --reveal to show）",
                    rest.len()
                )
            } else {
                match gbk::decode(rest) {
                    Ok(t) => t.into_owned(),
                    Err(_) => rest.iter().map(|b| format!("{b:02X}")).collect(),
                }
            },
            depth: 0,
        }),
        None => {}
    }
    Ok(rows)
}

fn body_rows(
    fields: &[Field],
    rec: &Record,
    depth: usize,
    masking: Masking<'_>,
    rows: &mut Vec<Row>,
) {
    for (tag, v) in &rec.fields {
        let f = fields.iter().find(|f| &f.tag == tag);
        let label = f.map(|f| f.label.clone()).unwrap_or_default();
        match v {
            Value::Text(t) => rows.push(Row {
                tag: tag.clone(),
                label,
                value: Masking::show(masking.masks_field(f), t),
                depth,
            }),
            Value::Group(records) => {
                rows.push(Row {
                    tag: tag.clone(),
                    label,
                    value: format!("{} 条记录", records.len()),
                    depth,
                });
                let (members, record) = f.map_or((&[][..], "Record"), |f| {
                    (f.fields.as_slice(), f.record.as_str())
                });
                for (i, r) in records.iter().enumerate() {
                    rows.push(Row {
                        tag: format!("{record}[{}]", i + 1),
                        label: format!("第 {} 条", i + 1),
                        value: String::new(),
                        depth: depth + 1,
                    });
                    body_rows(members, r, depth + 2, masking, rows);
                }
            }
        }
    }
}

/// Display columns of a string: CJK and full-width characters take two.
pub fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    let u = u32::from(c);
    let wide = matches!(u,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x20000..=0x3FFFD);
    if wide {
        2
    } else {
        1
    }
}

/// Rows as aligned text columns (tag, label, value), indented by depth.
pub fn render_table(rows: &[Row]) -> String {
    let tag_of = |r: &Row| format!("{}{}", "  ".repeat(r.depth), r.tag);
    let tw = rows
        .iter()
        .map(|r| display_width(&tag_of(r)))
        .max()
        .unwrap_or(0);
    let lw = rows
        .iter()
        .map(|r| display_width(&r.label))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for r in rows {
        let tag = tag_of(r);
        out.push_str(&tag);
        out.push_str(&" ".repeat(tw - display_width(&tag) + 2));
        out.push_str(&r.label);
        out.push_str(&" ".repeat(lw - display_width(&r.label) + 2));
        out.push_str(&r.value);
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out
}

impl fmt::Display for BodyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyErrorKind::Format => "报文格式错误",
            BodyErrorKind::Charset => "编码错误",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(kind: FieldType, width: usize) -> Field {
        Field::new("X", "测试", kind, width)
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical(&f(FieldType::N, 5), "00012").unwrap(), "12");
        assert_eq!(canonical(&f(FieldType::N, 5), "000").unwrap(), "0");
        assert_eq!(canonical(&f(FieldType::N, 5), "").unwrap(), "");
        assert_eq!(canonical(&f(FieldType::Amount, 5), "   ").unwrap(), "");
        assert!(canonical(&f(FieldType::N, 5), "12A45").is_err());
        assert!(canonical(&f(FieldType::N, 2), "123").is_err());
        assert_eq!(canonical(&f(FieldType::C, 4), "中 ").unwrap(), "中");
        assert!(canonical(&f(FieldType::C, 3), "中文").is_err());
        assert_eq!(canonical(&f(FieldType::Date, 8), "00000000").unwrap(), "");
        assert_eq!(
            canonical(&f(FieldType::Date, 8), "20240229").unwrap(),
            "20240229"
        );
        assert!(canonical(&f(FieldType::Date, 8), "20230229").is_err());
        assert!(canonical(&f(FieldType::Date, 8), "19000229").is_err());
        assert!(canonical(&f(FieldType::Date, 8), "20000229").is_ok());
        assert!(canonical(&f(FieldType::Date, 8), "20241301").is_err());
        assert!(canonical(&f(FieldType::Time, 6), "235959").is_ok());
        assert!(canonical(&f(FieldType::Time, 6), "240000").is_err());
        assert_eq!(
            canonical(&f(FieldType::C, 9), "emoji 😀").unwrap_err().kind,
            BodyErrorKind::Charset
        );
    }

    #[test]
    fn error_text_is_readable_chinese() {
        let mut fld = Field::new("Amount", "申请金额", FieldType::Amount, 15);
        let e = BodyError::field(&fld, "Amount", Some(292), Fault::format("数字", "12A45"));
        assert_eq!(
            e.to_string(),
            "字段 Amount（申请金额）偏移 292：应为数字，实际为 \"12A45\""
        );
        assert!(!e.is_charset());
        fld.sensitive = true;
        let e = BodyError::field(&fld, "Amount", None, Fault::format("数字", "12A45"));
        assert_eq!(
            e.to_string(),
            "字段 Amount（申请金额）：应为数字，实际为 \"1***5\""
        );
    }

    #[test]
    fn long_found_values_are_shortened() {
        let e = BodyError::other(BodyErrorKind::Format, "A", "", None, "x", &"9".repeat(80));
        assert!(e.to_string().len() < 60, "{e}");
    }

    #[test]
    fn toml_round_trip_and_unknown_tags() {
        let s = Schema::from_toml(
            "code='1'\nname='n'\n[[request]]\ntag='N'\nlabel='n'\ntype='N'\nwidth=2\n[[request]]\ntag='G'\nlabel='g'\ntype='group'\ncount='N'\n[[request.fields]]\ntag='A'\nlabel='a'\ntype='amount'\nwidth=5\n",
        )
        .unwrap();
        let t: toml::Table = toml::from_str("G = [{ A = '0100' }, { A = 7 }]").unwrap();
        let r = Record::from_toml(&s.request, &t).unwrap();
        assert_eq!(r.text("N"), Some("2"));
        let g = r.group("G").unwrap();
        assert_eq!(g[0].text("A"), Some("100"));
        assert_eq!(g[1].text("A"), Some("7"));
        assert_eq!(Record::from_toml(&s.request, &r.to_toml()).unwrap(), r);
        let bad: toml::Table = toml::from_str("Z = '1'").unwrap();
        let e = Record::from_toml(&s.request, &bad).unwrap_err();
        assert!(e.to_string().contains('Z'), "{e}");
    }

    /// A request with a sensitive top-level field, a group with a sensitive
    /// member, and plain fields; the header's TellerNo is set.
    fn masking_case(xml_form: bool) -> (HeaderSpec, Schema, Vec<u8>) {
        let s = Schema::from_toml(
            "code='1234'\nname='t'\n[[request]]\ntag='No'\nlabel='n'\ntype='C'\nwidth=8\n\
             [[request]]\ntag='IdNo'\nlabel='证件号'\ntype='C'\nwidth=18\nsensitive=true\n\
             [[request]]\ntag='Num'\nlabel='n'\ntype='N'\nwidth=2\n\
             [[request]]\ntag='G'\nlabel='g'\ntype='group'\ncount='Num'\n\
             [[request.fields]]\ntag='Acct'\nlabel='账号'\ntype='C'\nwidth=19\nsensitive=true\n\
             [[request.fields]]\ntag='Amt'\nlabel='金额'\ntype='amount'\nwidth=5\n",
        )
        .unwrap();
        let t: toml::Table = toml::from_str(
            "No='A1234'\nIdNo='110101199001011234'\nG=[{Acct='6222020200001234567', Amt='5'}]",
        )
        .unwrap();
        let body = Record::from_toml(&s.request, &t).unwrap();
        let h = HeaderSpec::builtin();
        let head = [
            ("TranCode", "1234"),
            ("TellerNo", "T0001"),
            ("BrchNo", "0101"),
        ];
        let msg = if xml_form {
            let head: Vec<(String, String)> = head
                .iter()
                .map(|(t, v)| (t.to_string(), v.to_string()))
                .collect();
            xml::encode(&h, &head, &s.request, &body).unwrap()
        } else {
            let mut msg = h.encode(head).unwrap();
            fixed::encode(&s.request, &body, &mut msg).unwrap();
            msg
        };
        (h, s, msg)
    }

    fn value_of<'a>(rows: &'a [Row], tag: &str) -> &'a str {
        rows.iter()
            .find(|r| r.tag == tag)
            .map(|r| r.value.as_str())
            .unwrap_or_else(|| panic!("no {tag} row in {rows:?}"))
    }

    #[test]
    fn table_masks_sensitive_fields_groups_too_unless_revealed() {
        let mask_header = vec!["TellerNo".to_string(), "Mac".to_string()];
        let masked = Masking {
            header: &mask_header,
            reveal: false,
        };
        let revealed = Masking {
            reveal: true,
            ..masked
        };
        for xml_form in [false, true] {
            let (h, s, msg) = masking_case(xml_form);
            let rows = table(&h, Some(&s), &msg, masked).unwrap();
            assert_eq!(value_of(&rows, "IdNo"), "1****************4", "{rows:?}");
            assert_eq!(value_of(&rows, "Acct"), "6*****************7", "{rows:?}");
            assert_eq!(value_of(&rows, "TellerNo"), "T***1", "{rows:?}");
            // Not sensitive: in clear.
            assert_eq!(value_of(&rows, "No"), "A1234", "{rows:?}");
            assert_eq!(value_of(&rows, "Amt"), "5", "{rows:?}");
            assert_eq!(value_of(&rows, "BrchNo"), "0101", "{rows:?}");
            let text = render_table(&rows);
            for clear in ["110101199001011234", "6222020200001234567", "T0001"] {
                assert!(!text.contains(clear), "{clear} in clear:\n{text}");
            }

            let rows = table(&h, Some(&s), &msg, revealed).unwrap();
            assert_eq!(value_of(&rows, "IdNo"), "110101199001011234");
            assert_eq!(value_of(&rows, "Acct"), "6222020200001234567");
            assert_eq!(value_of(&rows, "TellerNo"), "T0001");
            assert_eq!(value_of(&rows, "No"), "A1234");
        }
    }

    #[test]
    fn table_without_a_schema_hides_the_body_unless_revealed() {
        let hidden = Masking {
            header: &[],
            reveal: false,
        };
        let shown = |xml: bool, tag: &str, masking: Masking<'_>| {
            let (h, _, msg) = masking_case(xml);
            value_of(&table(&h, None, &msg, masking).unwrap(), tag).to_string()
        };
        let body = shown(false, "BODY", hidden);
        assert!(!body.contains("110101199001011234"), "{body}");
        assert!(body.contains("--reveal"), "{body}");
        assert!(shown(false, "BODY", Masking::CLEAR).contains("110101199001011234"));
        // XML: every element value masked, as nothing says which are safe.
        assert_eq!(
            shown(true, "IdNo", hidden),
            crate::mask::mask("110101199001011234")
        );
        assert_eq!(shown(true, "IdNo", Masking::CLEAR), "110101199001011234");
    }

    #[test]
    fn render_table_aligns_wide_characters() {
        let rows = vec![
            Row {
                tag: "A".into(),
                label: "中文".into(),
                value: "1".into(),
                depth: 0,
            },
            Row {
                tag: "Long".into(),
                label: "ab".into(),
                value: "2".into(),
                depth: 1,
            },
        ];
        let out = render_table(&rows);
        let cols: Vec<usize> = out
            .lines()
            .map(|l| {
                let i = l.rfind(' ').unwrap();
                display_width(&l[..i])
            })
            .collect();
        assert_eq!(cols[0], cols[1], "{out}");
    }
}
