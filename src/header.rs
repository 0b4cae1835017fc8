//! The fixed header (报文头), laid out by `schemas/header.toml`.
//!
//! The gateway finds the fields it needs by role, so another bank's header
//! layout is a file change. Parsing checks every field as strict GBK and
//! `N` fields as digits, then keeps only the frame's `Bytes`: values are
//! slices, decoded to text only where a caller needs text.

use crate::gbk;
use bytes::Bytes;
use serde::Deserialize;
use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;

/// The role a header field plays for the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Code,
    Channel,
    Dest,
    Seq,
    Date,
    Time,
    RspCode,
    RspMsg,
    Mac,
}

impl Role {
    const ALL: [Role; 9] = [
        Role::Code,
        Role::Channel,
        Role::Dest,
        Role::Seq,
        Role::Date,
        Role::Time,
        Role::RspCode,
        Role::RspMsg,
        Role::Mac,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

/// `N` is digits padded left with `0`; `C` is GBK text padded right with spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HeaderType {
    N,
    C,
}

/// One field of the header, as `header.toml` gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct HeaderField {
    pub tag: String,
    pub label: String,
    pub offset: usize,
    pub width: usize,
    #[serde(rename = "type")]
    pub kind: HeaderType,
    #[serde(default)]
    pub role: Option<Role>,
}

impl HeaderField {
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.width
    }
}

#[derive(Deserialize)]
struct RawHeaderSpec {
    length: usize,
    field: Vec<HeaderField>,
}

/// Problems in `header.toml` itself.
#[derive(Debug, thiserror::Error)]
pub enum HeaderSpecError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("header field {tag}: {why}")]
    Field { tag: String, why: String },
    #[error("header has no field with role {0:?}")]
    MissingRole(Role),
}

/// A fault in one message's header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("报文头长度不足：应为 {expected} 字节，实际 {found} 字节")]
    Short { expected: usize, found: usize },
    #[error("报文头字段 {tag}（{label}）偏移 {offset}：应为数字，实际为 \"{found}\"")]
    NotDigits {
        tag: String,
        label: String,
        offset: usize,
        found: String,
    },
    #[error("报文头字段 {tag}（{label}）偏移 {offset}：{source}")]
    Charset {
        tag: String,
        label: String,
        offset: usize,
        source: gbk::GbkError,
    },
    #[error("报文头字段 {tag}（{label}）：值 \"{value}\" 超过 {width} 字节")]
    TooLong {
        tag: String,
        label: String,
        value: String,
        width: usize,
    },
}

impl HeaderError {
    /// Charset faults are GW0003; the rest are GW0001.
    pub fn is_charset(&self) -> bool {
        matches!(self, HeaderError::Charset { .. })
    }
}

/// The checked header layout.
#[derive(Debug, Clone)]
pub struct HeaderSpec {
    length: usize,
    fields: Vec<HeaderField>,
    by_role: [Option<usize>; 9],
}

