//! Send coalescing for remote sockets (the `nagle` layer).
//!
//! The program's `write`/`send` on a remote socket returns as soon as its
//! kernel socket took the bytes; the pump then decides when they cross the
//! network. A [`Coalescer`] holds small amounts while an earlier send is
//! still unanswered and lets them go when one of these happens:
//! - nothing is outstanding (Nagle's rule: a request right after an answer,
//!   or the first bytes of a connection, go at once);
//! - [`CoalesceConfig::bytes`] have gathered;
//! - [`CoalesceConfig::delay`] has passed since the first held byte;
//! - one round trip has passed since the last send (its acknowledgement
//!   would be back: Nagle's "until acknowledged");
//! - the program turns around to wait for input ([`Coalescer::on_turnaround`]);
//! - the program set `TCP_NODELAY` ([`Coalescer::set_nodelay`]);
//! - the program's side ended ([`Coalescer::finish`]).
//!
//! Pure: time comes in as `now`, the round-trip estimate as `rtt`.
//!
//! Pure: time comes in as `now`; must not read the clock or touch a socket.

use std::time::{Duration, Instant};

/// How long and how much the layer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceConfig {
    /// The longest a byte is held.
    pub delay: Duration,
    /// Held bytes that make a send at once.
    pub bytes: usize,
}

/// The default hold: short against any wide-area round trip, long enough
/// to gather a burst of small writes.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(5);
/// The default size that goes at once: a few QUIC packets' worth.
pub const DEFAULT_BYTES: usize = 16 * 1024;

impl Default for CoalesceConfig {
    fn default() -> Self {
        Self {
            delay: DEFAULT_DELAY,
            bytes: DEFAULT_BYTES,
        }
    }
}

/// One connection's upstream: bytes the program wrote, not yet sent.
#[derive(Debug, Clone)]
pub struct Coalescer {
    config: CoalesceConfig,
    held: Vec<u8>,
    /// When the oldest held byte arrived.
    held_since: Option<Instant>,
    /// When the last send left, while no answer has come back since.
    outstanding_since: Option<Instant>,
    nodelay: bool,
}

impl Coalescer {
    pub fn new(config: CoalesceConfig) -> Self {
        Self {
            config,
            held: Vec::new(),
            held_since: None,
            outstanding_since: None,
            nodelay: false,
        }
    }

    /// Bytes held right now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// The program's `TCP_NODELAY`, as last seen on its socket.
    pub fn set_nodelay(&mut self, on: bool) {
        self.nodelay = on;
    }

    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    fn outstanding(&self, now: Instant, rtt: Duration) -> bool {
        self.outstanding_since
            .is_some_and(|at| now < at.checked_add(rtt).unwrap_or(at))
    }

    /// Takes everything held for a send that leaves at `now`.
    fn send(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.held_since = None;
        if self.held.is_empty() {
            return None;
        }
        self.outstanding_since = Some(now);
        Some(std::mem::take(&mut self.held))
    }

    /// The program wrote `bytes`; returns what must be sent now (always
    /// everything held, in order), or `None` to hold.
    pub fn on_data(&mut self, now: Instant, rtt: Duration, bytes: &[u8]) -> Option<Vec<u8>> {
        self.held.extend_from_slice(bytes);
        if self.held.is_empty() {
            return None;
        }
        self.held_since.get_or_insert(now);
        if self.nodelay || self.held.len() >= self.config.bytes || !self.outstanding(now, rtt) {
            return self.send(now);
        }
        if self.deadline(rtt).is_some_and(|d| now >= d) {
            return self.send(now);
        }
        None
    }

    /// Bytes came back from the remote end: what was sent has been answered.
    pub fn on_answer(&mut self) {
        self.outstanding_since = None;
    }

    /// The program waits for input: nothing it wrote may wait any longer.
    pub fn on_turnaround(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.send(now)
    }

    /// When held bytes must go if nothing else sends them first.
    pub fn deadline(&self, rtt: Duration) -> Option<Instant> {
        let since = self.held_since?;
        let by_delay = since.checked_add(self.config.delay).unwrap_or(since);
        let by_ack = self
            .outstanding_since
            .map(|at| at.checked_add(rtt).unwrap_or(at));
        Some(by_ack.map_or(by_delay, |a| a.min(by_delay)))
    }

    /// The timer fired at `now`: sends what is due.
    pub fn on_timer(&mut self, now: Instant, rtt: Duration) -> Option<Vec<u8>> {
        match self.deadline(rtt) {
            Some(d) if now >= d => self.send(now),
            _ => None,
        }
    }

