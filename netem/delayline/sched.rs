//! Decides when each packet leaves the emulated link, and whether it leaves at all.
//!
//! Pure: time is a plain `u64` nanosecond count passed in by the caller, so every rule
//! here is unit-tested on plain values. The model, per direction:
//!
//! 1. random loss (seeded, reproducible), applied on arrival like netem does, so a lost
//!    packet costs no link time;
//! 2. a bottleneck queue with tail drop, counting packets whose serialization has not
//!    finished (the one on the wire included), limited in packets and/or bytes;
//! 3. a link clock: with a rate cap a packet occupies the link for `len * 8 / rate`
//!    seconds, starting when the previous one finished (no burst credit after idling,
//!    unlike a token bucket with a large burst);
//! 4. a fixed propagation delay added after serialization.
//!
//! Departure times never decrease, so a FIFO of departures keeps packet order.

use std::collections::VecDeque;
use std::num::NonZeroU64;

const NANOS_PER_SEC: u128 = 1_000_000_000;
/// Loss probability unit: parts per million.
pub const PPM: u32 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkParams {
    /// One-way propagation delay.
    pub delay_ns: u64,
    /// Serialization rate in bits per second; `None` means infinitely fast.
    pub rate_bps: Option<NonZeroU64>,
    /// Tail-drop limit on queued packets; `None` means unlimited.
    pub queue_pkts: Option<usize>,
    /// Tail-drop limit on queued bytes; `None` means unlimited.
    pub queue_bytes: Option<usize>,
    /// Loss probability in parts per million (`PPM` drops everything).
    pub loss_ppm: u32,
    /// Seed of the loss generator; the same seed gives the same drop pattern.
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the packet to the far side at this time.
    Send { at_ns: u64 },
    /// Dropped by random loss.
    Lost,
    /// Dropped because the bottleneck queue is full.
    QueueFull,
}

/// splitmix64: tiny, seedable, and good enough to decide drops; not for cryptography.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[derive(Debug, Clone)]
pub struct Link {
    params: LinkParams,
    rng: SplitMix64,
    /// When the link finishes serializing the last accepted packet.
    free_at_ns: u64,
    /// `(serialization end, length)` of accepted packets, oldest first.
    backlog: VecDeque<(u64, usize)>,
    backlog_bytes: usize,
    last_departure_ns: u64,
}

impl Link {
    pub fn new(params: LinkParams) -> Self {
        let rng = SplitMix64(params.seed);
        Self {
            params,
            rng,
            free_at_ns: 0,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            last_departure_ns: 0,
        }
    }

