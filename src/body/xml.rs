//! The XML body codec: quick-xml over strictly decoded GBK.
//!
//! ```xml
//! <?xml version="1.0" encoding="GBK"?><ROOT><HEAD><TranCode>2969</TranCode>…</HEAD>
//! <BODY>…fields by tag; a group as <Tag><Record>…</Record>…</Tag>…</BODY></ROOT>
//! ```
//!
//! The whole document is GBK-decoded first (strict), then parsed. A DOCTYPE
//! is refused, and so is any entity reference other than the five XML
//! predefined ones: nothing is ever expanded (no XXE). Amounts are yuan in
//! XML (`1234.56`) and fen in the [`Body`].

use super::fixed::{check_known, records_of, text_of};
use super::{canonical, check_rules, check_value, index, path, Body, BodyError, BodyErrorKind};
use super::{Fault, Record, Row, Value};
use crate::gbk;
use crate::header::HeaderSpec;
use crate::schema::{Field, FieldType, Layout};
use quick_xml::escape::{partial_escape, resolve_xml_entity, unescape_with};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Deepest element nesting accepted: bodies are a few levels deep, and a
/// bound keeps hostile input from exhausting the stack.
const MAX_DEPTH: usize = 32;

/// One element of a parsed document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// A parsed XML message: its HEAD values, and its BODY kept as elements
/// until a layout is applied with [`XmlDoc::body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlDoc {
    head: Vec<(String, String)>,
    body: Node,
}

fn doc_err(tag: &str, label: &str, expected: &str, found: &str) -> BodyError {
    BodyError::other(BodyErrorKind::Format, tag, label, None, expected, found)
}

fn element_name(s: &BytesStart<'_>) -> Result<String, BodyError> {
    std::str::from_utf8(s.name().as_ref())
        .map(str::to_string)
        .map_err(|_| doc_err("XML", "XML 报文", "元素名", "非法字节"))
}

impl XmlDoc {
    /// Parses a frame body (no length prefix) as an XML message.
    pub fn parse(msg: &[u8]) -> Result<XmlDoc, BodyError> {
        let text = gbk::decode(msg).map_err(|e| {
            let f = Fault::charset(&e, msg);
            BodyError::other(
                BodyErrorKind::Charset,
                "XML",
                "XML 报文",
                e.offset(),
                &f.expected,
                &f.found,
            )
        })?;
        let root = parse_tree(&text)?;
        if root.name != "ROOT" {
            return Err(doc_err("ROOT", "根元素", "<ROOT>", &root.name));
        }
        let mut head_node = None;
        let mut body_node = None;
        for c in &root.children {
            let slot = match c.name.as_str() {
                "HEAD" => &mut head_node,
                "BODY" => &mut body_node,
                other => return Err(doc_err(other, "", "HEAD 或 BODY", "未知元素")),
            };
            if slot.replace(c).is_some() {
                return Err(doc_err(&c.name, "", "只出现一次", "重复元素"));
            }
        }
        let Some(head_node) = head_node else {
            return Err(doc_err("HEAD", "报文头", "<HEAD> 元素", "缺失"));
        };
        let mut head: Vec<(String, String)> = Vec::with_capacity(head_node.children.len());
        let mut seen = std::collections::HashSet::new();
        for c in &head_node.children {
            if !c.children.is_empty() {
                return Err(doc_err(&c.name, "", "文本值", "子元素"));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(doc_err(&c.name, "", "只出现一次", "重复元素"));
            }
            head.push((c.name.clone(), trim_ascii(&c.text).to_string()));
        }
        Ok(XmlDoc {
            head,
            body: body_node.cloned().unwrap_or_default(),
        })
    }

