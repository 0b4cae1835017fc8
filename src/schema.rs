//! Transaction schemas: `schemas/<code>.toml`, as `schemas/README.md` gives them.
//!
//! The TOML is first read into raw serde structs (`deny_unknown_fields`), then
//! validated into a [`Layout`]: a checked list of fields the codecs in
//! [`crate::body`] can trust (widths non-zero, tags unique per level, counts
//! resolved, trailing fields last, enumeration values of the right type and
//! width).

use crate::body::{canonical, Fault};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// The type of a body field; it decides padding, checks and canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum FieldType {
    /// Digits, left-padded with `0`.
    N,
    /// GBK text, right-padded with spaces.
    C,
    /// Fen (分) as digits, left-padded with `0`; XML writes yuan.
    #[serde(rename = "amount")]
    Amount,
    /// `YYYYMMDD`, a real calendar date.
    #[serde(rename = "date")]
    Date,
    /// `HHMMSS`, a real time of day.
    #[serde(rename = "time")]
    Time,
    /// A repeating group (循环域): `count` records of `fields`.
    #[serde(rename = "group")]
    Group,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::N => "N",
            FieldType::C => "C",
            FieldType::Amount => "amount",
            FieldType::Date => "date",
            FieldType::Time => "time",
            FieldType::Group => "group",
        })
    }
}

/// One checked field of a layout (a group's members are in `fields`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub tag: String,
    pub label: String,
    pub kind: FieldType,
    /// Bytes of GBK in the fixed layout; 0 for a group.
    pub width: usize,
    pub required: bool,
    pub sensitive: bool,
    /// Allowed values, in canonical form (an `N` value `"01"` is kept as `"1"`).
    pub values: Vec<String>,
    pub trailing: bool,
    /// For a group: the tag of its count field, earlier at the same level.
    pub count: Option<String>,
    /// For a group: the XML element name of one record; empty otherwise.
    pub record: String,
    /// For a group: the fields of one record.
    pub fields: Vec<Field>,
}

impl Field {
    /// A plain field with the defaults of the schema format; handy for tests.
    pub fn new(tag: &str, label: &str, kind: FieldType, width: usize) -> Field {
        Field {
            tag: tag.to_string(),
            label: label.to_string(),
            kind,
            width,
            required: false,
            sensitive: false,
            values: Vec::new(),
            trailing: false,
            count: None,
            record: if kind == FieldType::Group {
                "Record".to_string()
            } else {
                String::new()
            },
            fields: Vec::new(),
        }
    }

    pub fn is_group(&self) -> bool {
        self.kind == FieldType::Group
    }
}

/// A compiled, checked list of fields: the only form the codecs accept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    fields: Vec<Field>,
    min_len: Option<usize>,
    full_len: Option<usize>,
    has_trailing: bool,
}

impl Layout {
    /// Checks `fields` (recursively) and compiles them into a layout.
    pub fn new(fields: Vec<Field>) -> Result<Layout, SchemaError> {
        Self::checked(fields, "")
    }

    fn checked(mut fields: Vec<Field>, file: &str) -> Result<Layout, SchemaError> {
        check_level(&mut fields, "", true, file)?;
        let has_group = fields.iter().any(Field::is_group);
        let sum = |trailing: bool| {
            fields
                .iter()
                .filter(|f| trailing || !f.trailing)
                .map(|f| f.width)
                .sum::<usize>()
        };
        let (min_len, full_len) = if has_group {
            (None, None)
        } else {
            (Some(sum(false)), Some(sum(true)))
        };
        Ok(Layout {
            has_trailing: fields.iter().any(|f| f.trailing),
            fields,
            min_len,
            full_len,
        })
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Fixed byte length without the trailing fields; `None` with a group.
    pub fn min_len(&self) -> Option<usize> {
        self.min_len
    }

    /// Fixed byte length with the trailing fields; `None` with a group.
    pub fn full_len(&self) -> Option<usize> {
        self.full_len
    }

    pub fn has_trailing(&self) -> bool {
        self.has_trailing
    }

    /// Whether a field of this tag, at any level, is marked sensitive.
    pub fn is_sensitive(&self, tag: &str) -> bool {
        fn any(fields: &[Field], tag: &str) -> bool {
            fields
                .iter()
                .any(|f| (f.tag == tag && f.sensitive) || any(&f.fields, tag))
        }
        any(&self.fields, tag)
    }

    /// The top-level field of this tag.
    pub fn field(&self, tag: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.tag == tag)
    }
}

