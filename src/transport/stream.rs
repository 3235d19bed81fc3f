//! Reading frames from QUIC streams: the one place that does.
//!
//! Owns the async side of framing: [`read_frame`] (the next frame of a
//! stream that carries a sequence of them, or of a stream whose frame is
//! followed by raw bytes) and [`read_sole_frame`] (a stream that holds
//! exactly one frame and then finishes), both failing with
//! [`ReadFrameError`]. The byte-level rules (header, limit, postcard) are
//! [`crate::proto::frame`]'s; this module must not parse bytes itself, and
//! says nothing about what a failure means to its caller (connection lost,
//! request rejected, ...): callers map [`ReadFrameError`] to their own
//! errors.

use quinn::{ReadError, ReadExactError, ReadToEndError};
use serde::de::DeserializeOwned;

use crate::proto::frame::{self, FrameError, MAX_FRAME};

/// Why a frame could not be read from a stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    /// The stream itself failed: reset by the peer, connection lost, ...
    #[error("stream read failed")]
    Read(#[source] ReadError),
    /// The stream finished inside a frame.
    #[error("the stream ended inside a frame")]
    Truncated,
    /// A frame (or, for [`read_sole_frame`], the stream) is longer than
    /// the reader accepts; nothing of it was buffered.
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    /// A stream read with [`read_sole_frame`] is longer than its limit.
    #[error("stream exceeds the limit of {limit} bytes")]
    StreamTooLong { limit: usize },
    /// The bytes are not one frame holding the expected message.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ReadFrameError {
    /// The connection-level cause, when the connection is what failed.
    pub fn connection_lost(&self) -> Option<&quinn::ConnectionError> {
        match self {
            Self::Read(ReadError::ConnectionLost(c)) => Some(c),
            _ => None,
        }
    }

    /// The peer's reset code, when the peer reset the stream.
    pub fn reset_code(&self) -> Option<quinn::VarInt> {
        match self {
            Self::Read(ReadError::Reset(code)) => Some(*code),
            _ => None,
        }
    }
}

/// Reads the next frame, of at most [`MAX_FRAME`] bytes, from a stream that
/// carries a sequence of them. `Ok(None)` when the stream ended cleanly
/// between frames. Never reads past the frame, so raw bytes may follow it.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<Option<T>, ReadFrameError> {
    read_frame_within(recv, MAX_FRAME).await
}

/// [`read_frame`] with a tighter bound on the body, `limit` (at most
/// [`MAX_FRAME`]), for frames that are always small.
pub async fn read_frame_within<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<Option<T>, ReadFrameError> {
    let limit = limit.min(MAX_FRAME);
    let mut header = [0u8; frame::HEADER];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(exact_failed(e)),
    }
    let len = frame::body_len(header);
    if len > limit {
        return Err(ReadFrameError::TooLarge { len, limit });
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(exact_failed)?;
    Ok(Some(frame::decode(&body)?))
}

/// Reads a stream that holds exactly one frame and then finishes (the
/// handshake, a call's response), reading at most `limit` bytes in all.
pub async fn read_sole_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<T, ReadFrameError> {
    let bytes = read_whole_stream(recv, limit).await?;
    Ok(frame::decode_frame(&bytes)?)
}

/// The bytes of a stream that holds one frame, not yet decoded (to decode
/// them more than one way: a `Hello`'s version first), at most `limit`.
pub async fn read_whole_stream(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<Vec<u8>, ReadFrameError> {
    recv.read_to_end(limit).await.map_err(|e| match e {
        ReadToEndError::Read(e) => ReadFrameError::Read(e),
        ReadToEndError::TooLong => ReadFrameError::StreamTooLong { limit },
    })
}

fn exact_failed(e: ReadExactError) -> ReadFrameError {
    match e {
        ReadExactError::FinishedEarly(_) => ReadFrameError::Truncated,
        ReadExactError::ReadError(e) => ReadFrameError::Read(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{ErrorChain, StreamKind, TransportError};

    #[test]
    fn a_transport_error_shows_which_stream_and_why() {
        let err = TransportError::Receive {
            stream: StreamKind::TcpConnect,
            source: ReadFrameError::TooLarge {
                len: 5000,
                limit: 1024,
            },
        };
        assert_eq!(
            ErrorChain(&err).to_string(),
            "protocol error: reading the TCP connect stream: frame of 5000 bytes exceeds the limit of 1024"
        );
        let err = TransportError::Receive {
            stream: StreamKind::Call,
            source: ReadFrameError::Frame(FrameError::TrailingBytes),
        };
        assert_eq!(
            ErrorChain(&err).to_string(),
            "protocol error: reading the request stream: malformed message: trailing bytes after frame"
        );
    }

    #[test]
    fn a_source_the_message_already_ends_with_is_not_repeated() {
        // quinn's ReadToEndError says its source itself.
        let err = ReadToEndError::Read(ReadError::Reset(quinn::VarInt::from_u32(1)));
        assert_eq!(
            ErrorChain(&err).to_string(),
            "read error: stream reset by peer: error 1"
        );
    }
}
