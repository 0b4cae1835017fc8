//! Fixtures: `fixtures/<code>/<name>.toml`, one request and the response a
//! backend is expected to give (`fixtures/README.md`). The simulator answers
//! from them, `replay` compares against them, and the codec tests build and
//! decode every one of them in both forms.

use crate::body::{canonical, fixed, xml, BodyError, Record};
use crate::header::{HeaderError, HeaderSpec, Role};
use crate::schema::{Layout, Schema};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The form a fixture's request is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Fixed,
    Xml,
}

/// Header fields that are always volatile for replay.
const ALWAYS_VOLATILE: [&str; 2] = ["TranDate", "TranTime"];

/// One loaded fixture. Header values are by tag (sorted); bodies stay TOML
/// until a schema is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    pub path: PathBuf,
    pub name: String,
    pub code: String,
    pub format: Format,
    /// Section C codes only: `old` (request without the trailing fields) or `full`.
    pub layout: Option<String>,
    /// Fields a replay ignores unless pinned; always holds TranDate and TranTime.
    pub volatile: Vec<String>,
    pub request_header: Vec<(String, String)>,
    pub request_body: toml::Table,
    pub response_header: Vec<(String, String)>,
    pub response_body: toml::Table,
}

/// A problem loading a fixture or building its messages, with the file.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
    #[error("{path}: {source}")]
    Body {
        path: String,
        source: Box<BodyError>,
    },
    #[error("{path}: {source}")]
    Header { path: String, source: HeaderError },
}

/// A fixture file as written, before any check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixture {
    name: String,
    code: String,
    #[serde(default = "fixed_format")]
    format: Format,
    #[serde(default)]
    layout: Option<String>,
    #[serde(default)]
    volatile: Vec<String>,
    #[serde(default)]
    request: RawSide,
    #[serde(default)]
    response: RawSide,
}

fn fixed_format() -> Format {
    Format::Fixed
}

/// The `[request]` or `[response]` half of a fixture file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSide {
    #[serde(default)]
    header: BTreeMap<String, String>,
    #[serde(default)]
    body: toml::Table,
}

fn set(head: &mut Vec<(String, String)>, tag: &str, value: &str) {
    match head.iter_mut().find(|(t, _)| t == tag) {
        Some((_, v)) => *v = value.to_string(),
        None => head.push((tag.to_string(), value.to_string())),
    }
}