/// One transaction's checked schema: its request and response layouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub code: String,
    pub name: String,
    pub provisional: bool,
    pub request: Layout,
    pub response: Layout,
}

/// A problem in a schema file: which file, which field (a path such as
/// `Records.TxnDate`), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct SchemaError {
    /// The file, or empty for text given inline.
    pub file: String,
    /// The field's tag path, if the problem is in one field.
    pub tag: Option<String>,
    pub what: String,
}

impl SchemaError {
    fn new(file: &str, tag: Option<String>, what: impl Into<String>) -> Self {
        SchemaError {
            file: file.to_string(),
            tag,
            what: what.into(),
        }
    }

    fn render(&self) -> String {
        let mut s = String::new();
        if !self.file.is_empty() {
            s.push_str(&self.file);
            s.push_str(": ");
        }
        if let Some(tag) = &self.tag {
            s.push_str("field ");
            s.push_str(tag);
            s.push_str(": ");
        }
        s.push_str(&self.what);
        s
    }
}

/// A schema file as written, before any check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    code: String,
    name: String,
    #[serde(default)]
    provisional: bool,
    #[serde(default)]
    request: Vec<RawField>,
    #[serde(default)]
    response: Vec<RawField>,
}

/// One `[[request]]`/`[[response]]` entry as written, before any check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    tag: String,
    label: String,
    #[serde(rename = "type")]
    kind: FieldType,
    #[serde(default)]
    width: Option<usize>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    sensitive: bool,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    trailing: bool,
    #[serde(default)]
    count: Option<String>,
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    fields: Vec<RawField>,
}