    /// A HEAD value by tag, trimmed; `None` if the tag is absent.
    pub fn head(&self, tag: &str) -> Option<&str> {
        self.head
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, v)| v.as_str())
    }

    /// The HEAD values in document order.
    pub fn head_values(&self) -> &[(String, String)] {
        &self.head
    }

    /// Whether BODY is absent or has no elements (a rejection's answer).
    pub fn body_is_empty(&self) -> bool {
        self.body.children.is_empty()
    }

    /// Applies a layout to BODY, with the same checks as the fixed decoder.
    pub fn body(&self, layout: &Layout) -> Result<Body, BodyError> {
        record_from_node(layout.fields(), &self.body, "")
    }

    /// BODY as rows without a schema, element by element.
    pub(crate) fn raw_rows(&self, rows: &mut Vec<Row>) {
        fn walk(n: &Node, depth: usize, rows: &mut Vec<Row>) {
            for c in &n.children {
                rows.push(Row {
                    tag: c.name.clone(),
                    label: String::new(),
                    value: trim_ascii(&c.text).to_string(),
                    depth,
                });
                walk(c, depth + 1, rows);
            }
        }
        walk(&self.body, 0, rows);
    }
}

/// Builds the element tree, refusing DOCTYPE, unknown entities, a second
/// root, and too deep a nesting.
fn parse_tree(text: &str) -> Result<Node, BodyError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let bad = |found: String| doc_err("XML", "XML 报文", "格式正确的 XML", &found);
    loop {
        let ev = reader.read_event().map_err(|e| bad(e.to_string()))?;
        match ev {
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| bad(e.to_string()))?;
                    if !enc.eq_ignore_ascii_case(b"GBK") {
                        return Err(doc_err(
                            "encoding",
                            "XML 声明",
                            "GBK",
                            &String::from_utf8_lossy(&enc),
                        ));
                    }
                }
            }
            Event::DocType(_) => {
                return Err(doc_err(
                    "DOCTYPE",
                    "文档类型声明",
                    "无 DOCTYPE 的 XML",
                    "<!DOCTYPE",
                ))
            }
            Event::PI(_) | Event::Comment(_) => {}
            Event::Start(s) => {
                if root.is_some() {
                    return Err(bad("第二个根元素".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(bad(format!("嵌套超过 {MAX_DEPTH} 层")));
                }
                stack.push(Node {
                    name: element_name(&s)?,
                    ..Node::default()
                });
            }
            Event::Empty(s) => {
                let node = Node {
                    name: element_name(&s)?,
                    ..Node::default()
                };
                attach(&mut stack, &mut root, node)?;
            }
            Event::End(_) => {
                let Some(node) = stack.pop() else {
                    return Err(bad("多余的结束标签".into()));
                };
                attach(&mut stack, &mut root, node)?;
            }
            Event::Text(t) => {
                let raw = std::str::from_utf8(&t).map_err(|e| bad(e.to_string()))?;
                let s = unescape_with(raw, resolve_xml_entity).map_err(|_| {
                    let tag = stack.last().map_or("XML", |n| n.name.as_str());
                    doc_err(tag, "", "文本或预定义实体", "未定义的实体引用")
                })?;
                match stack.last_mut() {
                    Some(n) => n.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(bad("根元素外的文本".into())),
                }
            }
            Event::CData(c) => {
                let raw = std::str::from_utf8(&c).map_err(|e| bad(e.to_string()))?;
                match stack.last_mut() {
                    Some(n) => n.text.push_str(raw),
                    None => return Err(bad("根元素外的 CDATA".into())),
                }
            }
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(bad(format!("未闭合的 <{}>", open.name)));
    }
    root.ok_or_else(|| bad("空文档".into()))
}

fn attach(stack: &mut [Node], root: &mut Option<Node>, node: Node) -> Result<(), BodyError> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None if root.is_none() => *root = Some(node),
        None => {
            return Err(doc_err("XML", "XML 报文", "单一根元素", "第二个根元素"));
        }
    }
    Ok(())
}

