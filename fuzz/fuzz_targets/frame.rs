//! FrameCodec over arbitrary bytes, for every framing and two maximums.
//!
//! Properties: never panics; a hostile length is refused without growing
//! the buffer; feeding the bytes in small pieces gives exactly the frames
//! (and the same final error) as feeding them at once; every frame decoded
//! re-encodes and decodes back to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use txgate::frame::{FrameCodec, FrameError, Framing, DEFAULT_MAX_BODY};
use txgate_fuzz::{chunks, FRAMINGS};

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Ran out of bytes with this many left over (a partial frame, or none).
    Incomplete(usize),
    NotDigits,
    TooShort,
    TooLong,
}

fn kind(e: &FrameError) -> End {
    match e {
        FrameError::NotDigits { .. } => End::NotDigits,
        FrameError::TooShort { .. } => End::TooShort,
        FrameError::TooLong { .. } => End::TooLong,
        FrameError::Io(e) => panic!("the decoder does no I/O, yet: {e}"),
    }
}

/// Decodes everything `buf` holds; `None` means more bytes are needed.
fn drain(codec: &mut FrameCodec, buf: &mut BytesMut, frames: &mut Vec<Vec<u8>>) -> Option<End> {
    loop {
        let cap = buf.capacity();
        let len = buf.len();
        match codec.decode(buf) {
            Ok(Some(body)) => {
                assert!(body.len() <= codec.max_body, "frame over max_body");
                assert_eq!(
                    len - buf.len(),
                    codec.framing.prefix_len() + body.len(),
                    "consumed bytes are prefix plus body"
                );
                frames.push(body.to_vec());
            }
            Ok(None) => return None,
            Err(e) => {
                assert_eq!(buf.capacity(), cap, "refused ({e}) after reserving");
                assert_eq!(buf.len(), len, "refused ({e}) after consuming");
                return Some(kind(&e));
            }
        }
    }
}

fn whole(mut codec: FrameCodec, data: &[u8]) -> (Vec<Vec<u8>>, End) {
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    let end = drain(&mut codec, &mut buf, &mut frames).unwrap_or(End::Incomplete(buf.len()));
    (frames, end)
}

fn pieces(mut codec: FrameCodec, data: &[u8], seed: u64) -> (Vec<Vec<u8>>, End) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut at = 0;
    for n in chunks(data.len(), seed) {
        buf.extend_from_slice(&data[at..at + n]);
        at += n;
        if let Some(end) = drain(&mut codec, &mut buf, &mut frames) {
            return (frames, end);
        }
    }
    let end = drain(&mut codec, &mut buf, &mut frames).unwrap_or(End::Incomplete(buf.len()));
    (frames, end)
}

fuzz_target!(|data: &[u8]| {
    let seed = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    for name in FRAMINGS {
        let framing: Framing = name.parse().expect("shipped framing names parse");
        assert_eq!(framing.to_string(), name);
        for max_body in [DEFAULT_MAX_BODY, 300, 0] {
            let codec = FrameCodec::new(framing, max_body);
            let (frames, end) = whole(codec, data);
            assert_eq!(
                pieces(codec, data, seed),
                (frames.clone(), end),
                "{name} max {max_body}: piecewise and whole decoding differ"
            );
            for body in &frames {
                let framed = framing
                    .frame(body)
                    .unwrap_or_else(|e| panic!("{name}: a decoded body does not re-frame: {e}"));
                let (again, end) = whole(codec, &framed);
                assert_eq!(again, vec![body.clone()], "{name}: re-framed body");
                assert_eq!(end, End::Incomplete(0), "{name}: re-framed body");
            }
        }
    }
});
