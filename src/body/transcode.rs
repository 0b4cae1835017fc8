//! Transcoding between the XML and the fixed forms of one message, for
//! listeners and backends that speak different forms.

use super::{fixed, xml, BodyError, Record};
use crate::header::{HeaderSpec, Role};
use crate::schema::Layout;

/// Whether header values carry a response code (a response, not a request).
fn is_response(header: &HeaderSpec, head: &[(String, String)]) -> bool {
    header.field(Role::RspCode).is_some_and(|f| {
        head.iter()
            .any(|(t, v)| t == &f.tag && !v.trim().is_empty())
    })
}

/// An XML message to its fixed form: the header built from HEAD (missing
/// tags blank, checked as the header layout says), then the fixed body.
/// A response (RspCode set) whose BODY is empty stays bodiless: header only.
pub fn xml_to_fixed(
    header: &HeaderSpec,
    layout: &Layout,
    msg: &[u8],
) -> Result<Vec<u8>, BodyError> {
    xml::XmlDoc::parse(msg)?.to_fixed(header, layout)
}

impl xml::XmlDoc {
    /// This message in fixed form, as [`xml_to_fixed`] (for a caller that
    /// has parsed the document already).
    pub fn to_fixed(&self, header: &HeaderSpec, layout: &Layout) -> Result<Vec<u8>, BodyError> {
        let doc = self;
        let mut out = header.encode(
            doc.head_values()
                .iter()
                .map(|(t, v)| (t.as_str(), v.as_str())),
        )?;
        header.check(&out)?;
        if doc.body_is_empty() && is_response(header, doc.head_values()) {
            return Ok(out);
        }
        let body = doc.body(layout)?;
        fixed::encode(layout, &body, &mut out)?;
        Ok(out)
    }
}

/// A fixed message (header plus body, no length prefix) to its XML form.
/// A response (RspCode set) with no body gets an empty BODY.
pub fn fixed_to_xml(
    header: &HeaderSpec,
    layout: &Layout,
    msg: &[u8],
) -> Result<Vec<u8>, BodyError> {
    let head = header.values(msg)?;
    if msg.len() == header.length() && is_response(header, &head) {
        return xml::encode(header, &head, &Layout::default(), &Record::new());
    }
    let body = fixed::decode(layout, msg, header.length())?;
    xml::encode(header, &head, layout, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    #[test]
    fn both_ways() {
        let s = Schema::from_toml(
            "code='2969'\nname='t'\n[[request]]\ntag='LoanAppNo'\nlabel='编号'\ntype='C'\nwidth=32\n\
             [[request]]\ntag='Amount'\nlabel='金额'\ntype='amount'\nwidth=15\n",
        )
        .unwrap();
        let h = HeaderSpec::builtin();
        let x = "<?xml version=\"1.0\" encoding=\"GBK\"?><ROOT><HEAD><TranCode>2969</TranCode>\
                 <ChnlNo>CUS</ChnlNo><SeqNo>S1</SeqNo></HEAD><BODY><LoanAppNo>LA1</LoanAppNo>\
                 <Amount>1234.56</Amount></BODY></ROOT>";
        let f = xml_to_fixed(&h, &s.request, x.as_bytes()).unwrap();
        assert_eq!(f.len(), 247);
        assert_eq!(&f[0..4], b"2969");
        assert_eq!(&f[232..], b"000000000123456");
        let back = fixed_to_xml(&h, &s.request, &f).unwrap();
        let doc = xml::XmlDoc::parse(&back).unwrap();
        assert_eq!(doc.head("SeqNo"), Some("S1"));
        assert_eq!(doc.body(&s.request).unwrap().text("Amount"), Some("123456"));
        assert_eq!(xml_to_fixed(&h, &s.request, &back).unwrap(), f);
        // A bodiless failure answer stays bodiless both ways.
        let rej = h
            .encode([
                ("TranCode", "2969"),
                ("RspCode", "GW0001"),
                ("RspMsg", "报文格式错误"),
            ])
            .unwrap();
        let x = fixed_to_xml(&h, &s.request, &rej).unwrap();
        assert!(xml::XmlDoc::parse(&x).unwrap().body_is_empty());
        assert_eq!(xml_to_fixed(&h, &s.request, &x).unwrap(), rej);
        let x = "<ROOT><HEAD><TranCode>2969</TranCode></HEAD><BODY><LoanAppNo>LA1</LoanAppNo>\
                 <Amount>1234.56</Amount></BODY></ROOT>";
        let bad = x.replace("<TranCode>2969", "<TranCode>29A9");
        let e = xml_to_fixed(&h, &s.request, bad.as_bytes()).unwrap_err();
        assert_eq!(e.tag, "TranCode");
    }
}
