//! The length-prefixed frame of protocol.md §1, as a tokio-util codec.
//!
//! "Check there is a whole frame, then split it": the decoder never
//! reserves room for a body until its declared length has passed the
//! maximum, so a hostile length cannot make the gateway allocate.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::str::FromStr;
use tokio_util::codec::{Decoder, Encoder};

/// The default largest body: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// How the length field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LengthField {
    /// ASCII decimal, zero-padded, 4 to 10 digits.
    Ascii(u8),
    /// Binary big-endian u16.
    U16,
    /// Binary big-endian u32.
    U32,
}

/// One framing, as a listener or backend declares it: `ascii8` (the
/// default), `ascii4`..`ascii10`, `u16`, `u32`, each optionally with
/// `+self` when the length counts the length field itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Framing {
    pub field: LengthField,
    pub includes_self: bool,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            field: LengthField::Ascii(8),
            includes_self: false,
        }
    }
}

impl Framing {
    pub fn prefix_len(&self) -> usize {
        match self.field {
            LengthField::Ascii(n) => n as usize,
            LengthField::U16 => 2,
            LengthField::U32 => 4,
        }
    }

    /// The largest body this length field can describe.
    pub fn max_representable(&self) -> usize {
        let own = if self.includes_self {
            self.prefix_len()
        } else {
            0
        };
        let max: u64 = match self.field {
            LengthField::Ascii(n) => 10u64.pow(n as u32) - 1,
            LengthField::U16 => u16::MAX as u64,
            LengthField::U32 => u32::MAX as u64,
        };
        usize::try_from(max)
            .unwrap_or(usize::MAX)
            .saturating_sub(own)
    }

    /// Writes the length prefix of a body of `len` bytes.
    pub fn put_prefix(&self, len: usize, dst: &mut BytesMut) -> Result<(), FrameError> {
        if len > self.max_representable() {
            return Err(FrameError::TooLong {
                declared: len,
                max: self.max_representable(),
            });
        }
        let n = if self.includes_self {
            len + self.prefix_len()
        } else {
            len
        };
        match self.field {
            LengthField::Ascii(d) => put_zero_padded(n, usize::from(d), dst),
            LengthField::U16 => dst.put_u16(n as u16),
            LengthField::U32 => dst.put_u32(n as u32),
        }
        Ok(())
    }

    /// Frames one body into a fresh buffer (tools and tests).
    pub fn frame(&self, body: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = BytesMut::with_capacity(self.prefix_len() + body.len());
        self.put_prefix(body.len(), &mut out)?;
        out.put_slice(body);
        Ok(out.to_vec())
    }
}

/// Writes `n` as `width` zero-padded ASCII digits, from a stack buffer: it
/// is done for every frame sent. `n` fits in `width`, as `put_prefix` checked.
fn put_zero_padded(mut n: usize, width: usize, dst: &mut BytesMut) {
    let mut digits = [0u8; 20]; // any usize fits
    let mut start = digits.len();
    while n > 0 {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let digits = &digits[start..];
    dst.put_bytes(b'0', width.saturating_sub(digits.len()));
    dst.put_slice(digits);
}

impl FromStr for Framing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (base, includes_self) = match s.strip_suffix("+self") {
            Some(b) => (b, true),
            None => (s, false),
        };
        let field = match base {
            "u16" => LengthField::U16,
            "u32" => LengthField::U32,
            _ => {
                let digits = base
                    .strip_prefix("ascii")
                    .and_then(|d| d.parse::<u8>().ok())
                    .filter(|d| (4..=10).contains(d))
                    .ok_or_else(|| {
                        format!(
                            "framing \"{s}\": expected ascii4..ascii10, u16 or u32, optionally with +self"
                        )
                    })?;
                LengthField::Ascii(digits)
            }
        };
        Ok(Framing {
            field,
            includes_self,
        })
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            LengthField::Ascii(n) => write!(f, "ascii{n}")?,
            LengthField::U16 => f.write_str("u16")?,
            LengthField::U32 => f.write_str("u32")?,
        }
        if self.includes_self {
            f.write_str("+self")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Framing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a byte stream is no longer framed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length field is not digits: frame boundaries are lost (GW0001).
    #[error("长度域不是数字：{found:?}")]
    NotDigits { found: String },
    /// A self-inclusive length smaller than the length field itself (GW0001).
    #[error("长度域 {declared} 小于长度域自身的 {prefix} 字节")]
    TooShort { declared: usize, prefix: usize },
    /// The declared length is over the maximum (GW0002).
    #[error("声明长度 {declared} 字节超过上限 {max} 字节")]
    TooLong { declared: usize, max: usize },
    #[error("连接读写错误：{0}")]
    Io(#[from] std::io::Error),
}

/// The codec: whole frames in, bodies out, as `Bytes` slices of the read
/// buffer (no copy). An empty body is a heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    pub framing: Framing,
    pub max_body: usize,
}

impl FrameCodec {
    pub fn new(framing: Framing, max_body: usize) -> Self {
        FrameCodec { framing, max_body }
    }

