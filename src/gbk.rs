//! Strict GBK, as protocol.md §2 asks.
//!
//! encoding_rs alone is not strict enough: its GBK decoder also takes
//! GB18030 four-byte sequences. So bytes are first scanned for their
//! structure (lead byte, trail byte), then mapped by encoding_rs.

use encoding_rs::GBK;
use std::borrow::Cow;

/// Why some bytes are not strict GBK, and where, relative to the slice given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GbkError {
    /// A lead byte with no trail byte inside the field.
    #[error("偏移 {offset} 处双字节字符被截断")]
    SplitCharacter { offset: usize },
    /// A lead byte followed by a byte that is no GBK trail byte.
    #[error("偏移 {offset} 处字节 {lead:02X} {trail:02X} 不是合法的 GBK 字符")]
    BadTrail { offset: usize, lead: u8, trail: u8 },
    /// A GB18030 four-byte sequence, refused in strict mode.
    #[error("偏移 {offset} 处为 GB18030 四字节序列，严格 GBK 模式不接受")]
    FourByte { offset: usize },
    /// A byte that cannot start a character (0xFF).
    #[error("偏移 {offset} 处字节 {byte:02X} 不是合法的 GBK 首字节")]
    BadLead { offset: usize, byte: u8 },
    /// A well-formed pair that maps to no character.
    #[error("偏移 {offset} 处字节不能映射为字符")]
    Unmapped { offset: usize },
    /// A character that GBK cannot encode.
    #[error("字符 '{ch}' 无法用 GBK 编码")]
    Unencodable { ch: char },
}

impl GbkError {
    /// The byte offset of the fault, where one is known.
    pub fn offset(&self) -> Option<usize> {
        match self {
            GbkError::SplitCharacter { offset }
            | GbkError::BadTrail { offset, .. }
            | GbkError::FourByte { offset }
            | GbkError::BadLead { offset, .. }
            | GbkError::Unmapped { offset } => Some(*offset),
            GbkError::Unencodable { .. } => None,
        }
    }
}

/// Checks the byte structure of `bytes` as strict GBK without decoding.
pub fn check(bytes: &[u8]) -> Result<(), GbkError> {
    // Most fields are ASCII: a word-at-a-time test settles them.
    if bytes.is_ascii() {
        return Ok(());
    }
    // Fields are padded with spaces: nothing after the last possible lead
    // byte and its trail can fail, so the walk stops there.
    let end = bytes
        .iter()
        .rposition(|&b| b > 0x80)
        .map_or(0, |p| (p + 2).min(bytes.len()));
    let bytes = &bytes[..end];
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b <= 0x80 {
            // ASCII, or 0x80 (the euro sign of code page 936).
            i += 1;
            continue;
        }
        if b == 0xFF {
            return Err(GbkError::BadLead { offset: i, byte: b });
        }
        let Some(&t) = bytes.get(i + 1) else {
            return Err(GbkError::SplitCharacter { offset: i });
        };
        if (0x30..=0x39).contains(&t) {
            return Err(GbkError::FourByte { offset: i });
        }
        if !(0x40..=0xFE).contains(&t) || t == 0x7F {
            return Err(GbkError::BadTrail {
                offset: i,
                lead: b,
                trail: t,
            });
        }
        i += 2;
    }
    Ok(())
}

/// Decodes strict GBK. ASCII-only input is borrowed, not copied.
pub fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, GbkError> {
    check(bytes)?;
    match GBK.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(s) => Ok(s),
        None => Err(GbkError::Unmapped {
            offset: first_unmapped(bytes),
        }),
    }
}

fn first_unmapped(bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        let n = if bytes[i] < 0x81 { 1 } else { 2 };
        let end = (i + n).min(bytes.len());
        if GBK
            .decode_without_bom_handling_and_without_replacement(&bytes[i..end])
            .is_none()
        {
            return i;
        }
        i = end;
    }
    0
}

/// Whether `bytes` are strict GBK. The structure check is enough: every
/// pair it accepts maps to a character (tested over all of them below).
pub fn is_valid(bytes: &[u8]) -> bool {
    bytes.is_ascii() || check(bytes).is_ok()
}

/// Decodes strict GBK into `buf` without allocating; `None` if the bytes
/// are not strict GBK or do not fit (a GBK pair becomes at most 3 UTF-8 bytes).
pub fn decode_into<'b>(bytes: &[u8], buf: &'b mut [u8]) -> Option<&'b str> {
    check(bytes).ok()?;
    let mut decoder = GBK.new_decoder_without_bom_handling();
    let (result, _, written) = decoder.decode_to_utf8_without_replacement(bytes, buf, true);
    match result {
        encoding_rs::DecoderResult::InputEmpty => std::str::from_utf8(&buf[..written]).ok(),
        _ => None,
    }
}

