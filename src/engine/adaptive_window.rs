//! The adaptive send window of one `--net` TCP connection: about twice the
//! bandwidth-delay product the connection measures, as TCP's BBR estimates
//! it, between a floor and the configured maximum (`--net-send-window`).
//!
//! A fixed window has to choose between upload speed and backpressure: it
//! caps throughput at window/RTT, and whatever it holds beyond what the link
//! needs is bytes a program could send to a peer that stopped reading
//! before its send blocks (or its timeout fires). Sized from measurement,
//! the window stays a few hundred KiB on loopback-like links and grows to
//! the link's bandwidth-delay product over real round trips.
//!
//! Measurement: each batch of bytes sent remembers when it went and how much
//! had been acknowledged then; when an acknowledgement covers it, the time
//! since it went is a round-trip sample (kept min-filtered), and the bytes
//! acknowledged since it went over the time since the acknowledgement state
//! it saw is a delivery-rate sample (kept max-filtered), as BBR's rate
//! samples. While the window is the limit, a round trip delivers the whole
//! window, so the next window is twice as large: growth from the floor
//! doubles per round trip. A peer that stops reading stops acknowledging, so
//! no sample comes and the window does not grow.
//!
//! Pure: counts and instants go in (the caller reads the clock), the window
//! comes out; must not read the clock or touch a socket or a stream.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many times the measured bandwidth-delay product the window is: one
/// for the bytes on the way, one so the acknowledgements' batching (a
/// quarter of the window each) and a growing link never starve it.
const GAIN: u64 = 2;

/// How long a minimum round trip is trusted: a route or a load that changed
/// for good shows up within this.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);

/// How many minimum round trips a maximum delivery rate is trusted, as
/// BBR's bandwidth filter; then the newest sample replaces it.
const RATE_ROUNDS: u32 = 10;

/// The least time a maximum delivery rate is trusted, so that a loopback
/// round trip of microseconds does not forget it between two bursts.
const MIN_RATE_WINDOW: Duration = Duration::from_millis(100);

/// The most send batches remembered; past it, new bytes join the newest
/// batch (coarser samples, bounded memory).
const MAX_BATCHES: usize = 1024;

/// A batch of bytes sent at one instant.
#[derive(Debug, Clone, Copy)]
struct Batch {
    /// The cumulative count of bytes sent, this batch included.
    end: u64,
    sent_at: Instant,
    /// What was acknowledged when it went, and when that acknowledgement
    /// came (or when sending resumed after everything was acknowledged).
    acked_then: u64,
    acked_at: Instant,
}

/// A filtered sample and when it was taken.
#[derive(Debug, Clone, Copy)]
struct Sample<T> {
    value: T,
    at: Instant,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct AdaptiveWindow {
    floor: u64,
    max: u64,
    /// Bytes sent, cumulative.
    sent: u64,
    /// Bytes acknowledged, cumulative.
    acked: u64,
    /// When `acked` last grew, or sending resumed with nothing in flight.
    acked_at: Option<Instant>,
    batches: VecDeque<Batch>,
    min_rtt: Option<Sample<Duration>>,
    /// Bytes per second.
    max_rate: Option<Sample<u64>>,
}

impl AdaptiveWindow {
    /// A window between `floor` and `max` (`max` below `floor` counts as
    /// `floor`); it starts at `floor`.
    pub fn new(floor: u64, max: u64) -> Self {
        let floor = floor.max(1);
        Self {
            floor,
            max: max.max(floor),
            sent: 0,
            acked: 0,
            acked_at: None,
            batches: VecDeque::new(),
            min_rtt: None,
            max_rate: None,
        }
    }

    /// The most bytes that may be unacknowledged now.
    pub fn window(&self) -> u64 {
        let (Some(rtt), Some(rate)) = (self.min_rtt, self.max_rate) else {
            return self.floor;
        };
        let bdp = u128::from(rate.value) * rtt.value.as_nanos() / 1_000_000_000;
        let window = u64::try_from(bdp.saturating_mul(u128::from(GAIN))).unwrap_or(u64::MAX);
        window.clamp(self.floor, self.max)
    }

    /// Bytes sent and not acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.sent - self.acked
    }