    /// Reads the declared body length from a complete length field.
    pub fn declared_len(&self, prefix: &[u8]) -> Result<usize, FrameError> {
        let raw = match self.framing.field {
            LengthField::Ascii(_) => {
                if !prefix.iter().all(u8::is_ascii_digit) {
                    return Err(FrameError::NotDigits {
                        found: String::from_utf8_lossy(prefix).into_owned(),
                    });
                }
                prefix
                    .iter()
                    .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
            }
            LengthField::U16 => u64::from(u16::from_be_bytes([prefix[0], prefix[1]])),
            LengthField::U32 => u64::from(u32::from_be_bytes([
                prefix[0], prefix[1], prefix[2], prefix[3],
            ])),
        };
        let raw = usize::try_from(raw).unwrap_or(usize::MAX);
        let body = if self.framing.includes_self {
            let p = self.framing.prefix_len();
            // A self-inclusive heartbeat may be written as 0 or as the prefix length.
            if raw == 0 {
                0
            } else {
                raw.checked_sub(p).ok_or(FrameError::TooShort {
                    declared: raw,
                    prefix: p,
                })?
            }
        } else {
            raw
        };
        if body > self.max_body {
            return Err(FrameError::TooLong {
                declared: body,
                max: self.max_body,
            });
        }
        Ok(body)
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(Framing::default(), DEFAULT_MAX_BODY)
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let p = self.framing.prefix_len();
        if src.len() < p {
            return Ok(None);
        }
        let body = self.declared_len(&src[..p])?;
        let total = p + body;
        if src.len() < total {
            // Safe: `body` is within the maximum already.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(p);
        Ok(Some(src.split_to(body).freeze()))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.reserve(self.framing.prefix_len() + body.len());
        self.framing.put_prefix(body.len(), dst)?;
        dst.put_slice(&body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut FrameCodec, bytes: &[u8]) -> Result<Option<Bytes>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        codec.decode(&mut buf)
    }

    #[test]
    fn ascii_prefix_is_zero_padded_at_every_width() {
        for digits in 4..=10u32 {
            let framing: Framing = format!("ascii{digits}").parse().unwrap();
            let max = framing.max_representable();
            for len in [0, 7, 383, 9_999, max] {
                let mut out = BytesMut::new();
                framing.put_prefix(len, &mut out).unwrap();
                assert_eq!(out.len(), digits as usize);
                assert_eq!(
                    &out[..],
                    format!("{len:0w$}", w = digits as usize).as_bytes()
                );
                let codec = FrameCodec::new(framing, usize::MAX);
                assert_eq!(codec.declared_len(&out).unwrap(), len);
            }
            assert!(framing.put_prefix(max + 1, &mut BytesMut::new()).is_err());
        }
    }

    #[test]
    fn ascii8_body_only() {
        let mut c = FrameCodec::default();
        let got = decode_all(&mut c, b"00000003abc").unwrap().unwrap();
        assert_eq!(&got[..], b"abc");
    }

    #[test]
    fn partial_frame_is_incomplete() {
        let mut c = FrameCodec::default();
        assert!(decode_all(&mut c, b"00000010abc").unwrap().is_none());
        assert!(decode_all(&mut c, b"0000").unwrap().is_none());
    }

    #[test]
    fn heartbeat_is_an_empty_body() {
        let mut c = FrameCodec::default();
        assert!(decode_all(&mut c, b"00000000").unwrap().unwrap().is_empty());
    }

    #[test]
    fn oversize_is_refused_before_reserving() {
        let mut c = FrameCodec::default();
        let mut buf = BytesMut::from(&b"99999999xx"[..]);
        let cap = buf.capacity();
        assert!(matches!(
            c.decode(&mut buf),
            Err(FrameError::TooLong { .. })
        ));
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn non_digit_length_is_refused() {
        let mut c = FrameCodec::default();
        assert!(matches!(
            decode_all(&mut c, b"0000A123xxxx"),
            Err(FrameError::NotDigits { .. })
        ));
    }

    #[test]
    fn every_framing_round_trips() {
        for f in [
            "ascii4",
            "ascii6",
            "ascii8",
            "ascii10",
            "u16",
            "u32",
            "ascii8+self",
            "u16+self",
            "u32+self",
            "ascii4+self",
        ] {
            let framing: Framing = f.parse().unwrap();
            assert_eq!(framing.to_string(), f);
            let mut c = FrameCodec::new(framing, DEFAULT_MAX_BODY);
            let mut buf = BytesMut::new();
            c.encode(Bytes::from_static(b"hello"), &mut buf).unwrap();
            assert_eq!(buf.len(), framing.prefix_len() + 5, "{f}");
            assert_eq!(&c.decode(&mut buf).unwrap().unwrap()[..], b"hello", "{f}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn bad_framing_names_are_refused() {
        for f in ["ascii3", "ascii11", "u8", "", "ascii8+", "binary"] {
            assert!(f.parse::<Framing>().is_err(), "{f}");
        }
    }

    #[test]
    fn self_inclusive_shorter_than_prefix_is_an_error() {
        let mut c = FrameCodec::new("ascii8+self".parse().unwrap(), DEFAULT_MAX_BODY);
        assert!(matches!(
            decode_all(&mut c, b"00000005"),
            Err(FrameError::TooShort { .. })
        ));
    }
}