impl HeaderSpec {
    pub fn load(path: &Path) -> Result<Self, HeaderSpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| HeaderSpecError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            HeaderSpecError::Toml { source, .. } => HeaderSpecError::Toml {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, HeaderSpecError> {
        let raw: RawHeaderSpec = toml::from_str(text).map_err(|source| HeaderSpecError::Toml {
            path: "header.toml".into(),
            source,
        })?;
        let mut by_role = [None; 9];
        let mut covered = vec![false; raw.length];
        for (i, f) in raw.field.iter().enumerate() {
            let bad = |why: String| HeaderSpecError::Field {
                tag: f.tag.clone(),
                why,
            };
            if f.width == 0 {
                return Err(bad("zero width".into()));
            }
            if f.offset + f.width > raw.length {
                return Err(bad(format!(
                    "ends at {} past the header length {}",
                    f.offset + f.width,
                    raw.length
                )));
            }
            for c in &mut covered[f.range()] {
                if *c {
                    return Err(bad("overlaps another field".into()));
                }
                *c = true;
            }
            if let Some(role) = f.role {
                if by_role[role.index()].replace(i).is_some() {
                    return Err(bad(format!("role {role:?} given twice")));
                }
            }
        }
        for role in [
            Role::Code,
            Role::Channel,
            Role::Seq,
            Role::RspCode,
            Role::RspMsg,
        ] {
            if by_role[role.index()].is_none() {
                return Err(HeaderSpecError::MissingRole(role));
            }
        }
        Ok(HeaderSpec {
            length: raw.length,
            fields: raw.field,
            by_role,
        })
    }

    /// The shipped layout of protocol.md §3, for tools run without a schema folder.
    pub fn builtin() -> Self {
        Self::from_toml(include_str!("../schemas/header.toml"))
            .unwrap_or_else(|e| unreachable!("shipped header.toml is checked by tests: {e}"))
    }

    pub fn length(&self) -> usize {
        self.length
    }

    pub fn fields(&self) -> &[HeaderField] {
        &self.fields
    }

    pub fn field(&self, role: Role) -> Option<&HeaderField> {
        self.by_role[role.index()].map(|i| &self.fields[i])
    }

    pub fn by_tag(&self, tag: &str) -> Option<&HeaderField> {
        self.fields.iter().find(|f| f.tag == tag)
    }

    /// The byte range of a role's field; empty when the layout has no such role.
    pub fn range(&self, role: Role) -> Range<usize> {
        self.field(role).map(HeaderField::range).unwrap_or(0..0)
    }

    pub fn roles(&self) -> impl Iterator<Item = (Role, &HeaderField)> {
        Role::ALL
            .into_iter()
            .filter_map(|r| self.field(r).map(|f| (r, f)))
    }

    /// Checks the header at the start of `msg` field by field.
    pub fn check(&self, msg: &[u8]) -> Result<(), HeaderError> {
        let (_, ()) = parse_fields(self, msg).map_err(|e| match e {
            nom::Err::Error(e) | nom::Err::Failure(e) => e,
            nom::Err::Incomplete(_) => HeaderError::Short {
                expected: self.length,
                found: msg.len(),
            },
        })?;
        Ok(())
    }

    /// Checks the header and wraps the message for access by role.
    pub fn parse(&self, msg: Bytes) -> Result<Header, HeaderError> {
        self.check(&msg)?;
        Ok(Header { msg })
    }

    /// Decodes every header field to text, trimmed, in layout order.
    pub fn values(&self, msg: &[u8]) -> Result<Vec<(String, String)>, HeaderError> {
        self.check(msg)?;
        self.fields
            .iter()
            .map(|f| {
                let v = field_text(&msg[f.range()]).map_err(|source| HeaderError::Charset {
                    tag: f.tag.clone(),
                    label: f.label.clone(),
                    offset: f.offset,
                    source,
                })?;
                Ok((f.tag.clone(), v.into_owned()))
            })
            .collect()
    }

    /// Builds a header from values by tag; missing tags are blank.
    pub fn encode<'a, I>(&self, values: I) -> Result<Vec<u8>, HeaderError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        let mut out = vec![b' '; self.length];
        for f in &self.fields {
            let value = values
                .clone()
                .into_iter()
                .find(|(t, _)| *t == f.tag)
                .map(|(_, v)| v)
                .unwrap_or("");
            self.put(&mut out, f, value)?;
        }
        Ok(out)
    }

    /// Writes one field's value, padded, into a header buffer.
    pub fn put(&self, header: &mut [u8], f: &HeaderField, value: &str) -> Result<(), HeaderError> {
        let bytes = gbk::encode(value).map_err(|source| HeaderError::Charset {
            tag: f.tag.clone(),
            label: f.label.clone(),
            offset: f.offset,
            source,
        })?;
        if bytes.len() > f.width {
            return Err(HeaderError::TooLong {
                tag: f.tag.clone(),
                label: f.label.clone(),
                value: value.to_string(),
                width: f.width,
            });
        }
        let slot = &mut header[f.range()];
        match f.kind {
            HeaderType::N if !bytes.is_empty() => {
                let pad = f.width - bytes.len();
                slot[..pad].fill(b'0');
                slot[pad..].copy_from_slice(&bytes);
            }
            _ => {
                slot.fill(b' ');
                slot[..bytes.len()].copy_from_slice(&bytes);
            }
        }
        Ok(())
    }

    /// Writes text into a field, cut on a character boundary to fit its width.
    /// Used for RspMsg, where a long message must not make the answer invalid.
    pub fn put_truncated(&self, header: &mut [u8], role: Role, text: &str) {
        let Some(f) = self.field(role) else { return };
        let mut out = Vec::with_capacity(f.width);
        for ch in text.chars() {
            let mut buf = [0u8; 4];
            let Ok(b) = gbk::encode(ch.encode_utf8(&mut buf)) else {
                continue;
            };
            if out.len() + b.len() > f.width {
                break;
            }
            out.extend_from_slice(&b);
        }
        let slot = &mut header[f.range()];
        slot.fill(b' ');
        slot[..out.len()].copy_from_slice(&out);
    }
}