fn record_from_node(fields: &[Field], node: &Node, prefix: &str) -> Result<Record, BodyError> {
    // Linear in the children: each must be a field of the layout, once.
    let mut seen = vec![false; fields.len()];
    for c in &node.children {
        let Some(i) = fields.iter().position(|f| f.tag == c.name) else {
            return Err(doc_err(
                &path(prefix, &c.name),
                "",
                "布局中的字段",
                "未知元素",
            ));
        };
        if seen.get_mut(i).is_some_and(|s| std::mem::replace(s, true)) {
            return Err(doc_err(
                &path(prefix, &c.name),
                "",
                "只出现一次",
                "重复元素",
            ));
        }
    }
    // Pass 1: types and groups.
    let mut rec = Record {
        fields: Vec::with_capacity(fields.len()),
    };
    for f in fields {
        let p = path(prefix, &f.tag);
        let el = node.child(&f.tag);
        let value = if f.is_group() {
            let mut records = Vec::new();
            if let Some(el) = el {
                if !trim_ascii(&el.text).is_empty() {
                    return Err(BodyError::field(
                        f,
                        &p,
                        None,
                        Fault::format(format!("<{}> 记录", f.record), "文本"),
                    ));
                }
                for (i, r) in el.children.iter().enumerate() {
                    if r.name != f.record {
                        return Err(BodyError::field(
                            f,
                            &p,
                            None,
                            Fault::format(format!("<{}> 记录", f.record), r.name.as_str()),
                        ));
                    }
                    records.push(record_from_node(&f.fields, r, &index(&p, i))?);
                }
            }
            Value::Group(records)
        } else {
            let text = match el {
                None => "",
                Some(el) if !el.children.is_empty() => {
                    return Err(BodyError::field(
                        f,
                        &p,
                        None,
                        Fault::format("文本值", "子元素"),
                    ))
                }
                Some(el) if f.kind == FieldType::C => el.text.as_str(),
                Some(el) => trim_ascii(&el.text),
            };
            let text = if f.kind == FieldType::Amount {
                yuan_to_fen(text).map_err(|e| BodyError::field(f, &p, None, e))?
            } else {
                text.to_string()
            };
            Value::Text(canonical(f, &text).map_err(|e| BodyError::field(f, &p, None, e))?)
        };
        rec.fields.push((f.tag.clone(), value));
    }
    // Pass 2: count fields agree with their groups (blank or absent: derived),
    // then the required and enumeration rules.
    for f in fields.iter().filter(|f| !f.is_group()) {
        let p = path(prefix, &f.tag);
        let v = text_of(fields, f, &rec, &p, None)?;
        check_rules(f, &v).map_err(|e| BodyError::field(f, &p, None, e))?;
        rec.set(&f.tag, Value::Text(v));
    }
    Ok(rec)
}

