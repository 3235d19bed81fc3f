//! Length-prefixed postcard frames: `[u32 little-endian length][postcard body]`.
//!
//! Owns the byte-level framing and nothing else: [`encode`], [`body_len`]
//! (what a header announces), [`check`] (whether a buffer holds a whole
//! frame, without decoding it, as mini-redis does) and [`decode`] (a body
//! into a message). Pure: no I/O, no async. Reading frames from a QUIC
//! stream is `transport::stream`'s job, built on these. Nothing here panics
//! on arbitrary bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest frame body either side accepts: one maximal write plus room
/// for the rest of the message.
pub const MAX_FRAME: usize = super::MAX_IO as usize + 64 * 1024;

/// The length prefix: a `u32`, little-endian.
pub const HEADER: usize = 4;

/// Why bytes are not a frame, or a frame's body not a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// The body is not a postcard encoding of the expected message.
    #[error("malformed message")]
    Malformed(#[source] postcard::Error),
    /// A buffer that must hold one frame holds more.
    #[error("malformed message: trailing bytes after frame")]
    TrailingBytes,
    /// A buffer that must hold one frame ends inside it.
    #[error("malformed message: truncated frame")]
    Truncated,
}

/// The body length a frame header announces (not yet checked against any
/// limit).
pub fn body_len(header: [u8; HEADER]) -> usize {
    // A u32 always fits a usize on the 64-bit targets rscq builds for.
    usize::try_from(u32::from_le_bytes(header)).unwrap_or(usize::MAX)
}

/// Encodes `msg` as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // postcard only fails on writer errors, and a Vec writer has none.
    let body = postcard::to_stdvec(msg).unwrap_or_default();
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Looks for a whole frame at the start of `buf`. Returns the body's range
/// within `buf` when complete, `None` when more bytes are needed.
pub fn check(buf: &[u8]) -> Result<Option<std::ops::Range<usize>>, FrameError> {
    let Some(header) = buf.get(..HEADER) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; HEADER];
    len_bytes.copy_from_slice(header);
    let len = body_len(len_bytes);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    if buf.len() < HEADER + len {
        return Ok(None);
    }
    Ok(Some(HEADER..HEADER + len))
}

/// Decodes one frame body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    postcard::from_bytes(body).map_err(FrameError::Malformed)
}

/// Decodes a buffer that must hold exactly one whole frame.
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8]) -> Result<T, FrameError> {
    match check(buf)? {
        Some(range) if range.end == buf.len() => decode(&buf[range]),
        Some(_) => Err(FrameError::TrailingBytes),
        None => Err(FrameError::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Handle, RemotePath, Reply, Request, Response, Stat};
    use proptest::prelude::*;

    #[test]
    fn request_round_trips_through_a_frame() {
        let req = Request::Open {
            path: RemotePath(b"/etc/hostname".to_vec()),
            flags: 0,
            mode: 0,
        };
        let bytes = encode(&req);
        assert_eq!(decode_frame::<Request>(&bytes).unwrap(), req);
    }

    #[test]
    fn partial_frames_ask_for_more() {
        let bytes = encode(&Request::Uname);
        for cut in 0..bytes.len() {
            assert_eq!(check(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(check(&bytes).unwrap().is_some());
    }

    #[test]
    fn the_header_is_a_little_endian_length() {
        assert_eq!(body_len([5, 1, 0, 0]), 261);
        let bytes = encode(&Request::Uname);
        let header = [bytes[0], bytes[1], bytes[2], bytes[3]];
        assert_eq!(
            check(&bytes).unwrap(),
            Some(HEADER..HEADER + body_len(header))
        );
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut bytes = u32::MAX.to_le_bytes().to_vec();
        bytes.push(0);
        assert_eq!(check(&bytes), Err(FrameError::TooLarge(u32::MAX as usize)));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut bytes = encode(&Request::Uname);
        bytes.push(7);
        assert!(decode_frame::<Request>(&bytes).is_err());
    }

    #[test]
    fn error_response_round_trips() {
        let resp: Response = Err(crate::errno::Errno::ENOENT);
        assert_eq!(decode_frame::<Response>(&encode(&resp)).unwrap(), resp);
        let ok: Response = Ok(Reply::Opened {
            handle: Handle(3),
            stat: Stat::default(),
        });
        assert_eq!(decode_frame::<Response>(&encode(&ok)).unwrap(), ok);
    }

    /// Every message of the protocol survives encoding and decoding. The
    /// derived strategy of so large an enum needs more stack than a test
    /// thread's 2 MiB in a debug build: it runs on a thread of its own.
    #[test]
    fn every_request_round_trips() {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(|| {
                let mut runner = proptest::test_runner::TestRunner::default();
                runner
                    .run(&any::<Request>(), |req| {
                        prop_assert_eq!(decode_frame::<Request>(&encode(&req)).unwrap(), req);
                        Ok(())
                    })
                    .unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    proptest! {

        #[test]
        fn every_response_round_trips(resp in any::<Response>()) {
            prop_assert_eq!(decode_frame::<Response>(&encode(&resp)).unwrap(), resp);
        }

        #[test]
        fn handshake_and_stream_headers_round_trip(
            hello in any::<crate::proto::Hello>(),
            welcome in any::<crate::proto::Welcome>(),
            incoming in any::<crate::proto::Incoming>(),
        ) {
            prop_assert_eq!(decode_frame::<crate::proto::Hello>(&encode(&hello)).unwrap(), hello);
            prop_assert_eq!(decode_frame::<crate::proto::Welcome>(&encode(&welcome)).unwrap(), welcome);
            prop_assert_eq!(decode_frame::<crate::proto::Incoming>(&encode(&incoming)).unwrap(), incoming);
        }

        /// A UDP socket's stream is a sequence of frames: each op and event
        /// survives it, back to back, and a split anywhere asks for more.
        #[test]
        fn udp_stream_frames_round_trip(
            ops in proptest::collection::vec(any::<crate::proto::UdpOp>(), 1..4),
            event in any::<crate::proto::UdpEvent>(),
        ) {
            let mut stream = Vec::new();
            for op in &ops {
                stream.extend_from_slice(&encode(op));
            }
            let mut rest = stream.as_slice();
            for op in &ops {
                let range = check(rest).unwrap().expect("whole frame");
                prop_assert_eq!(&decode::<crate::proto::UdpOp>(&rest[range.clone()]).unwrap(), op);
                rest = &rest[range.end..];
            }
            prop_assert!(rest.is_empty());
            let bytes = encode(&event);
            prop_assert_eq!(check(&bytes[..bytes.len() - 1]).unwrap(), None);
            prop_assert_eq!(decode_frame::<crate::proto::UdpEvent>(&bytes).unwrap(), event);
        }

        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = check(&bytes);
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Response>(&bytes);
            let _ = decode_frame::<Request>(&bytes);
        }
    }
}
