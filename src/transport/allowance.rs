//! How many streams a connection lets its peer have open at once.
//!
//! quinn sets up state for every stream the peer is allowed to open as soon
//! as it is allowed (`quinn-proto`'s `StreamsState::new` and
//! `ensure_remote_streams`): a fixed allowance of 65,536 cost about 3 MB and
//! 8 ms per connection on each side, measured on every run's start. So a
//! connection starts with [`INITIAL_STREAMS`] and the side that accepts
//! doubles the allowance, up to [`MAX_CONCURRENT_STREAMS`], whenever the
//! streams it counts reach three quarters of it.
//!
//! The rule ([`raised_allowance`]) is pure; [`StreamAllowance`] applies it to
//! one connection and must be the only thing that changes that
//! connection's allowance.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// The streams a peer may have open at once when a connection starts: a
/// run's first requests and connections, at a cost of kilobytes.
pub const INITIAL_STREAMS: u32 = 1 << 10;

/// The most streams one connection may have open at once. Every tracee
/// thread blocked in a forwarded call holds one, and every remote TCP
/// connection or UDP socket of `--net` holds one for its life, so this
/// bounds a run's concurrent remote connections: far above what a program
/// usually reaches with its file descriptor limit.
pub const MAX_CONCURRENT_STREAMS: u32 = 1 << 16;

/// The allowance to give once `counted` streams are counted under `limit`:
/// twice `limit` (at most [`MAX_CONCURRENT_STREAMS`]) when `counted` has
/// reached three quarters of it, else `None` (keep it).
///
/// Raising at three quarters, not at the limit, means a peer that opens
/// streams as fast as they are accepted never waits for credit.
pub fn raised_allowance(limit: u32, counted: u32) -> Option<u32> {
    let threshold = limit - limit / 4;
    if counted < threshold || limit >= MAX_CONCURRENT_STREAMS {
        return None;
    }
    Some(limit.saturating_mul(2).min(MAX_CONCURRENT_STREAMS))
}

/// One connection's allowance of peer-opened streams, and the streams
/// counted against it.
#[derive(Debug)]
pub struct StreamAllowance {
    conn: quinn::Connection,
    limit: AtomicU32,
    counted: Arc<AtomicU32>,
}

impl StreamAllowance {
    /// The allowance of `conn`, which was configured with
    /// [`INITIAL_STREAMS`] (see `transport_config`).
    pub fn new(conn: quinn::Connection) -> Self {
        Self {
            conn,
            limit: AtomicU32::new(INITIAL_STREAMS),
            counted: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Counts an accepted stream until the returned guard is dropped (when
    /// the stream's work ends), raising the allowance if it is needed.
    pub fn open(&self) -> OpenStream {
        self.count();
        OpenStream {
            counted: self.counted.clone(),
        }
    }

    /// Counts an accepted stream for the connection's life: for streams
    /// whose end the accepting side does not follow. Every such stream
    /// raises the allowance sooner than needed, never later.
    pub fn count(&self) {
        let counted = self.counted.fetch_add(1, Ordering::AcqRel) + 1;
        let limit = self.limit.load(Ordering::Acquire);
        if let Some(raised) = raised_allowance(limit, counted)
            && self
                .limit
                .compare_exchange(limit, raised, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // Lost races leave the allowance to the winner, which raised it
            // at least as far.
            self.conn
                .set_max_concurrent_bi_streams(quinn::VarInt::from_u32(raised));
        }
    }
}

/// A stream counted against its connection's allowance until dropped.
#[derive(Debug)]
pub struct OpenStream {
    counted: Arc<AtomicU32>,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.counted.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_doubles_at_three_quarters() {
        assert_eq!(raised_allowance(1024, 0), None);
        assert_eq!(raised_allowance(1024, 767), None);
        assert_eq!(raised_allowance(1024, 768), Some(2048));
        assert_eq!(raised_allowance(2048, 1536), Some(4096));
    }

    #[test]
    fn the_allowance_stops_at_the_maximum() {
        assert_eq!(
            raised_allowance(MAX_CONCURRENT_STREAMS / 2 + 1, MAX_CONCURRENT_STREAMS),
            Some(MAX_CONCURRENT_STREAMS)
        );
        assert_eq!(
            raised_allowance(MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS),
            None
        );
    }

    #[test]
    fn every_count_the_old_allowance_reached_is_under_the_new_one() {
        // Raised whenever needed: walking `counted` up one at a time, the
        // allowance always stays above what is counted.
        let mut limit = INITIAL_STREAMS;
        for counted in 0..=MAX_CONCURRENT_STREAMS {
            if let Some(raised) = raised_allowance(limit, counted) {
                assert!(raised > limit);
                limit = raised;
            }
            assert!(counted < limit || limit == MAX_CONCURRENT_STREAMS);
        }
        assert_eq!(limit, MAX_CONCURRENT_STREAMS);
    }
}