    /// The program sent urgent data (`MSG_OOB`): it goes at once, so what
    /// is held goes before it.
    pub fn on_urgent(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.send(now)
    }

    /// The program's side ended (or failed): everything goes.
    pub fn finish(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.send(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(20);

    fn config() -> CoalesceConfig {
        CoalesceConfig {
            delay: Duration::from_millis(5),
            bytes: 100,
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn urgent_data_sends_what_is_held_first() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(config());
        assert!(c.on_data(t0, RTT, b"GET /").is_some());
        // Outstanding: the next bytes are held ...
        assert_eq!(c.on_data(ms(t0, 1), RTT, b"x"), None);
        // ... until urgent data must go behind them.
        assert_eq!(c.on_urgent(ms(t0, 2)), Some(b"x".to_vec()));
        assert!(!c.is_holding());
        assert_eq!(c.on_urgent(ms(t0, 3)), None);
    }

    #[test]
    fn first_bytes_go_at_once_when_nothing_is_outstanding() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(config());
        assert_eq!(c.on_data(t0, RTT, b"GET /"), Some(b"GET /".to_vec()));
        assert!(!c.is_holding());
    }

    #[test]
    fn request_response_pays_no_delay() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(config());
        for i in 0..10 {
            let now = ms(t0, i * 30);
            assert_eq!(c.on_data(now, RTT, b"ping"), Some(b"ping".to_vec()));
            c.on_answer();
        }
    }

    #[test]
    fn small_writes_while_outstanding_are_held_then_sent_in_order() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(config());
        assert_eq!(c.on_data(t0, RTT, b"a"), Some(b"a".to_vec()));
        assert_eq!(c.on_data(t0, RTT, b"b"), None);
        assert_eq!(c.on_data(ms(t0, 1), RTT, b"c"), None);
        assert_eq!(c.held(), 2);
        assert_eq!(c.deadline(RTT), Some(ms(t0, 5)));
        assert_eq!(c.on_timer(ms(t0, 4), RTT), None);
        assert_eq!(c.on_timer(ms(t0, 5), RTT), Some(b"bc".to_vec()));
        assert_eq!(c.deadline(RTT), None);
    }

    #[test]
    fn enough_bytes_go_at_once() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(config());
        let _ = c.on_data(t0, RTT, b"x");
        for _ in 0..99 {
            assert_eq!(c.on_data(t0, RTT, b"y"), None);
        }
        let sent = c.on_data(t0, RTT, b"z").expect("threshold reached");
        assert_eq!(sent.len(), 100);
        assert_eq!(sent.last(), Some(&b'z'));
    }

    #[test]
    fn a_round_trip_ends_the_hold_before_the_delay() {
        let t0 = Instant::now();
        let short = Duration::from_millis(2);
        let mut c = Coalescer::new(config());
        let _ = c.on_data(t0, short, b"a");
        assert_eq!(c.on_data(ms(t0, 1), short, b"b"), None);
        assert_eq!(c.deadline(short), Some(ms(t0, 2)));
        // Past the round trip the next write finds nothing outstanding.
        assert_eq!(c.on_data(ms(t0, 3), short, b"c"), Some(b"bc".to_vec()));
    }

    #[test]
    fn turnaround_sends_what_is_held() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(config());
        let _ = c.on_data(t0, RTT, b"HEAD");
        assert_eq!(c.on_data(t0, RTT, b"BODY"), None);
        assert_eq!(c.on_turnaround(ms(t0, 0)), Some(b"BODY".to_vec()));
        assert_eq!(c.on_turnaround(ms(t0, 0)), None);
    }

    #[test]
    fn nodelay_never_holds() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(config());
        c.set_nodelay(true);
        for b in [b"a", b"b", b"c"] {
            assert_eq!(c.on_data(t0, RTT, b), Some(b.to_vec()));
        }
    }

    #[test]
    fn an_answer_clears_what_is_outstanding() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(config());
        let _ = c.on_data(t0, RTT, b"a");
        assert_eq!(c.on_data(t0, RTT, b"b"), None);
        c.on_answer();
        assert_eq!(c.on_data(ms(t0, 1), RTT, b"c"), Some(b"bc".to_vec()));
    }

    #[test]
    fn finish_sends_the_rest_and_empty_writes_send_nothing() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(config());
        assert_eq!(c.on_data(t0, RTT, b""), None);
        let _ = c.on_data(t0, RTT, b"a");
        let _ = c.on_data(t0, RTT, b"b");
        assert_eq!(c.finish(t0), Some(b"b".to_vec()));
        assert_eq!(c.finish(t0), None);
    }
}