impl RawField {
    fn into_field(self, file: &str, prefix: &str) -> Result<Field, SchemaError> {
        let path = join(prefix, &self.tag);
        let is_group = self.kind == FieldType::Group;
        if is_group && self.width.is_some() {
            return Err(SchemaError::new(
                file,
                Some(path),
                "a group has no width (its records give its length)",
            ));
        }
        if !is_group && self.record.is_some() {
            return Err(SchemaError::new(
                file,
                Some(path),
                "record is only for groups",
            ));
        }
        let fields = self
            .fields
            .into_iter()
            .map(|f| f.into_field(file, &path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Field {
            tag: self.tag,
            label: self.label,
            kind: self.kind,
            width: self.width.unwrap_or(0),
            required: self.required,
            sensitive: self.sensitive,
            values: self.values,
            trailing: self.trailing,
            count: self.count,
            record: match self.record {
                Some(r) => r,
                None if is_group => "Record".to_string(),
                None => String::new(),
            },
            fields,
        })
    }
}

fn join(prefix: &str, tag: &str) -> String {
    if prefix.is_empty() {
        tag.to_string()
    } else {
        format!("{prefix}.{tag}")
    }
}

/// An XML element name we are willing to write: ASCII, no colon.
fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks one level of fields; `top` is the body level, where trailing fields may be.
fn check_level(
    fields: &mut [Field],
    prefix: &str,
    top: bool,
    file: &str,
) -> Result<(), SchemaError> {
    let mut seen = BTreeSet::new();
    let mut counts_used = BTreeSet::new();
    let mut trailing_seen = false;
    for i in 0..fields.len() {
        let (earlier, rest) = fields.split_at_mut(i);
        let Some(f) = rest.first_mut() else { break };
        let path = join(prefix, &f.tag);
        let bad = |what: String| SchemaError::new(file, Some(path.clone()), what);
        if !is_xml_name(&f.tag) {
            return Err(bad(format!(
                "tag {:?} is not a plain XML element name (ASCII letters, digits, _ - .)",
                f.tag
            )));
        }
        if !seen.insert(f.tag.clone()) {
            return Err(bad("duplicate tag at this level".into()));
        }
        if f.trailing {
            if !top {
                return Err(bad(
                    "trailing fields are only allowed at the body level".into()
                ));
            }
            if f.is_group() {
                return Err(bad("a group cannot be trailing".into()));
            }
            if f.required {
                return Err(bad(
                    "a trailing field cannot be required (a request may end before it)".into(),
                ));
            }
            trailing_seen = true;
        } else if trailing_seen {
            return Err(bad(
                "a non-trailing field after a trailing one: trailing fields must all come last"
                    .into(),
            ));
        }
        if f.is_group() {
            if f.width != 0 {
                return Err(bad("a group has no width".into()));
            }
            let Some(count) = f.count.clone() else {
                return Err(bad(
                    "a group needs count = \"<tag of an earlier N field>\"".into()
                ));
            };
            match earlier.iter().find(|e| e.tag == count) {
                Some(c) if c.kind == FieldType::N => {}
                Some(c) => return Err(bad(format!("count field {count} is {}, not N", c.kind))),
                None => {
                    return Err(bad(format!(
                        "count {count:?} names no earlier N field at this level"
                    )))
                }
            }
            if !counts_used.insert(count.clone()) {
                return Err(bad(format!(
                    "count field {count} already counts another group"
                )));
            }
            if !is_xml_name(&f.record) {
                return Err(bad(format!(
                    "record {:?} is not a plain XML element name",
                    f.record
                )));
            }
            if f.fields.is_empty() {
                return Err(bad("a group needs at least one field".into()));
            }
            if !f.values.is_empty() {
                return Err(bad("a group cannot have values".into()));
            }
            check_level(&mut f.fields, &path, false, file)?;
        } else {
            if f.width == 0 {
                return Err(bad("width missing or zero".into()));
            }
            if f.count.is_some() {
                return Err(bad("count is only for groups".into()));
            }
            if !f.record.is_empty() {
                return Err(bad("record is only for groups".into()));
            }
            if !f.fields.is_empty() {
                return Err(bad("fields are only for groups".into()));
            }
            match f.kind {
                FieldType::Date if f.width != 8 => {
                    return Err(bad(format!(
                        "a date is 8 bytes (YYYYMMDD), not {}",
                        f.width
                    )))
                }
                FieldType::Time if f.width != 6 => {
                    return Err(bad(format!("a time is 6 bytes (HHMMSS), not {}", f.width)))
                }
                _ => {}
            }
            let mut values = Vec::with_capacity(f.values.len());
            for v in &f.values {
                let probe = Field {
                    values: Vec::new(),
                    required: false,
                    ..f.clone()
                };
                match canonical(&probe, v) {
                    Ok(c) if c.is_empty() => {
                        return Err(bad(format!("enumeration value {v:?} is blank")))
                    }
                    Ok(c) => {
                        if values.contains(&c) {
                            return Err(bad(format!("enumeration value {v:?} given twice")));
                        }
                        values.push(c);
                    }
                    Err(Fault {
                        expected, found, ..
                    }) => {
                        return Err(bad(format!(
                            "enumeration value {found:?} does not fit: expected {expected}"
                        )))
                    }
                }
            }
            f.values = values;
        }
    }
    // A count field must be read before its group, so it must not be trailing,
    // and the group must not be a trailing field either (checked above).
    for f in fields.iter().filter(|f| f.is_group()) {
        if let Some(c) = fields
            .iter()
            .find(|c| Some(&c.tag) == f.count.as_ref() && c.trailing)
        {
            return Err(SchemaError::new(
                file,
                Some(join(prefix, &c.tag)),
                "a count field cannot be trailing",
            ));
        }
    }
    Ok(())
}

impl Schema {
    /// Reads and checks one schema file.
    pub fn load(path: &Path) -> Result<Schema, SchemaError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| SchemaError::new(&file, None, format!("cannot read: {e}")))?;
        Self::parse(&text, &file)
    }

    /// Checks schema text given inline (errors name no file).
    pub fn from_toml(text: &str) -> Result<Schema, SchemaError> {
        Self::parse(text, "")
    }

    fn parse(text: &str, file: &str) -> Result<Schema, SchemaError> {
        let raw: RawSchema = toml::from_str(text)
            .map_err(|e| SchemaError::new(file, None, e.to_string().trim_end().to_string()))?;
        if raw.code.is_empty() || !raw.code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SchemaError::new(
                file,
                None,
                format!("code {:?} is not digits", raw.code),
            ));
        }
        let build = |fields: Vec<RawField>, side: &str| -> Result<Layout, SchemaError> {
            let fields = fields
                .into_iter()
                .map(|f| f.into_field(file, ""))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| side_err(e, side))?;
            Layout::checked(fields, file).map_err(|e| side_err(e, side))
        };
        Ok(Schema {
            request: build(raw.request, "request")?,
            response: build(raw.response, "response")?,
            code: raw.code,
            name: raw.name,
            provisional: raw.provisional,
        })
    }
}

