//! The state a pump's two directions share for the send window
//! ([`crate::engine::sendwindow`]), and the peer's bytes waiting for room
//! in the socket. The downstream keeps reading its stream while its socket
//! takes nothing (the peer's acknowledgements may be behind those bytes),
//! so what it read waits here; the peer's window bounds how much.
//!
//! Must not read or write the stream: the pump ([`super::pump`]) does.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use super::urgent::send_urgent;
use crate::engine::sendwindow::{SendWindow, Windows};
use crate::proto::segment::Piece;

/// The most the upstream reads from its socket at once.
const BUFFER: usize = super::pump::BUFFER;

/// One connection's send window, shared by the pump's two directions: the
/// downstream counts what it delivers and takes in the peer's records, the
/// upstream writes the acknowledgements and reads its socket only while
/// there is room.
pub(super) struct Flow {
    window: Mutex<SendWindow>,
    /// Wakes the upstream: room opened, or an acknowledgement is due.
    pub(super) wake: Notify,
    /// See [`Flow::peer_data_over`].
    peer_data_over: std::sync::atomic::AtomicBool,
}

impl Flow {
    /// `own.send` is our limit: with none (`u64::MAX`, the server's), the
    /// peer's buffer bounds the window; a finite one (rscq's
    /// `--net-send-window`) is the most the measured window grows to
    /// ([`SendWindow::adaptive`]).
    pub(super) fn new(own: Windows) -> Self {
        let window = if own.send == u64::MAX {
            SendWindow::new(own)
        } else {
            SendWindow::adaptive(own)
        };
        Self {
            window: Mutex::new(window),
            wake: Notify::new(),
            peer_data_over: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, SendWindow> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How much the upstream may read now, at most one buffer.
    pub(super) fn room(&self) -> usize {
        let room = self.lock().room();
        usize::try_from(room).map_or(BUFFER, |r| r.min(BUFFER))
    }

    pub(super) fn taken(&self, n: usize) {
        self.lock()
            .on_taken(u64::try_from(n).unwrap_or(u64::MAX), now());
    }

    /// `n` of the peer's bytes went into the socket.
    pub(super) fn delivered(&self, n: usize) {
        if self
            .lock()
            .on_delivered(u64::try_from(n).unwrap_or(u64::MAX))
        {
            self.wake.notify_one();
        }
    }

    /// A record of the peer's that changes the window.
    pub(super) fn on_peer_record(&self, piece: Piece<'_>) {
        let mut window = self.lock();
        match piece {
            Piece::Delivered(n) => window.on_acknowledged(n, now()),
            Piece::Window { send, receive } => {
                window.on_peer_windows(Windows { send, receive });
            }
            Piece::Data(_) | Piece::Urgent(_) | Piece::End(_) => return,
        }
        drop(window);
        self.wake.notify_one();
    }

    /// The peer's bytes are all in the socket and it sends no more: the
    /// last acknowledgement goes now.
    pub(super) fn acknowledge_everything(&self) {
        if self.lock().acknowledge_everything() {
            self.wake.notify_one();
        }
    }

    /// Whether the peer has written everything we sent into its socket.
    pub(super) fn all_acknowledged(&self) -> bool {
        self.lock().all_acknowledged()
    }

    /// The peer finished its side: it acknowledges nothing more.
    pub(super) fn peer_finished(&self) {
        self.lock().on_peer_finished();
        self.peer_data_over();
    }

    /// The peer sends no more data (its end record, its finish, or the
    /// downstream is over): nothing more needs acknowledging, so an
    /// upstream past its own end may finish the stream.
    pub(super) fn peer_data_over(&self) {
        self.peer_data_over
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }

    pub(super) fn is_peer_data_over(&self) -> bool {
        self.peer_data_over
            .load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The send window's clock (tokio's, so that tests with a paused clock
/// see the same time as the pump's timers).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The peer's bytes that the socket has not taken yet, in order.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pieces: VecDeque<Held>,
    /// Payload bytes held.
    pub(super) bytes: u64,
}

/// One piece of [`Pending`], as it will go into the socket.
#[derive(Debug)]
pub(super) enum Held {
    /// Data, of which the first `usize` bytes went already.
    Data(Vec<u8>, usize),
    Urgent(u8),
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    pub(super) fn push(&mut self, piece: Held) {
        let len = match &piece {
            Held::Data(data, done) => data.len() - done,
            Held::Urgent(_) => 1,
        };
        self.bytes += u64::try_from(len).unwrap_or(u64::MAX);
        self.pieces.push_back(piece);
    }

    /// `n` payload bytes of the front piece went into the socket.
    pub(super) fn advance(&mut self, n: usize) {
        self.bytes = self
            .bytes
            .saturating_sub(u64::try_from(n).unwrap_or(u64::MAX));
        let done = match self.pieces.front_mut() {
            Some(Held::Data(data, done)) => {
                *done += n;
                *done >= data.len()
            }
            Some(Held::Urgent(_)) => true,
            None => false,
        };
        if done {
            self.pieces.pop_front();
        }
    }

    pub(super) fn clear(&mut self) {
        self.pieces.clear();
        self.bytes = 0;
    }
}

/// Writes what it can of the front piece into the socket, waiting for
/// room: how many payload bytes went.
pub(super) async fn write_front(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    pending: &Pending,
) -> std::io::Result<usize> {
    match pending.pieces.front() {
        Some(Held::Data(data, done)) => match wr.write(&data[*done..]).await? {
            0 => Err(std::io::ErrorKind::WriteZero.into()),
            n => Ok(n),
        },
        Some(Held::Urgent(byte)) => send_urgent(wr.as_ref(), *byte).await.map(|()| 1),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_bytes_count_what_is_left_of_each_piece() {
        let mut p = Pending::default();
        assert!(p.is_empty());
        p.push(Held::Data(b"abcdef".to_vec(), 2));
        p.push(Held::Urgent(b'!'));
        p.push(Held::Data(b"gh".to_vec(), 0));
        assert_eq!(p.bytes, 7);
        p.advance(3);
        assert_eq!(p.bytes, 4);
        assert!(matches!(p.pieces.front(), Some(Held::Data(_, 5))));
        p.advance(1);
        assert!(matches!(p.pieces.front(), Some(Held::Urgent(b'!'))));
        p.advance(1);
        assert_eq!(p.bytes, 2);
        p.advance(2);
        assert!(p.is_empty());
        assert_eq!(p.bytes, 0);
        p.push(Held::Urgent(1));
        p.clear();
        assert!(p.is_empty());
        assert_eq!(p.bytes, 0);
    }
}
