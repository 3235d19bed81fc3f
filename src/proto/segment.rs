//! The bytes of one `--net` TCP connection on its QUIC stream (default
//! mode): records of a 4-byte header and a payload. A data record carries
//! bytes of the stream; an urgent record carries the one urgent byte
//! (`send(MSG_OOB)`, tcp(7)) at its place in the stream, so the receiving
//! pump can send it again with `MSG_OOB` and the mark falls where the
//! sender's kernel put it.
//!
//! An end record says the sender's socket reached its end (the peer
//! program's `shutdown(SHUT_WR)` or close): the receiver shuts its socket's
//! sending side down, and the stream stays open, so the receiver's
//! acknowledgements of the other direction still come back on it.
//!
//! Two control records carry the send window of the other direction
//! (`crate::engine::sendwindow`): a window record, each pump's first (and
//! again whenever an adaptive window doubled or halved), says how much it
//! keeps unacknowledged toward its peer and how much it buffers for it; an acknowledgement says how many payload bytes (data
//! and urgent) the pump has written into its socket so far.
//!
//! Pure: the header and a [`Deframer`] that splits received bytes into
//! records; reading and writing the stream is the pump's
//! (`crate::transport::pump`).

/// The header's size: a little-endian `u32`, the payload's length with
/// [`URGENT`] set for an urgent record.
pub const HEADER: usize = 4;

/// The header bit of an urgent record.
const URGENT: u32 = 1 << 31;

/// The header bit of a control record; its whole header is one of the
/// constants below.
const CONTROL: u32 = 1 << 30;

/// The header of an acknowledgement: a little-endian `u64` follows.
const ACK: u32 = CONTROL | 8;

/// The header of a window record: two little-endian `u64`s follow.
const WINDOW: u32 = CONTROL | 16;

/// The header of an end record: the count of the stream's bytes before it
/// (headers included), a little-endian `u64`, follows.
const END: u32 = CONTROL | (1 << 29) | 8;

/// The longest control payload.
const MAX_CONTROL: usize = 16;

/// The largest data payload of one record.
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

/// The header of a data record of `len` bytes (at most [`MAX_PAYLOAD`]).
pub fn data_header(len: usize) -> [u8; HEADER] {
    let len = u32::try_from(len.min(MAX_PAYLOAD)).unwrap_or(0);
    len.to_le_bytes()
}

/// An urgent record: its header and the urgent byte.
pub fn urgent_record(byte: u8) -> [u8; HEADER + 1] {
    let [a, b, c, d] = (URGENT | 1).to_le_bytes();
    [a, b, c, d, byte]
}

/// An acknowledgement: `delivered` payload bytes are in the peer's socket.
pub fn ack_record(delivered: u64) -> [u8; HEADER + 8] {
    let mut r = [0u8; HEADER + 8];
    r[..HEADER].copy_from_slice(&ACK.to_le_bytes());
    r[HEADER..].copy_from_slice(&delivered.to_le_bytes());
    r
}

/// A window record: the sender keeps at most `send` payload bytes
/// unacknowledged toward its peer, and buffers up to `receive` of the
/// peer's.
pub fn window_record(send: u64, receive: u64) -> [u8; HEADER + 16] {
    let mut r = [0u8; HEADER + 16];
    r[..HEADER].copy_from_slice(&WINDOW.to_le_bytes());
    r[HEADER..HEADER + 8].copy_from_slice(&send.to_le_bytes());
    r[HEADER + 8..].copy_from_slice(&receive.to_le_bytes());
    r
}

/// An end record: the sender's socket ended after `sent` bytes of the
/// stream (headers included).
pub fn end_record(sent: u64) -> [u8; HEADER + 8] {
    let mut r = [0u8; HEADER + 8];
    r[..HEADER].copy_from_slice(&END.to_le_bytes());
    r[HEADER..].copy_from_slice(&sent.to_le_bytes());
    r
}

/// One piece of what came: stream bytes, the urgent byte, or a control
/// record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Data(&'a [u8]),
    Urgent(u8),
    /// The peer has written this many payload bytes into its socket.
    Delivered(u64),
    /// The peer's window record.
    Window {
        send: u64,
        receive: u64,
    },
    /// The peer's socket ended after this many bytes of the stream: no
    /// data follows, acknowledgements may.
    End(u64),
}