    /// Time the link needs to put `len` bytes on the wire.
    pub fn serialization_ns(&self, len: usize) -> u64 {
        let Some(rate) = self.params.rate_bps else {
            return 0;
        };
        let bits = u128::try_from(len).unwrap_or(u128::MAX).saturating_mul(8);
        // Round up so that many small packets cannot beat the rate through truncation.
        let ns = bits
            .saturating_mul(NANOS_PER_SEC)
            .div_ceil(u128::from(rate.get()));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// A packet of `len` bytes arrived at `now_ns`: decide its fate.
    pub fn offer(&mut self, now_ns: u64, len: usize) -> Verdict {
        if self.params.loss_ppm > 0 && self.draw_loss() {
            return Verdict::Lost;
        }
        while let Some(&(end, plen)) = self.backlog.front() {
            if end > now_ns {
                break;
            }
            self.backlog.pop_front();
            self.backlog_bytes -= plen;
        }
        if self.queue_full(len) {
            return Verdict::QueueFull;
        }
        let start = now_ns.max(self.free_at_ns);
        let end = start.saturating_add(self.serialization_ns(len));
        self.free_at_ns = end;
        if end > now_ns {
            self.backlog.push_back((end, len));
            self.backlog_bytes += len;
        }
        // The max() only matters if a caller's clock went backwards; order is a promise.
        let at_ns = end
            .saturating_add(self.params.delay_ns)
            .max(self.last_departure_ns);
        self.last_departure_ns = at_ns;
        Verdict::Send { at_ns }
    }

    fn draw_loss(&mut self) -> bool {
        // Modulo bias is below 1e-13 for a 1e6 modulus: irrelevant here.
        self.rng.next() % u64::from(PPM) < u64::from(self.params.loss_ppm)
    }

    fn queue_full(&self, len: usize) -> bool {
        // An empty queue always takes a packet, so a byte limit below one MTU cannot
        // turn the link into a black hole.
        if self.backlog.is_empty() {
            return false;
        }
        let pkts_full = self
            .params
            .queue_pkts
            .is_some_and(|max| self.backlog.len() >= max);
        let bytes_full = self
            .params
            .queue_bytes
            .is_some_and(|max| self.backlog_bytes.saturating_add(len) > max);
        pkts_full || bytes_full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn params() -> LinkParams {
        LinkParams {
            delay_ns: 10 * MS,
            rate_bps: None,
            queue_pkts: None,
            queue_bytes: None,
            loss_ppm: 0,
            seed: 1,
        }
    }

    fn at(v: Verdict) -> u64 {
        match v {
            Verdict::Send { at_ns } => at_ns,
            other => panic!("expected Send, got {other:?}"),
        }
    }

    #[test]
    fn fixed_delay_without_rate() {
        let mut link = Link::new(params());
        assert_eq!(at(link.offer(5, 1500)), 5 + 10 * MS);
        assert_eq!(at(link.offer(5, 40)), 5 + 10 * MS);
        assert_eq!(at(link.offer(7 * MS, 40)), 17 * MS);
    }

    #[test]
    fn zero_delay_forwards_immediately() {
        let mut link = Link::new(LinkParams {
            delay_ns: 0,
            ..params()
        });
        assert_eq!(at(link.offer(123, 1500)), 123);
    }

    #[test]
    fn rate_spaces_back_to_back_packets() {
        // 1250 bytes at 10 Mbit/s take exactly 1 ms.
        let mut link = Link::new(LinkParams {
            rate_bps: NonZeroU64::new(10_000_000),
            ..params()
        });
        assert_eq!(link.serialization_ns(1250), MS);
        assert_eq!(at(link.offer(0, 1250)), 11 * MS);
        assert_eq!(at(link.offer(0, 1250)), 12 * MS);
        assert_eq!(at(link.offer(MS / 2, 1250)), 13 * MS);
    }

    #[test]
    fn idle_link_gives_no_burst_credit() {
        let mut link = Link::new(LinkParams {
            rate_bps: NonZeroU64::new(10_000_000),
            ..params()
        });
        at(link.offer(0, 1250));
        // Long idle period: the next packet still pays its own serialization time.
        assert_eq!(at(link.offer(100 * MS, 1250)), 111 * MS);
        assert_eq!(at(link.offer(100 * MS, 1250)), 112 * MS);
    }

    #[test]
    fn serialization_rounds_up() {
        let link = Link::new(LinkParams {
            rate_bps: NonZeroU64::new(3),
            ..params()
        });
        // 8 bits at 3 bit/s = 2.666.. s.
        assert_eq!(link.serialization_ns(1), 2_666_666_667);
    }

    #[test]
    fn packet_queue_limit_tail_drops_and_recovers() {
        let mut link = Link::new(LinkParams {
            rate_bps: NonZeroU64::new(10_000_000),
            queue_pkts: Some(3),
            ..params()
        });
        for _ in 0..3 {
            at(link.offer(0, 1250));
        }
        assert_eq!(link.offer(0, 1250), Verdict::QueueFull);
        assert_eq!(link.offer(MS - 1, 40), Verdict::QueueFull);
        // The first packet finished serializing at 1 ms: one slot is free again.
        assert_eq!(at(link.offer(MS, 1250)), 14 * MS);
        assert_eq!(link.offer(MS, 40), Verdict::QueueFull);
    }

    #[test]
    fn byte_queue_limit() {
        let mut link = Link::new(LinkParams {
            rate_bps: NonZeroU64::new(10_000_000),
            queue_bytes: Some(3000),
            ..params()
        });
        at(link.offer(0, 1500));
        at(link.offer(0, 1500));
        assert_eq!(link.offer(0, 1), Verdict::QueueFull);
    }

    #[test]
    fn empty_queue_accepts_packet_above_byte_limit() {
        let mut link = Link::new(LinkParams {
            rate_bps: NonZeroU64::new(10_000_000),
            queue_bytes: Some(100),
            ..params()
        });
        at(link.offer(0, 1500));
        assert_eq!(link.offer(0, 1500), Verdict::QueueFull);
    }

    #[test]
    fn queue_limit_without_rate_never_binds() {
        let mut link = Link::new(LinkParams {
            queue_pkts: Some(1),
            ..params()
        });
        for _ in 0..100 {
            at(link.offer(0, 1500));
        }
    }

    #[test]
    fn loss_extremes() {
        let mut none = Link::new(params());
        let mut all = Link::new(LinkParams {
            loss_ppm: PPM,
            ..params()
        });
        for i in 0..10_000 {
            at(none.offer(i, 100));
            assert_eq!(all.offer(i, 100), Verdict::Lost);
        }
    }

    fn drop_pattern(seed: u64) -> Vec<bool> {
        let mut link = Link::new(LinkParams {
            loss_ppm: PPM / 4,
            seed,
            ..params()
        });
        (0..10_000)
            .map(|i| link.offer(i, 100) == Verdict::Lost)
            .collect()
    }

    #[test]
    fn loss_is_seeded_and_roughly_right() {
        let a = drop_pattern(42);
        assert_eq!(a, drop_pattern(42));
        assert_ne!(a, drop_pattern(43));
        let lost = a.iter().filter(|&&l| l).count();
        assert!((2300..2700).contains(&lost), "lost {lost} of 10000 at 25%");
    }

    #[test]
    fn lost_packets_use_no_link_time() {
        let mut link = Link::new(LinkParams {
            rate_bps: NonZeroU64::new(10_000_000),
            loss_ppm: PPM / 2,
            ..params()
        });
        let mut sent = 0;
        for _ in 0..100 {
            if let Verdict::Send { at_ns } = link.offer(0, 1250) {
                sent += 1;
                assert_eq!(at_ns, 10 * MS + sent * MS);
            }
        }
        assert!(sent > 0);
    }

    #[test]
    fn departures_never_decrease() {
        let mut link = Link::new(params());
        let first = at(link.offer(50 * MS, 1000));
        // A clock stepping backwards must not let a later packet overtake.
        let second = at(link.offer(MS, 40));
        assert!(second >= first);
    }
}