fn pairs(head: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> + Clone {
    head.iter().map(|(t, v)| (t.as_str(), v.as_str()))
}

impl Fixture {
    /// Reads and checks one fixture file.
    pub fn load(path: &Path) -> Result<Fixture, FixtureError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Io {
            path: p.clone(),
            source,
        })?;
        let raw: RawFixture = toml::from_str(&text).map_err(|source| FixtureError::Toml {
            path: p.clone(),
            source,
        })?;
        let invalid = |what: String| FixtureError::Invalid {
            path: p.clone(),
            what,
        };
        if raw.name.trim().is_empty() {
            return Err(invalid("name is empty".into()));
        }
        if raw.code.is_empty() || !raw.code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(format!("code {:?} is not digits", raw.code)));
        }
        if let Some(dir) = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
        {
            if dir.len() == 4 && dir.bytes().all(|b| b.is_ascii_digit()) && dir != raw.code {
                return Err(invalid(format!(
                    "code {} differs from its folder {dir}",
                    raw.code
                )));
            }
        }
        if let Some(l) = &raw.layout {
            if l != "old" && l != "full" {
                return Err(invalid(format!("layout {l:?} is neither old nor full")));
            }
        }
        let mut volatile = raw.volatile;
        for v in ALWAYS_VOLATILE {
            if !volatile.iter().any(|x| x == v) {
                volatile.push(v.to_string());
            }
        }
        Ok(Fixture {
            path: path.to_path_buf(),
            name: raw.name,
            code: raw.code,
            format: raw.format,
            layout: raw.layout,
            volatile,
            request_header: raw.request.header.into_iter().collect(),
            request_body: raw.request.body,
            response_header: raw.response.header.into_iter().collect(),
            response_body: raw.response.body,
        })
    }

    fn p(&self) -> String {
        self.path.display().to_string()
    }

    fn body_err(&self, source: BodyError) -> FixtureError {
        FixtureError::Body {
            path: self.p(),
            source: Box::new(source),
        }
    }

    fn header_err(&self, source: HeaderError) -> FixtureError {
        FixtureError::Header {
            path: self.p(),
            source,
        }
    }

    fn invalid(&self, what: String) -> FixtureError {
        FixtureError::Invalid {
            path: self.p(),
            what,
        }
    }

    fn check_schema(&self, schema: &Schema) -> Result<(), FixtureError> {
        if schema.code != self.code {
            return Err(self.invalid(format!(
                "fixture of code {} given schema {}",
                self.code, schema.code
            )));
        }
        Ok(())
    }

    fn check_tags(
        &self,
        header: &HeaderSpec,
        head: &[(String, String)],
    ) -> Result<(), FixtureError> {
        match head.iter().find(|(t, _)| header.by_tag(t).is_none()) {
            Some((t, _)) => {
                Err(self.invalid(format!("header tag {t} is not in the header layout")))
            }
            None => Ok(()),
        }
    }

    /// The request's header values; TranCode defaults to the fixture's code.
    pub fn request_head(&self, header: &HeaderSpec) -> Vec<(String, String)> {
        let mut head = self.request_header.clone();
        if let Some(f) = header.field(Role::Code) {
            if !head.iter().any(|(t, _)| t == &f.tag) {
                head.push((f.tag.clone(), self.code.clone()));
            }
        }
        head
    }

    /// The golden file beside the fixture (same name, `.bin`), if there is one.
    pub fn golden(&self) -> Option<PathBuf> {
        let p = self.path.with_extension("bin");
        p.is_file().then_some(p)
    }

    /// The request message, without the length prefix, fixed or XML. With
    /// `layout = "old"` the trailing fields are left out (they must be blank).
    pub fn request_message(
        &self,
        header: &HeaderSpec,
        schema: &Schema,
        xml: bool,
    ) -> Result<Vec<u8>, FixtureError> {
        self.check_schema(schema)?;
        let layout = &schema.request;
        let body = Record::from_toml(layout, &self.request_body).map_err(|e| self.body_err(e))?;
        let head = self.request_head(header);
        self.check_tags(header, &head)?;
        let old = self.layout.as_deref() == Some("old");
        if xml {
            return xml::encode_doc(header, &head, layout, &body, old)
                .map_err(|e| self.body_err(e));
        }
        let mut out = header
            .encode(pairs(&head))
            .map_err(|e| self.header_err(e))?;
        fixed::encode(layout, &body, &mut out).map_err(|e| self.body_err(e))?;
        if old {
            let mut cut = 0;
            for f in layout.fields().iter().filter(|f| f.trailing) {
                if body.text(&f.tag).is_some_and(|v| !v.is_empty()) {
                    return Err(
                        self.invalid(format!("layout old, but trailing field {} is set", f.tag))
                    );
                }
                cut += f.width;
            }
            out.truncate(out.len().saturating_sub(cut));
        }
        Ok(out)
    }

    /// Whether this fixture answers `request`: every non-blank plain field of
    /// `request_body` equals the request's value (canonically compared;
    /// groups ignored).
    pub fn matches(&self, schema: &Schema, request: &Record) -> bool {
        for (tag, v) in &self.request_body {
            let Some(f) = schema.request.field(tag) else {
                return false;
            };
            if f.is_group() {
                continue;
            }
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                _ => return false,
            };
            let Ok(want) = canonical(f, &text) else {
                return false;
            };
            if !want.is_empty() && request.text(tag) != Some(want.as_str()) {
                return false;
            }
        }
        true
    }

    /// Whether the answer carries no body: the fixture gives no response body
    /// and its response code is a failure (not blank, not `000000`).
    fn empty_answer(&self, header: &HeaderSpec) -> bool {
        let Some(f) = header.field(Role::RspCode) else {
            return false;
        };
        self.response_body.is_empty()
            && self
                .response_header
                .iter()
                .any(|(t, v)| t == &f.tag && !v.trim().is_empty() && v.trim() != "000000")
    }

    /// The answer a simulated backend gives: the request's header echoed
    /// (read from `request_msg`, fixed or XML as `xml` says), overlaid with
    /// `response_header`, then the response body, in the same form. A failure
    /// answer with no response body is sent header only.
    pub fn response_message(
        &self,
        header: &HeaderSpec,
        schema: &Schema,
        request_msg: &[u8],
        xml: bool,
    ) -> Result<Vec<u8>, FixtureError> {
        self.check_schema(schema)?;
        let mut head = if xml {
            xml::XmlDoc::parse(request_msg)
                .map_err(|e| self.body_err(e))?
                .head_values()
                .to_vec()
        } else {
            header.values(request_msg).map_err(|e| self.header_err(e))?
        };
        for (t, v) in &self.response_header {
            set(&mut head, t, v);
        }
        self.check_tags(header, &self.response_header)?;
        let (layout, body) = self.response_parts(header, schema)?;
        if xml {
            return xml::encode(header, &head, &layout, &body).map_err(|e| self.body_err(e));
        }
        let mut out = header
            .encode(pairs(&head))
            .map_err(|e| self.header_err(e))?;
        fixed::encode(&layout, &body, &mut out).map_err(|e| self.body_err(e))?;
        Ok(out)
    }

    fn response_parts(
        &self,
        header: &HeaderSpec,
        schema: &Schema,
    ) -> Result<(Layout, Record), FixtureError> {
        if self.empty_answer(header) {
            return Ok((Layout::default(), Record::new()));
        }
        let body = Record::from_toml(&schema.response, &self.response_body)
            .map_err(|e| self.body_err(e))?;
        Ok((schema.response.clone(), body))
    }

    /// The response header values the fixture pins and the expected body,
    /// for replay comparison (an empty body for a bodiless failure answer).
    pub fn expected_response(
        &self,
        schema: &Schema,
    ) -> Result<(Vec<(String, String)>, Record), FixtureError> {
        self.check_schema(schema)?;
        let (_, body) = self.response_parts(&HeaderSpec::builtin(), schema)?;
        Ok((self.response_header.clone(), body))
    }
}