/// The stream held a header no pump writes: the connection is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed TCP stream record header {0:#x}")]
pub struct Malformed(pub u32);

/// Where the receiver is within the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `have` header bytes of the next record are in `header`.
    Header { header: [u8; HEADER], have: usize },
    /// `left` bytes of a data record's payload are still to come.
    Data { left: usize },
    /// The urgent byte is next.
    Urgent,
    /// `have` of the `len` payload bytes of the control record `header`.
    Control {
        header: u32,
        payload: [u8; MAX_CONTROL],
        len: usize,
        have: usize,
    },
}

/// Splits the received stream into [`Piece`]s, however the reads cut it.
#[derive(Debug, Clone)]
pub struct Deframer {
    state: State,
}

impl Default for Deframer {
    fn default() -> Self {
        Self {
            state: State::Header {
                header: [0; HEADER],
                have: 0,
            },
        }
    }
}

impl Deframer {
    /// Takes what it can from the front of `input`: returns the piece it
    /// completed (if any) and the bytes it did not look at. Call again with
    /// the rest until it is empty.
    pub fn next<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(Option<Piece<'a>>, &'a [u8]), Malformed> {
        match self.state {
            State::Header { mut header, have } => {
                let take = (HEADER - have).min(input.len());
                header[have..have + take].copy_from_slice(&input[..take]);
                let rest = &input[take..];
                if have + take < HEADER {
                    self.state = State::Header {
                        header,
                        have: have + take,
                    };
                    return Ok((None, rest));
                }
                let word = u32::from_le_bytes(header);
                self.state = match word {
                    w if w == URGENT | 1 => State::Urgent,
                    ACK | WINDOW | END => State::Control {
                        header: word,
                        payload: [0; MAX_CONTROL],
                        len: usize::try_from(word & 0xff).map_err(|_| Malformed(word))?,
                        have: 0,
                    },
                    w if w & (URGENT | CONTROL) != 0 || w == 0 => return Err(Malformed(word)),
                    w => State::Data {
                        left: usize::try_from(w).map_err(|_| Malformed(word))?,
                    },
                };
                Ok((None, rest))
            }
            State::Data { left } => {
                let take = left.min(input.len());
                let (data, rest) = input.split_at(take);
                self.state = if take == left {
                    Self::default().state
                } else {
                    State::Data { left: left - take }
                };
                Ok(((!data.is_empty()).then_some(Piece::Data(data)), rest))
            }
            State::Urgent => match input.split_first() {
                Some((&byte, rest)) => {
                    self.state = Self::default().state;
                    Ok((Some(Piece::Urgent(byte)), rest))
                }
                None => Ok((None, input)),
            },
            State::Control {
                header,
                mut payload,
                len,
                have,
            } => {
                let take = (len - have).min(input.len());
                payload[have..have + take].copy_from_slice(&input[..take]);
                let rest = &input[take..];
                if have + take < len {
                    self.state = State::Control {
                        header,
                        payload,
                        len,
                        have: have + take,
                    };
                    return Ok((None, rest));
                }
                self.state = Self::default().state;
                let word = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&payload[i * 8..i * 8 + 8]);
                    u64::from_le_bytes(b)
                };
                let piece = match header {
                    ACK => Piece::Delivered(word(0)),
                    END => Piece::End(word(0)),
                    _ => Piece::Window {
                        send: word(0),
                        receive: word(1),
                    },
                };
                Ok((Some(piece), rest))
            }
        }
    }

    /// Whether the stream may end here: between records.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header { have: 0, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every piece of `input`, fed in chunks of `cut` bytes; data pieces
    /// joined where a cut split them.
    fn pieces(input: &[u8], cut: usize) -> Result<Vec<(bool, Vec<u8>)>, Malformed> {
        let mut d = Deframer::default();
        let mut out: Vec<(bool, Vec<u8>)> = Vec::new();
        for chunk in input.chunks(cut) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let (piece, r) = d.next(rest)?;
                rest = r;
                match piece {
                    Some(Piece::Data(b)) => match out.last_mut() {
                        Some((false, v)) => v.extend_from_slice(b),
                        _ => out.push((false, b.to_vec())),
                    },
                    Some(Piece::Urgent(b)) => out.push((true, vec![b])),
                    Some(Piece::Delivered(_) | Piece::Window { .. } | Piece::End(_)) | None => {}
                }
            }
        }
        assert!(d.at_boundary(), "input ends within a record");
        Ok(out)
    }

    fn record(data: &[u8]) -> Vec<u8> {
        let mut v = data_header(data.len()).to_vec();
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn data_and_urgent_records_come_back_however_the_reads_cut_them() {
        let mut stream = record(b"abc");
        stream.extend_from_slice(&urgent_record(b'!'));
        stream.extend(record(b"def"));
        stream.extend(record(b"gh"));
        for cut in 1..=stream.len() {
            assert_eq!(
                pieces(&stream, cut).expect("well formed"),
                vec![
                    (false, b"abc".to_vec()),
                    (true, b"!".to_vec()),
                    (false, b"defgh".to_vec())
                ],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn an_urgent_record_at_the_start_and_two_in_a_row() {
        let mut stream = urgent_record(1).to_vec();
        stream.extend_from_slice(&urgent_record(2));
        assert_eq!(
            pieces(&stream, 3).expect("well formed"),
            vec![(true, vec![1]), (true, vec![2])]
        );
    }

    #[test]
    fn headers_no_pump_writes_are_refused() {
        // An empty data record, an urgent record of two bytes.
        assert_eq!(pieces(&[0, 0, 0, 0], 4), Err(Malformed(0)));
        let two = (URGENT | 2).to_le_bytes();
        assert_eq!(pieces(&two, 4), Err(Malformed(URGENT | 2)));
    }

    #[test]
    fn a_stream_cut_inside_a_record_is_not_at_a_boundary() {
        let mut d = Deframer::default();
        let stream = record(b"abcd");
        let (_, rest) = d.next(&stream[..6]).expect("header");
        let (piece, _) = d.next(rest).expect("data");
        assert_eq!(piece, Some(Piece::Data(b"ab")));
        assert!(!d.at_boundary());
    }

    /// Every piece of `input` fed `cut` bytes at a time, as owned values.
    fn all_pieces(input: &[u8], cut: usize) -> Vec<String> {
        let mut d = Deframer::default();
        let mut out = Vec::new();
        for chunk in input.chunks(cut) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let (piece, r) = d.next(rest).expect("well formed");
                rest = r;
                if let Some(p) = piece {
                    out.push(format!("{p:?}"));
                }
            }
        }
        assert!(d.at_boundary(), "input ends within a record");
        out
    }

    #[test]
    fn control_records_come_back_between_data_however_the_reads_cut_them() {
        let mut stream = window_record(256 * 1024, 8 << 20).to_vec();
        stream.extend(record(b"a"));
        stream.extend_from_slice(&ack_record(0x0102_0304_0506_0708));
        stream.extend_from_slice(&urgent_record(b'!'));
        stream.extend_from_slice(&ack_record(u64::MAX));
        stream.extend_from_slice(&end_record(2));
        stream.extend_from_slice(&ack_record(7));
        let want = [
            "Window { send: 262144, receive: 8388608 }",
            "Data([97])",
            "Delivered(72623859790382856)",
            "Urgent(33)",
            "Delivered(18446744073709551615)",
            "End(2)",
            "Delivered(7)",
        ];
        for cut in 1..=stream.len() {
            assert_eq!(all_pieces(&stream, cut), want, "cut {cut}");
        }
    }

    #[test]
    fn control_headers_of_another_length_are_refused() {
        for word in [
            CONTROL | 4,
            CONTROL | 9,
            CONTROL,
            CONTROL | 1 << 20,
            CONTROL | (1 << 29) | 16,
        ] {
            assert_eq!(pieces(&word.to_le_bytes(), 4), Err(Malformed(word)));
        }
    }

    #[test]
    fn large_payloads_are_capped_in_the_header() {
        assert_eq!(
            u32::from_le_bytes(data_header(usize::MAX)),
            u32::try_from(MAX_PAYLOAD).expect("fits")
        );
    }
}