    /// The measured minimum round trip, once there is one.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.map(|s| s.value)
    }

    /// The measured delivery rate in bytes per second, once there is one.
    pub fn delivery_rate(&self) -> Option<u64> {
        self.max_rate.map(|s| s.value)
    }

    /// `n` bytes went at `now`.
    pub fn on_sent(&mut self, n: u64, now: Instant) {
        if n == 0 {
            return;
        }
        // Sending resumes after an idle spell: the rate is measured from
        // now, not across the idle time.
        if self.in_flight() == 0 {
            self.acked_at = Some(now);
        }
        self.sent = self.sent.saturating_add(n);
        if self.batches.len() >= MAX_BATCHES
            && let Some(last) = self.batches.back_mut()
        {
            last.end = self.sent;
            return;
        }
        self.batches.push_back(Batch {
            end: self.sent,
            sent_at: now,
            acked_then: self.acked,
            acked_at: self.acked_at.unwrap_or(now),
        });
    }

    /// The peer acknowledged `total` bytes (cumulative) at `now`. An older
    /// count changes nothing; one beyond what was sent counts as everything.
    pub fn on_acknowledged(&mut self, total: u64, now: Instant) {
        let total = total.min(self.sent);
        if total <= self.acked {
            return;
        }
        let mut covered = None;
        while let Some(batch) = self.batches.front().copied() {
            if batch.end > total {
                break;
            }
            covered = Some(batch);
            self.batches.pop_front();
        }
        self.acked = total;
        self.acked_at = Some(now);
        if let Some(batch) = covered {
            self.on_sample(batch, total, now);
        }
    }

    /// Takes the round trip and the delivery rate `batch` measured.
    fn on_sample(&mut self, batch: Batch, total: u64, now: Instant) {
        let rtt = now.saturating_duration_since(batch.sent_at);
        if self
            .min_rtt
            .is_none_or(|m| rtt <= m.value || now.saturating_duration_since(m.at) > MIN_RTT_WINDOW)
        {
            self.min_rtt = Some(Sample {
                value: rtt,
                at: now,
            });
        }
        let elapsed = now.saturating_duration_since(batch.acked_at);
        if elapsed.is_zero() {
            return;
        }
        let bytes = u128::from(total - batch.acked_then);
        let rate = u64::try_from(bytes * 1_000_000_000 / elapsed.as_nanos()).unwrap_or(u64::MAX);
        let trusted = self.min_rtt.map_or(MIN_RATE_WINDOW, |m| {
            (m.value * RATE_ROUNDS).max(MIN_RATE_WINDOW)
        });
        if self
            .max_rate
            .is_none_or(|m| rate >= m.value || now.saturating_duration_since(m.at) > trusted)
        {
            self.max_rate = Some(Sample {
                value: rate,
                at: now,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOOR: u64 = 64 * 1024;
    const MAX: u64 = 16 << 20;

    /// A sender that keeps its window full over a link of `rate` bytes per
    /// second and round trip `rtt`, for `rounds` round trips: the link
    /// passes `rate` bytes per second, the receiver acknowledges each
    /// quarter of the window that came through, and the acknowledgement
    /// arrives a round trip later; while `reading(round)` is false the
    /// peer reads nothing, so nothing comes through. Returns the windows
    /// after each round.
    fn run(rate: u64, rtt: Duration, rounds: u32, reading: impl Fn(u32) -> bool) -> Vec<u64> {
        const STEPS: u32 = 64;
        let step = rtt / STEPS;
        let per_step = u64::try_from(u128::from(rate) * step.as_nanos() / 1_000_000_000).unwrap();
        let mut w = AdaptiveWindow::new(FLOOR, MAX);
        let mut now = Instant::now();
        let mut queued = 0u64;
        let mut through = 0u64;
        let mut last_ack = 0u64;
        let mut acks: VecDeque<(u64, Instant)> = VecDeque::new();
        let mut windows = Vec::new();
        for round in 0..rounds {
            for _ in 0..STEPS {
                while let Some(&(n, at)) = acks.front() {
                    if at > now {
                        break;
                    }
                    acks.pop_front();
                    w.on_acknowledged(n, at);
                }
                let room = w.window().saturating_sub(w.in_flight());
                w.on_sent(room, now);
                queued += room;
                now += step;
                if reading(round) {
                    let n = queued.min(per_step);
                    queued -= n;
                    through += n;
                    if through - last_ack >= w.window() / 4 {
                        last_ack = through;
                        acks.push_back((through, now + rtt));
                    }
                }
            }
            windows.push(w.window());
        }
        windows
    }

    #[test]
    fn it_starts_at_the_floor() {
        let w = AdaptiveWindow::new(FLOOR, MAX);
        assert_eq!(w.window(), FLOOR);
        assert_eq!(w.in_flight(), 0);
        assert_eq!(AdaptiveWindow::new(FLOOR, 1).window(), FLOOR);
    }

    #[test]
    fn loopback_keeps_it_small() {
        // 2 GB/s, 100 µs: the product is 200 kB.
        let windows = run(2_000_000_000, Duration::from_micros(100), 200, |_| true);
        let last = *windows.last().unwrap();
        assert!(last <= 1 << 20, "window {last} on loopback");
        assert!(last >= FLOOR);
    }

    #[test]
    fn a_long_fat_link_grows_it_to_twice_its_product() {
        // 100 Mbit/s, 100 ms: the product is 1.25 MB.
        let rate = 100_000_000 / 8;
        let windows = run(rate, Duration::from_millis(100), 40, |_| true);
        let bdp = rate / 10;
        let last = *windows.last().unwrap();
        assert!(
            last >= 3 * bdp / 2 && last <= 3 * bdp,
            "window {last}, product {bdp}: {windows:?}"
        );
    }

    #[test]
    fn growth_from_the_floor_about_doubles_per_round_trip() {
        // A link far faster than the window: the window is the limit.
        let windows = run(10_000_000_000, Duration::from_millis(50), 8, |_| true);
        for pair in windows.windows(2).skip(1) {
            assert!(
                pair[1] >= pair[0] * 3 / 2,
                "window did not grow fast: {windows:?}"
            );
        }
        assert!(windows[7] >= FLOOR * 32, "{windows:?}");
    }

    #[test]
    fn a_peer_that_stops_reading_does_not_grow_it() {
        let rate = 100_000_000 / 8;
        let rtt = Duration::from_millis(100);
        let windows = run(rate, rtt, 40, |round| round < 3);
        let stopped = windows[3];
        assert!(
            windows[3..].iter().all(|&w| w <= stopped),
            "grew after the peer stopped: {windows:?}"
        );
        assert!(stopped < 1 << 20, "{windows:?}");
    }

    #[test]
    fn it_never_leaves_its_bounds() {
        let windows = run(u64::MAX / 1_000_000_000, Duration::from_secs(1), 30, |_| {
            true
        });
        assert!(windows.iter().all(|&w| (FLOOR..=MAX).contains(&w)));
        assert_eq!(*windows.last().unwrap(), MAX);
    }

    #[test]
    fn old_and_impossible_acknowledgements_change_nothing() {
        let t = Instant::now();
        let mut w = AdaptiveWindow::new(FLOOR, MAX);
        w.on_sent(1000, t);
        w.on_sent(1000, t + Duration::from_millis(1));
        w.on_acknowledged(1000, t + Duration::from_millis(10));
        assert_eq!(w.in_flight(), 1000);
        assert_eq!(w.min_rtt(), Some(Duration::from_millis(10)));
        w.on_acknowledged(500, t + Duration::from_millis(11));
        assert_eq!(w.in_flight(), 1000);
        w.on_acknowledged(u64::MAX, t + Duration::from_millis(12));
        assert_eq!(w.in_flight(), 0);
        assert_eq!(w.min_rtt(), Some(Duration::from_millis(10)));
        assert!(w.delivery_rate().is_some());
    }

    #[test]
    fn the_batches_it_remembers_are_bounded() {
        let t = Instant::now();
        let mut w = AdaptiveWindow::new(FLOOR, MAX);
        for i in 0..10 * MAX_BATCHES as u64 {
            w.on_sent(1, t + Duration::from_micros(i));
        }
        assert_eq!(w.batches.len(), MAX_BATCHES);
        w.on_acknowledged(w.sent, t + Duration::from_secs(1));
        assert!(w.batches.is_empty());
        assert_eq!(w.in_flight(), 0);
    }
}