/// Loads every fixture under `dir`, recursively (`*.toml` except READMEs),
/// sorted by path; the first problem stops the load.
pub fn load_dir(dir: &Path) -> Result<Vec<Fixture>, FixtureError> {
    let mut paths = Vec::new();
    collect(dir, &mut paths)?;
    paths.sort();
    paths.iter().map(|p| Fixture::load(p)).collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FixtureError> {
    let io = |source| FixtureError::Io {
        path: dir.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect(&path, out)?;
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".toml") && !name.to_ascii_uppercase().starts_with("README") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::xml::XmlDoc;

    const SCHEMA: &str = "code='2981'\nname='t'\n\
        [[request]]\ntag='CustNo'\nlabel='客户号'\ntype='C'\nwidth=10\nrequired=true\n\
        [[request]]\ntag='StartDate'\nlabel='起始日期'\ntype='date'\nwidth=8\ntrailing=true\n\
        [[response]]\ntag='Balance'\nlabel='余额'\ntype='amount'\nwidth=12\n\
        [[response]]\ntag='CustName'\nlabel='客户名称'\ntype='C'\nwidth=20\n";

    const FIXTURE: &str = r#"
name = "余额查询：旧版请求"
code = "2981"
format = "fixed"
layout = "old"
volatile = ["SeqNo"]

[request.header]
ChnlNo = "NET"
SeqNo = "NET0001"
TranDate = "20261204"

[request.body]
CustNo = "C001"

[response.header]
RspCode = "000000"
RspMsg = "交易成功"

[response.body]
Balance = "123456"
CustName = "中石油"
"#;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn builds_and_answers_in_both_forms() {
        let root = std::env::temp_dir().join(format!("txgate-fixture-{}", std::process::id()));
        let p = write(&root.join("2981"), "old.toml", FIXTURE);
        write(&root, "README.md", "x");
        let all = load_dir(&root).unwrap();
        assert_eq!(all.len(), 1);
        let fx = Fixture::load(&p).unwrap();
        assert_eq!(all[0], fx);
        assert!(fx.volatile.contains(&"TranTime".to_string()));
        let h = HeaderSpec::builtin();
        let s = Schema::from_toml(SCHEMA).unwrap();
        let req = fx.request_message(&h, &s, false).unwrap();
        assert_eq!(req.len(), 210);
        assert_eq!(&req[0..4], b"2981");
        let decoded = fixed::decode(&s.request, &req, 200).unwrap();
        assert!(fx.matches(&s, &decoded));
        let mut other = decoded.clone();
        other.set("CustNo", crate::body::Value::Text("C002".into()));
        assert!(!fx.matches(&s, &other));
        let rsp = fx.response_message(&h, &s, &req, false).unwrap();
        let vals = h.values(&rsp).unwrap();
        assert!(vals.contains(&("SeqNo".into(), "NET0001".into())));
        assert!(vals.contains(&("RspMsg".into(), "交易成功".into())));
        let (_, want) = fx.expected_response(&s).unwrap();
        assert_eq!(fixed::decode(&s.response, &rsp, 200).unwrap(), want);

        let xreq = fx.request_message(&h, &s, true).unwrap();
        let doc = XmlDoc::parse(&xreq).unwrap();
        assert!(!String::from_utf8_lossy(&xreq).contains("StartDate"));
        assert!(fx.matches(&s, &doc.body(&s.request).unwrap()));
        let xrsp = fx.response_message(&h, &s, &xreq, true).unwrap();
        let d = XmlDoc::parse(&xrsp).unwrap();
        assert_eq!(d.head("RspCode"), Some("000000"));
        assert_eq!(d.head("SeqNo"), Some("NET0001"));
        assert_eq!(d.body(&s.response).unwrap(), want);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn failure_answers_have_no_body() {
        let root = std::env::temp_dir().join(format!("txgate-fixture-f-{}", std::process::id()));
        let text = FIXTURE
            .replace("RspCode = \"000000\"", "RspCode = \"E00001\"")
            .replace("Balance = \"123456\"\nCustName = \"中石油\"\n", "");
        let p = write(&root.join("2981"), "fail.toml", &text);
        let fx = Fixture::load(&p).unwrap();
        let h = HeaderSpec::builtin();
        let s = Schema::from_toml(SCHEMA).unwrap();
        let req = fx.request_message(&h, &s, false).unwrap();
        assert_eq!(fx.response_message(&h, &s, &req, false).unwrap().len(), 200);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn bad_fixtures_are_named() {
        let root = std::env::temp_dir().join(format!("txgate-fixture-b-{}", std::process::id()));
        let p = write(&root.join("2969"), "x.toml", FIXTURE);
        let e = Fixture::load(&p).unwrap_err();
        assert!(e.to_string().contains("2969"), "{e}");
        let p = write(
            &root,
            "y.toml",
            &FIXTURE.replace("layout = \"old\"", "layout = \"new\""),
        );
        assert!(Fixture::load(&p).is_err());
        let p = write(&root, "z.toml", &format!("extra = 1\n{FIXTURE}"));
        assert!(matches!(Fixture::load(&p), Err(FixtureError::Toml { .. })));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
