//! Transcoding between the XML and the fixed forms of one message, for
//! listeners and backends that speak different forms.

use super::{fixed, xml, BodyError};
use crate::header::HeaderSpec;
use crate::schema::Layout;

/// An XML message to its fixed form: the header built from HEAD (missing
/// tags blank, checked as the header layout says), then the fixed body.
pub fn xml_to_fixed(
    header: &HeaderSpec,
    layout: &Layout,
    msg: &[u8],
) -> Result<Vec<u8>, BodyError> {
    let doc = xml::XmlDoc::parse(msg)?;
    let body = doc.body(layout)?;
    let mut out = header.encode(
        doc.head_values()
            .iter()
            .map(|(t, v)| (t.as_str(), v.as_str())),
    )?;
    header.check(&out)?;
    fixed::encode(layout, &body, &mut out)?;
    Ok(out)
}

/// A fixed message (header plus body, no length prefix) to its XML form.
pub fn fixed_to_xml(
    header: &HeaderSpec,
    layout: &Layout,
    msg: &[u8],
) -> Result<Vec<u8>, BodyError> {
    let head = header.values(msg)?;
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
        let bad = x.replace("<TranCode>2969", "<TranCode>29A9");
        let e = xml_to_fixed(&h, &s.request, bad.as_bytes()).unwrap_err();
        assert_eq!(e.tag, "TranCode");
    }
}
