//! Masking of sensitive values (ID numbers, account numbers, names, phones).
//!
//! [`Redacted`] is the one place logs and journals get body fields from, so
//! a field marked `sensitive` in its schema never reaches them in clear;
//! [`Masking`] is what the testers' tools (`decode`, `send`, `replay`) print
//! by, with the same rule.

use crate::body::{Body, Record, Value};
use crate::schema::{Field, Layout};
use std::fmt;

/// Keeps the first and last characters and stars the rest, one `*` per
/// character; values of one or two characters become all stars.
pub fn mask(value: &str) -> String {
    let n = value.chars().count();
    if n <= 2 {
        return "*".repeat(n);
    }
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        if i == 0 || i == n - 1 {
            out.push(c);
        } else {
            out.push('*');
        }
    }
    out
}

/// Whether a body field is masked: sensitive in its schema, or not in the
/// layout at all (nothing says it is safe).
pub fn is_sensitive(field: Option<&Field>) -> bool {
    field.is_none_or(|f| f.sensitive)
}

/// What the testers' tools mask when they print: body fields per
/// [`is_sensitive`], and the header fields the journal masks (its
/// `mask_header`), all with [`mask`]; nothing with `--reveal`.
#[derive(Debug, Clone, Copy)]
pub struct Masking<'a> {
    /// Header tags printed masked: the config's `[journal] mask_header`.
    pub header: &'a [String],
    /// Print every value in clear (`--reveal`, on a test box only).
    pub reveal: bool,
}

impl Masking<'_> {
    /// Nothing masked.
    pub const CLEAR: Masking<'static> = Masking {
        header: &[],
        reveal: true,
    };

    /// Whether a header field's value is printed masked.
    pub fn masks_header(&self, tag: &str) -> bool {
        !self.reveal && self.header.iter().any(|t| t == tag)
    }

    /// Whether a body field's value is printed masked.
    pub fn masks_field(&self, field: Option<&Field>) -> bool {
        !self.reveal && is_sensitive(field)
    }

    /// A value as printed: masked or as is.
    pub fn show(masked: bool, value: &str) -> String {
        if masked {
            mask(value)
        } else {
            value.to_string()
        }
    }
}

/// A body shown as `Tag=value Tag2=value`, sensitive fields masked, groups
/// as `Tag=[{A=1 B=2},{A=3 B=4}]`. A field the layout does not know is
/// masked too.
#[derive(Debug, Clone, Copy)]
pub struct Redacted<'a> {
    pub layout: &'a Layout,
    pub body: &'a Body,
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_record(f, self.layout.fields(), self.body)
    }
}

fn write_record(out: &mut fmt::Formatter<'_>, fields: &[Field], rec: &Record) -> fmt::Result {
    for (i, (tag, v)) in rec.fields.iter().enumerate() {
        if i > 0 {
            out.write_str(" ")?;
        }
        let field = fields.iter().find(|f| &f.tag == tag);
        write!(out, "{tag}=")?;
        match v {
            Value::Text(t) if is_sensitive(field) => out.write_str(&mask(t))?,
            Value::Text(t) => out.write_str(t)?,
            Value::Group(records) => {
                let members = field.map_or(&[][..], |f| f.fields.as_slice());
                out.write_str("[")?;
                for (j, r) in records.iter().enumerate() {
                    if j > 0 {
                        out.write_str(",")?;
                    }
                    out.write_str("{")?;
                    write_record(out, members, r)?;
                    out.write_str("}")?;
                }
                out.write_str("]")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    #[test]
    fn masks_by_characters() {
        assert_eq!(mask(""), "");
        assert_eq!(mask("王"), "*");
        assert_eq!(mask("王五"), "**");
        assert_eq!(mask("张三丰"), "张*丰");
        assert_eq!(mask("110101199001011234"), "1****************4");
        assert_eq!(mask("中石油昆仑燃气"), "中*****气");
    }

    #[test]
    fn redacted_masks_sensitive_fields_only() {
        let s = Schema::from_toml(
            "code='1'\nname='t'\n[[request]]\ntag='No'\nlabel='n'\ntype='C'\nwidth=4\n\
             [[request]]\ntag='Name'\nlabel='名'\ntype='C'\nwidth=20\nsensitive=true\n\
             [[request]]\ntag='Num'\nlabel='n'\ntype='N'\nwidth=2\n\
             [[request]]\ntag='G'\nlabel='g'\ntype='group'\ncount='Num'\n\
             [[request.fields]]\ntag='Acct'\nlabel='账号'\ntype='C'\nwidth=10\nsensitive=true\n\
             [[request.fields]]\ntag='Amt'\nlabel='金额'\ntype='amount'\nwidth=5\n",
        )
        .unwrap();
        let t: toml::Table = toml::from_str(
            "No='A1'\nName='中石油昆仑'\nG=[{Acct='6222001', Amt='5'},{Acct='62', Amt='6'}]",
        )
        .unwrap();
        let b = Record::from_toml(&s.request, &t).unwrap();
        let text = Redacted {
            layout: &s.request,
            body: &b,
        }
        .to_string();
        assert_eq!(
            text,
            "No=A1 Name=中***仑 Num=2 G=[{Acct=6*****1 Amt=5},{Acct=** Amt=6}]"
        );
    }
}