/// A field's text with its padding removed (trailing spaces; for `N`, kept as is).
pub fn field_text(raw: &[u8]) -> Result<Cow<'_, str>, gbk::GbkError> {
    gbk::decode(trim(raw))
}

/// Strips the right padding of a `C` field (spaces, and NULs some senders use).
pub fn trim(raw: &[u8]) -> &[u8] {
    let end = raw
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |p| p + 1);
    &raw[..end]
}

fn parse_fields<'a>(spec: &HeaderSpec, msg: &'a [u8]) -> nom::IResult<&'a [u8], (), HeaderError> {
    use nom::bytes::streaming::take;
    let (rest, head) = take(spec.length)(msg)?;
    for f in &spec.fields {
        let (_, raw) = nom::sequence::preceded(take(f.offset), take(f.width))(head)?;
        match f.kind {
            HeaderType::N => {
                let t = trim(raw);
                if !t.iter().all(u8::is_ascii_digit) {
                    return Err(nom::Err::Failure(HeaderError::NotDigits {
                        tag: f.tag.clone(),
                        label: f.label.clone(),
                        offset: f.offset,
                        found: String::from_utf8_lossy(raw).into_owned(),
                    }));
                }
            }
            HeaderType::C => {
                if let Err(source) = gbk::check(raw) {
                    return Err(nom::Err::Failure(HeaderError::Charset {
                        tag: f.tag.clone(),
                        label: f.label.clone(),
                        offset: f.offset + source.offset().unwrap_or(0),
                        source,
                    }));
                }
            }
        }
    }
    Ok((rest, ()))
}

impl nom::error::ParseError<&[u8]> for HeaderError {
    fn from_error_kind(input: &[u8], _kind: nom::error::ErrorKind) -> Self {
        HeaderError::Short {
            expected: 0,
            found: input.len(),
        }
    }
    fn append(_: &[u8], _: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// A message whose header was checked. Values are slices of the frame.
#[derive(Debug, Clone)]
pub struct Header {
    msg: Bytes,
}

impl Header {
    pub fn message(&self) -> &Bytes {
        &self.msg
    }

    /// The raw bytes of a role's field, padding removed.
    pub fn raw<'a>(&'a self, spec: &HeaderSpec, role: Role) -> &'a [u8] {
        trim(&self.msg[spec.range(role)])
    }

    /// The raw bytes of a role's field, padding kept.
    pub fn padded<'a>(&'a self, spec: &HeaderSpec, role: Role) -> &'a [u8] {
        &self.msg[spec.range(role)]
    }

    /// A role's value as text (already checked as GBK, so this cannot fail
    /// on a parsed header; a fault shows as an empty string).
    pub fn text(&self, spec: &HeaderSpec, role: Role) -> Cow<'_, str> {
        field_text(self.raw(spec, role)).unwrap_or(Cow::Borrowed(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_header_loads_with_all_roles() {
        let spec = HeaderSpec::builtin();
        assert_eq!(spec.length(), 200);
        assert_eq!(spec.range(Role::Seq), 16..36);
        assert_eq!(spec.range(Role::Mac), 176..192);
    }

    #[test]
    fn encode_then_parse_by_role() {
        let spec = HeaderSpec::builtin();
        let h = spec
            .encode([("TranCode", "2969"), ("ChnlNo", "CUS"), ("SeqNo", "S1")])
            .unwrap();
        let h = spec.parse(Bytes::from(h)).unwrap();
        assert_eq!(h.raw(&spec, Role::Code), b"2969");
        assert_eq!(h.raw(&spec, Role::Channel), b"CUS");
        assert_eq!(h.text(&spec, Role::Seq), "S1");
    }

    #[test]
    fn non_digit_code_is_named() {
        let spec = HeaderSpec::builtin();
        let mut h = spec.encode([("TranCode", "2969")]).unwrap();
        h[1] = b'X';
        let e = spec.check(&h).unwrap_err();
        assert!(e.to_string().contains("TranCode"), "{e}");
    }

    #[test]
    fn overlapping_fields_are_refused() {
        let t = "length = 10\n[[field]]\ntag='A'\nlabel='a'\noffset=0\nwidth=6\ntype='N'\nrole='code'\n[[field]]\ntag='B'\nlabel='b'\noffset=4\nwidth=4\ntype='C'\n";
        assert!(matches!(
            HeaderSpec::from_toml(t),
            Err(HeaderSpecError::Field { .. })
        ));
    }

    #[test]
    fn short_header_is_an_error() {
        let spec = HeaderSpec::builtin();
        assert!(matches!(
            spec.check(b"2969CUS"),
            Err(HeaderError::Short { .. })
        ));
    }
}