/// Trims XML whitespace (not U+3000, which is text in GBK).
fn trim_ascii(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

/// Yuan as written in XML (`1234.56`, `12`, `0.5`) to fen digits.
fn yuan_to_fen(s: &str) -> Result<String, Fault> {
    if s.is_empty() {
        return Ok(String::new());
    }
    let bad = || Fault::format("金额（元，至多两位小数）", s);
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || frac.len() > 2 {
        return Err(bad());
    }
    if s.ends_with('.') {
        return Err(bad());
    }
    let mut fen = String::with_capacity(int.len() + 2);
    fen.push_str(int);
    fen.push_str(frac);
    for _ in frac.len()..2 {
        fen.push('0');
    }
    Ok(fen)
}

/// Fen digits (canonical) to yuan with two decimals.
fn fen_to_yuan(fen: &str) -> String {
    if fen.is_empty() {
        return String::new();
    }
    let padded = format!("{fen:0>3}");
    let cut = padded.len() - 2;
    let (int, frac) = padded.split_at(cut);
    format!("{int}.{frac}")
}

/// Writes `<Tag>value</Tag>`, or `<Tag/>` for a blank value.
fn element(out: &mut Vec<u8>, tag: &str, value: &str) -> Result<(), gbk::GbkError> {
    out.push(b'<');
    out.extend_from_slice(tag.as_bytes());
    if value.is_empty() {
        out.extend_from_slice(b"/>");
        return Ok(());
    }
    out.push(b'>');
    out.extend_from_slice(&gbk::encode(&partial_escape(value))?);
    out.extend_from_slice(b"</");
    out.extend_from_slice(tag.as_bytes());
    out.push(b'>');
    Ok(())
}

fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Encodes a message as GBK XML: HEAD from `head` by tag, in the header
/// layout's order (tags it lacks are written blank; tags beyond it follow),
/// then BODY. An unencodable character is a Charset error for its field.
pub fn encode(
    header: &HeaderSpec,
    head: &[(String, String)],
    layout: &Layout,
    body: &Body,
) -> Result<Vec<u8>, BodyError> {
    encode_doc(header, head, layout, body, false)
}

/// [`encode`], optionally leaving out the trailing fields (an old-layout request).
pub(crate) fn encode_doc(
    header: &HeaderSpec,
    head: &[(String, String)],
    layout: &Layout,
    body: &Body,
    omit_trailing: bool,
) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"GBK\"?><ROOT><HEAD>");
    let head_err = |tag: &str, label: &str, e: gbk::GbkError| {
        let f = Fault::charset(&e, &[]);
        BodyError::other(
            BodyErrorKind::Charset,
            tag,
            label,
            None,
            &f.expected,
            &f.found,
        )
    };
    for hf in header.fields() {
        let v = head
            .iter()
            .find(|(t, _)| t == &hf.tag)
            .map_or("", |(_, v)| v.as_str());
        element(&mut out, &hf.tag, v).map_err(|e| head_err(&hf.tag, &hf.label, e))?;
    }
    for (tag, v) in head.iter().filter(|(t, _)| header.by_tag(t).is_none()) {
        if !is_xml_name(tag) {
            return Err(doc_err(tag, "", "XML 元素名", "非法名称"));
        }
        element(&mut out, tag, v).map_err(|e| head_err(tag, "", e))?;
    }
    out.extend_from_slice(b"</HEAD><BODY>");
    encode_record(layout.fields(), body, "", &mut out, omit_trailing)?;
    out.extend_from_slice(b"</BODY></ROOT>");
    Ok(out)
}

fn encode_record(
    fields: &[Field],
    rec: &Record,
    prefix: &str,
    out: &mut Vec<u8>,
    omit_trailing: bool,
) -> Result<(), BodyError> {
    check_known(fields, rec, prefix)?;
    for f in fields {
        let p = path(prefix, &f.tag);
        if f.is_group() {
            let records = records_of(f, rec, &p)?;
            if records.is_empty() {
                element(out, &f.tag, "")
                    .map_err(|e| BodyError::field(f, &p, None, Fault::charset(&e, &[])))?;
                continue;
            }
            out.push(b'<');
            out.extend_from_slice(f.tag.as_bytes());
            out.push(b'>');
            for (i, r) in records.iter().enumerate() {
                out.push(b'<');
                out.extend_from_slice(f.record.as_bytes());
                out.push(b'>');
                encode_record(&f.fields, r, &index(&p, i), out, false)?;
                out.extend_from_slice(b"</");
                out.extend_from_slice(f.record.as_bytes());
                out.push(b'>');
            }
            out.extend_from_slice(b"</");
            out.extend_from_slice(f.tag.as_bytes());
            out.push(b'>');
            continue;
        }
        let text = text_of(fields, f, rec, &p, None)?;
        let v = check_value(f, &text).map_err(|e| BodyError::field(f, &p, None, e))?;
        if omit_trailing && f.trailing {
            if !v.is_empty() {
                return Err(BodyError::field(
                    f,
                    &p,
                    None,
                    Fault::format("旧版报文中为空", v.as_str()),
                ));
            }
            continue;
        }
        let v = if f.kind == FieldType::Amount {
            fen_to_yuan(&v)
        } else {
            v
        };
        element(out, &f.tag, &v)
            .map_err(|e| BodyError::field(f, &p, None, Fault::charset(&e, &[])))?;
    }
    Ok(())
}