fn side_err(mut e: SchemaError, side: &str) -> SchemaError {
    e.what = format!("{} ({side})", e.what);
    e
}

/// Loads every `<4 digits>.toml` in `dir` (others, such as `header.toml` and
/// the README, are skipped). The file name must equal the schema's `code`.
/// All problems are collected.
pub fn load_dir(dir: &Path) -> Result<BTreeMap<String, Schema>, Vec<SchemaError>> {
    let dir_name = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![SchemaError::new(
            &dir_name,
            None,
            format!("cannot read: {e}"),
        )]
    })?;
    let mut paths = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => paths.push(e.path()),
            Err(e) => errors.push(SchemaError::new(
                &dir_name,
                None,
                format!("cannot read: {e}"),
            )),
        }
    }
    paths.sort();
    let mut out = BTreeMap::new();
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".toml") else {
            continue;
        };
        if stem.len() != 4 || !stem.bytes().all(|b| b.is_ascii_digit()) || !path.is_file() {
            continue;
        }
        match Schema::load(&path) {
            Ok(s) if s.code != stem => errors.push(SchemaError::new(
                &path.display().to_string(),
                None,
                format!("code {:?} differs from the file name {stem}", s.code),
            )),
            Ok(s) => {
                out.insert(s.code.clone(), s);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S2969: &str = r#"
code = "2969"
name = "放贷结果查询"
provisional = true

[[request]]
tag = "LoanAppNo"
label = "放款申请编号"
type = "C"
width = 32
required = true

[[request]]
tag = "CustName"
label = "客户名称"
type = "C"
width = 60
sensitive = true

[[request]]
tag = "Amount"
label = "申请金额"
type = "amount"
width = 15

[[response]]
tag = "RecNum"
label = "记录数"
type = "N"
width = 4

[[response]]
tag = "Records"
label = "交易记录"
type = "group"
count = "RecNum"

  [[response.fields]]
  tag = "TxnDate"
  label = "交易日期"
  type = "date"
  width = 8
"#;

    fn with_request(fields: &str) -> Result<Schema, SchemaError> {
        Schema::from_toml(&format!("code = \"1234\"\nname = \"t\"\n{fields}"))
    }

    #[test]
    fn the_readme_example_loads() {
        let s = Schema::from_toml(S2969).unwrap();
        assert_eq!(s.code, "2969");
        assert!(s.provisional);
        assert_eq!(s.request.min_len(), Some(107));
        assert_eq!(s.request.full_len(), Some(107));
        assert!(!s.request.has_trailing());
        assert!(s.request.is_sensitive("CustName"));
        assert!(!s.request.is_sensitive("LoanAppNo"));
        assert_eq!(s.response.min_len(), None);
        let g = &s.response.fields()[1];
        assert_eq!(g.record, "Record");
        assert_eq!(g.fields[0].kind, FieldType::Date);
    }

    #[test]
    fn zero_width_is_refused() {
        let e = with_request("[[request]]\ntag='A'\nlabel='a'\ntype='C'\nwidth=0\n").unwrap_err();
        assert_eq!(e.tag.as_deref(), Some("A"));
        assert!(e.to_string().contains("width"), "{e}");
    }

    #[test]
    fn duplicate_tags_are_refused() {
        let e = with_request(
            "[[request]]\ntag='A'\nlabel='a'\ntype='C'\nwidth=1\n[[request]]\ntag='A'\nlabel='b'\ntype='N'\nwidth=1\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
    }

    #[test]
    fn count_must_name_an_earlier_n_field() {
        let later = "[[request]]\ntag='G'\nlabel='g'\ntype='group'\ncount='Num'\n[[request.fields]]\ntag='X'\nlabel='x'\ntype='C'\nwidth=2\n[[request]]\ntag='Num'\nlabel='n'\ntype='N'\nwidth=2\n";
        let e = with_request(later).unwrap_err();
        assert_eq!(e.tag.as_deref(), Some("G"), "{e}");
        let no_count = "[[request]]\ntag='G'\nlabel='g'\ntype='group'\n[[request.fields]]\ntag='X'\nlabel='x'\ntype='C'\nwidth=2\n";
        let e = with_request(no_count).unwrap_err();
        assert!(e.to_string().contains("count"), "{e}");
        let c_count = "[[request]]\ntag='Num'\nlabel='n'\ntype='C'\nwidth=2\n[[request]]\ntag='G'\nlabel='g'\ntype='group'\ncount='Num'\n[[request.fields]]\ntag='X'\nlabel='x'\ntype='C'\nwidth=2\n";
        assert!(with_request(c_count).is_err());
    }

    #[test]
    fn trailing_fields_must_come_last() {
        let e = with_request(
            "[[request]]\ntag='A'\nlabel='a'\ntype='C'\nwidth=1\ntrailing=true\n[[request]]\ntag='B'\nlabel='b'\ntype='C'\nwidth=1\n",
        )
        .unwrap_err();
        assert_eq!(e.tag.as_deref(), Some("B"));
        let ok = with_request(
            "[[request]]\ntag='A'\nlabel='a'\ntype='C'\nwidth=1\n[[request]]\ntag='B'\nlabel='b'\ntype='date'\nwidth=8\ntrailing=true\n",
        )
        .unwrap();
        assert_eq!(ok.request.min_len(), Some(1));
        assert_eq!(ok.request.full_len(), Some(9));
        assert!(ok.request.has_trailing());
    }

    #[test]
    fn enumeration_values_must_fit() {
        let e =
            with_request("[[request]]\ntag='P'\nlabel='p'\ntype='C'\nwidth=4\nvalues=['油易贷']\n")
                .unwrap_err();
        assert_eq!(e.tag.as_deref(), Some("P"), "{e}");
        let ok = with_request(
            "[[request]]\ntag='P'\nlabel='p'\ntype='C'\nwidth=6\nvalues=['油易贷', '批油贷']\n",
        )
        .unwrap();
        assert_eq!(ok.request.fields()[0].values.len(), 2);
        let n = with_request("[[request]]\ntag='S'\nlabel='s'\ntype='N'\nwidth=2\nvalues=['01']\n")
            .unwrap();
        assert_eq!(n.request.fields()[0].values, vec!["1".to_string()]);
        assert!(
            with_request("[[request]]\ntag='S'\nlabel='s'\ntype='N'\nwidth=2\nvalues=['A']\n")
                .is_err()
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = with_request("[[request]]\ntag='A'\nlabel='a'\ntype='C'\nwidth=1\nwidht=2\n")
            .unwrap_err();
        assert!(e.to_string().contains("widht"), "{e}");
        assert!(Schema::from_toml("code='1'\nname='x'\nextra=1\n").is_err());
    }

    #[test]
    fn date_width_is_eight() {
        assert!(with_request("[[request]]\ntag='D'\nlabel='d'\ntype='date'\nwidth=6\n").is_err());
    }

    #[test]
    fn load_dir_checks_names_and_collects_errors() {
        let dir = std::env::temp_dir().join(format!("txgate-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("2969.toml"), S2969).unwrap();
        std::fs::write(dir.join("1111.toml"), S2969).unwrap();
        std::fs::write(dir.join("2222.toml"), "code = 1").unwrap();
        std::fs::write(dir.join("header.toml"), "length = 200").unwrap();
        std::fs::write(dir.join("README.md"), "hi").unwrap();
        let errs = load_dir(&dir).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].file.ends_with("1111.toml"));
        std::fs::remove_file(dir.join("1111.toml")).unwrap();
        std::fs::remove_file(dir.join("2222.toml")).unwrap();
        let ok = load_dir(&dir).unwrap();
        assert_eq!(ok.keys().collect::<Vec<_>>(), vec!["2969"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