/// Encodes text to GBK, refusing any character GBK has no form for.
pub fn encode(text: &str) -> Result<Cow<'_, [u8]>, GbkError> {
    if text.is_ascii() {
        return Ok(Cow::Borrowed(text.as_bytes()));
    }
    let mut out = Vec::with_capacity(text.len());
    for ch in text.chars() {
        let mut buf = [0u8; 4];
        let s = ch.encode_utf8(&mut buf);
        let (bytes, _, unmappable) = GBK.encode(s);
        if unmappable || bytes.len() > 2 {
            return Err(GbkError::Unencodable { ch });
        }
        out.extend_from_slice(&bytes);
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk over every byte, as `check` did before it stopped at the
    /// last possible lead byte.
    fn check_every_byte(bytes: &[u8]) -> Result<(), GbkError> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b <= 0x80 {
                i += 1;
                continue;
            }
            if b == 0xFF {
                return Err(GbkError::BadLead { offset: i, byte: b });
            }
            let Some(&t) = bytes.get(i + 1) else {
                return Err(GbkError::SplitCharacter { offset: i });
            };
            if (0x30..=0x39).contains(&t) {
                return Err(GbkError::FourByte { offset: i });
            }
            if !(0x40..=0xFE).contains(&t) || t == 0x7F {
                return Err(GbkError::BadTrail {
                    offset: i,
                    lead: b,
                    trail: t,
                });
            }
            i += 2;
        }
        Ok(())
    }

    #[test]
    fn check_stopping_at_the_last_lead_byte_gives_the_same_verdict_and_offset() {
        use proptest::prelude::*;
        let byte = prop_oneof![
            Just(b' '),
            Just(b'A'),
            Just(0x30u8),
            Just(0x40u8),
            Just(0x7Fu8),
            Just(0x80u8),
            Just(0x81u8),
            Just(0xB0u8),
            Just(0xFFu8),
            any::<u8>(),
        ];
        let mut runner =
            proptest::test_runner::TestRunner::new(proptest::test_runner::Config::with_cases(5000));
        runner
            .run(
                &(proptest::collection::vec(byte, 0..12), 0usize..6),
                |(mut bytes, padding)| {
                    bytes.extend(std::iter::repeat_n(b' ', padding));
                    prop_assert_eq!(check(&bytes), check_every_byte(&bytes));
                    Ok(())
                },
            )
            .unwrap();
    }

    /// `is_valid` trusts `check` alone: that holds only if every pair that
    /// `check` accepts maps to a character in encoding_rs's GBK table.
    #[test]
    fn every_pair_check_accepts_maps_to_a_character() {
        let mut accepted = 0;
        for lead in 0x81..=0xFEu8 {
            for trail in 0..=0xFFu8 {
                let pair = [lead, trail];
                let structural = check(&pair).is_ok();
                let mapped = GBK
                    .decode_without_bom_handling_and_without_replacement(&pair)
                    .is_some();
                if structural {
                    accepted += 1;
                    assert!(
                        mapped,
                        "{lead:02X} {trail:02X} passes check but maps to nothing"
                    );
                }
            }
        }
        assert_eq!(accepted, 126 * 190);
    }

    #[test]
    fn chinese_round_trips() {
        let s = "中石油昆仑燃气（青岛）有限公司";
        let b = encode(s).unwrap();
        assert_eq!(b.len(), 30);
        assert_eq!(decode(&b).unwrap(), s);
    }

    #[test]
    fn four_byte_gb18030_is_refused() {
        assert_eq!(
            decode(&[b'A', 0x81, 0x30, 0x81, 0x30]),
            Err(GbkError::FourByte { offset: 1 })
        );
    }

    #[test]
    fn split_character_is_refused() {
        let mut b = encode("中").unwrap().into_owned();
        b.truncate(1);
        assert_eq!(decode(&b), Err(GbkError::SplitCharacter { offset: 0 }));
    }

    #[test]
    fn lead_then_space_is_bad_trail() {
        assert!(matches!(
            decode(&[0xD6, 0x20]),
            Err(GbkError::BadTrail { offset: 0, .. })
        ));
    }

    #[test]
    fn is_valid_agrees_with_decode() {
        let long = encode(&"中石油".repeat(200)).unwrap().into_owned();
        for b in [
            &b"abc"[..],
            &[0xD6, 0xD0],
            &[0xD6, 0x20],
            &[0x81, 0x30, 0x81, 0x30],
            &[0xD6],
            &long[..],
        ] {
            assert_eq!(is_valid(b), decode(b).is_ok(), "{b:02X?}");
        }
    }

    #[test]
    fn unencodable_character_is_refused() {
        assert!(matches!(
            encode("emoji 😀"),
            Err(GbkError::Unencodable { .. })
        ));
    }
}