/// Whether a frame body is XML: its first non-space byte is `<`.
pub fn is_xml(msg: &[u8]) -> bool {
    msg.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        == Some(&b'<')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    fn s2969() -> Schema {
        Schema::from_toml(
            "code='2969'\nname='放贷结果查询'\n\
             [[request]]\ntag='LoanAppNo'\nlabel='放款申请编号'\ntype='C'\nwidth=32\nrequired=true\n\
             [[request]]\ntag='CustName'\nlabel='客户名称'\ntype='C'\nwidth=60\nsensitive=true\n\
             [[request]]\ntag='Amount'\nlabel='申请金额'\ntype='amount'\nwidth=15\n\
             [[response]]\ntag='RecNum'\nlabel='记录数'\ntype='N'\nwidth=2\n\
             [[response]]\ntag='Records'\nlabel='记录'\ntype='group'\ncount='RecNum'\nrecord='Rec'\n\
             [[response.fields]]\ntag='TxnDate'\nlabel='交易日期'\ntype='date'\nwidth=8\n\
             [[response.fields]]\ntag='Amount'\nlabel='金额'\ntype='amount'\nwidth=10\n",
        )
        .unwrap()
    }

    fn gbk(s: &str) -> Vec<u8> {
        gbk::encode(s).unwrap().into_owned()
    }

    #[test]
    fn yuan_and_fen() {
        assert_eq!(yuan_to_fen("1234.56").unwrap(), "123456");
        assert_eq!(yuan_to_fen("12").unwrap(), "1200");
        assert_eq!(yuan_to_fen("0.5").unwrap(), "050");
        assert!(yuan_to_fen("1.234").is_err());
        assert!(yuan_to_fen("-1").is_err());
        assert!(yuan_to_fen(".5").is_err());
        assert!(yuan_to_fen("5.").is_err());
        assert_eq!(fen_to_yuan("123456"), "1234.56");
        assert_eq!(fen_to_yuan("5"), "0.05");
        assert_eq!(fen_to_yuan("0"), "0.00");
    }

    #[test]
    fn parse_and_encode_round_trip() {
        let s = s2969();
        let doc = XmlDoc::parse(&gbk(
            "<?xml version=\"1.0\" encoding=\"GBK\"?><ROOT><HEAD><TranCode>2969</TranCode><DestSys/></HEAD>\
             <BODY><LoanAppNo>LA1</LoanAppNo><CustName>王&amp;五</CustName><Amount>12</Amount></BODY></ROOT>",
        ))
        .unwrap();
        assert_eq!(doc.head("TranCode"), Some("2969"));
        assert_eq!(doc.head("DestSys"), Some(""));
        assert_eq!(doc.head("SeqNo"), None);
        let b = doc.body(&s.request).unwrap();
        assert_eq!(b.text("Amount"), Some("1200"));
        assert_eq!(b.text("CustName"), Some("王&五"));
        let h = HeaderSpec::builtin();
        let out = encode(&h, doc.head_values(), &s.request, &b).unwrap();
        let again = XmlDoc::parse(&out).unwrap();
        assert_eq!(again.body(&s.request).unwrap(), b);
        assert_eq!(again.head("TranCode"), Some("2969"));
        assert!(String::from_utf8_lossy(&out).contains("<Amount>12.00</Amount>"));
    }

    #[test]
    fn groups_and_counts() {
        let s = s2969();
        let xml = "<ROOT><HEAD/><BODY><Records><Rec><TxnDate>20240229</TxnDate><Amount>1.5</Amount></Rec>\
                   <Rec><TxnDate/><Amount/></Rec></Records></BODY></ROOT>";
        let b = XmlDoc::parse(xml.as_bytes())
            .unwrap()
            .body(&s.response)
            .unwrap();
        assert_eq!(b.text("RecNum"), Some("2"));
        assert_eq!(b.group("Records").unwrap()[0].text("Amount"), Some("150"));
        let bad = xml.replace("<BODY>", "<BODY><RecNum>3</RecNum>");
        let e = XmlDoc::parse(bad.as_bytes())
            .unwrap()
            .body(&s.response)
            .unwrap_err();
        assert_eq!(e.tag, "RecNum");
        let wrong = xml
            .replace("<Rec>", "<Record>")
            .replace("</Rec>", "</Record>");
        let e = XmlDoc::parse(wrong.as_bytes())
            .unwrap()
            .body(&s.response)
            .unwrap_err();
        assert_eq!(e.tag, "Records");
    }

    #[test]
    fn refusals() {
        let doctype =
            "<?xml version=\"1.0\"?><!DOCTYPE ROOT [<!ENTITY x \"y\">]><ROOT><HEAD/></ROOT>";
        let e = XmlDoc::parse(doctype.as_bytes()).unwrap_err();
        assert_eq!(e.kind, BodyErrorKind::Format);
        assert!(e.to_string().contains("DOCTYPE"), "{e}");
        let entity = "<ROOT><HEAD><A>&x;</A></HEAD></ROOT>";
        assert!(XmlDoc::parse(entity.as_bytes()).is_err());
        let utf8 = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ROOT><HEAD/></ROOT>";
        assert!(XmlDoc::parse(utf8.as_bytes()).is_err());
        assert!(XmlDoc::parse(b"<ROOT><HEAD></ROOT>").is_err());
        assert!(XmlDoc::parse(b"<ROOT><HEAD/>").is_err());
        assert!(XmlDoc::parse(b"").is_err());
        let deep = "<a>".repeat(100_000);
        assert!(XmlDoc::parse(deep.as_bytes()).is_err());
        let bad_gbk = [
            b"<ROOT><HEAD/><BODY><A>".as_slice(),
            &[0xD6, 0x20],
            b"</A></BODY></ROOT>",
        ]
        .concat();
        let e = XmlDoc::parse(&bad_gbk).unwrap_err();
        assert!(e.is_charset());
        assert_eq!(e.offset, Some(22));
        let s = s2969();
        let unknown = "<ROOT><HEAD/><BODY><LoanAppNo>A</LoanAppNo><Nope>1</Nope></BODY></ROOT>";
        let e = XmlDoc::parse(unknown.as_bytes())
            .unwrap()
            .body(&s.request)
            .unwrap_err();
        assert_eq!(e.tag, "Nope");
        let missing = "<ROOT><HEAD/><BODY><CustName>W</CustName></BODY></ROOT>";
        let e = XmlDoc::parse(missing.as_bytes())
            .unwrap()
            .body(&s.request)
            .unwrap_err();
        assert_eq!(e.tag, "LoanAppNo");
    }

    #[test]
    fn many_elements_are_linear() {
        let s = s2969();
        let mut x = String::from("<ROOT><HEAD>");
        for i in 0..50_000 {
            x.push_str(&format!("<H{i}/>"));
        }
        x.push_str("</HEAD><BODY>");
        x.push_str(&"<LoanAppNo/>".repeat(50_000));
        x.push_str("</BODY></ROOT>");
        let t = std::time::Instant::now();
        let doc = XmlDoc::parse(x.as_bytes()).unwrap();
        let e = doc.body(&s.request).unwrap_err();
        assert!(e.to_string().contains("LoanAppNo"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn detects_xml() {
        assert!(is_xml(b"  \r\n<?xml"));
        assert!(!is_xml(b"2969CUS"));
        assert!(!is_xml(b""));
    }

    #[test]
    fn unencodable_head_value_is_charset() {
        let s = s2969();
        let h = HeaderSpec::builtin();
        let head = vec![("RspMsg".to_string(), "😀".to_string())];
        let mut b = Record::new();
        b.set("LoanAppNo", Value::Text("A".into()));
        let e = encode(&h, &head, &s.request, &b).unwrap_err();
        assert!(e.is_charset());
        assert_eq!(e.tag, "RspMsg");
    }
}
