//! Send-side backpressure for one `--net` TCP connection in default mode:
//! how many payload bytes a pump may have taken from its socket that the
//! peer's pump has not yet written into its own.
//!
//! Without it a program's sends would block only once QUIC's per-stream
//! window (megabytes) were full, so `SO_SNDBUF` and a send timeout would
//! lose their meaning. Each pump announces its [`Windows`] first on its
//! stream; the receiving pump acknowledges what it has written into its
//! socket ([`SendWindow::on_delivered`]), and the sending pump reads its
//! socket only while [`SendWindow::room`] is left. Acknowledgements share
//! the stream with the bytes flowing the other way, so every pump keeps
//! reading its stream (up to its own receive window) even while its socket
//! takes nothing: the window is what bounds that buffer.
//!
//! A sender whose own limit is finite (rscq's pumps, `--net-send-window`)
//! does not keep that much unacknowledged from the start: its window is
//! [`AdaptiveWindow`]'s, about twice the bandwidth-delay product the
//! connection measures, with the limit as its maximum. It announces the
//! window again (a window record) whenever it has doubled or halved since
//! the last announcement, so that the receiver's acknowledgements, each a
//! quarter of the announced window, keep coming often enough; a receiver
//! told of a smaller window acknowledges at once what is due under it.
//!
//! Pure: counts and instants go in, decisions come out; must not read the
//! clock or touch a socket or a stream (the pump, `crate::transport::pump`,
//! does).

use std::time::Instant;

use super::adaptive_window::AdaptiveWindow;

/// What a pump may keep unacknowledged toward a peer that has not
/// announced its windows yet. Announcements are each side's first record,
/// so this only covers the first round trip.
pub const INITIAL_WINDOW: u64 = 64 * 1024;

/// How many acknowledgements a full window takes: the receiver
/// acknowledges each time this fraction of the window has been delivered.
const ACKS_PER_WINDOW: u64 = 4;

/// What one pump announces to its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// The most payload bytes it keeps unacknowledged toward the peer.
    pub send: u64,
    /// The most of the peer's bytes it buffers while its socket does not
    /// take them.
    pub receive: u64,
}

/// Both directions' counts of one connection, as one pump sees them.
#[derive(Debug, Clone)]
pub struct SendWindow {
    own: Windows,
    /// The peer's announcement, once it came.
    peer: Option<Windows>,
    /// Payload bytes taken from our socket for the peer.
    taken: u64,
    /// The peer's last acknowledgement.
    peer_delivered: u64,
    /// The peer has finished its side of the stream: no acknowledgement
    /// comes any more, so only QUIC's flow control bounds our sends.
    unbounded: bool,
    /// Payload bytes we wrote into our socket.
    delivered: u64,
    /// The last count we acknowledged (or have handed out to be).
    acknowledged: u64,
    /// An acknowledgement to write, the latest count.
    ack_due: Option<u64>,
    /// The measured window, for a sender whose limit adapts; `own.send`
    /// is then what was last announced.
    adaptive: Option<AdaptiveWindow>,
    /// `own` changed since it was last announced.
    announcement_due: bool,
}

impl SendWindow {
    /// A window that keeps `own.send` unacknowledged from the start.
    pub fn new(own: Windows) -> Self {
        Self {
            own,
            peer: None,
            taken: 0,
            peer_delivered: 0,
            unbounded: false,
            delivered: 0,
            acknowledged: 0,
            ack_due: None,
            adaptive: None,
            announcement_due: false,
        }
    }

    /// A window measured on the connection ([`AdaptiveWindow`]) from
    /// [`INITIAL_WINDOW`] up to `own.send` at most.
    pub fn adaptive(own: Windows) -> Self {
        let measured = AdaptiveWindow::new(INITIAL_WINDOW, own.send);
        let mut window = Self::new(Windows {
            send: measured.window(),
            receive: own.receive,
        });
        window.adaptive = Some(measured);
        window
    }

    /// What this side announces.
    pub fn own(&self) -> Windows {
        self.own
    }

    /// The peer's announcement came (its first record, or a later one
    /// when its window changed). A smaller window means more frequent
    /// acknowledgements: what is due under it is due now, since the peer
    /// may be waiting for it with nothing more to send. Returns whether an
    /// acknowledgement became due.
    pub fn on_peer_windows(&mut self, peer: Windows) -> bool {
        self.peer = Some(peer);
        if self.delivered - self.acknowledged < self.ack_every() {
            return false;
        }
        self.acknowledged = self.delivered;
        self.ack_due = Some(self.delivered);
        true
    }

    /// The most we may have unacknowledged: our own limit (measured, when
    /// it adapts), and no more than the peer buffers.
    pub fn window(&self) -> u64 {
        let peer_receive = self.peer.map_or(INITIAL_WINDOW, |p| p.receive);
        let own = self
            .adaptive
            .as_ref()
            .map_or(self.own.send, AdaptiveWindow::window);
        own.min(peer_receive).max(1)
    }

    /// Our windows to announce again, if the measured window has doubled
    /// or halved since the last announcement.
    pub fn take_announcement(&mut self) -> Option<Windows> {
        std::mem::take(&mut self.announcement_due).then_some(self.own)
    }

    /// How many more bytes may be taken from our socket now.
    pub fn room(&self) -> u64 {
        if self.unbounded {
            return u64::MAX;
        }
        let in_flight = self.taken.saturating_sub(self.peer_delivered);
        self.window().saturating_sub(in_flight)
    }

    /// `n` bytes were taken from our socket for the peer at `now`.
    pub fn on_taken(&mut self, n: u64, now: Instant) {
        self.taken = self.taken.saturating_add(n);
        // Once the peer finished, nothing is acknowledged any more: there
        // is nothing to measure.
        if !self.unbounded
            && let Some(measured) = &mut self.adaptive
        {
            measured.on_sent(n, now);
        }
    }

    /// The peer acknowledged `delivered` bytes at `now`. Counts are
    /// cumulative, so an older one changes nothing; one beyond what was
    /// taken is a peer's error and counts as everything.
    pub fn on_acknowledged(&mut self, delivered: u64, now: Instant) {
        self.peer_delivered = self.peer_delivered.max(delivered.min(self.taken));
        let Some(measured) = &mut self.adaptive else {
            return;
        };
        measured.on_acknowledged(self.peer_delivered, now);
        let window = measured.window();
        if window >= self.own.send.saturating_mul(2) || window <= self.own.send / 2 {
            self.own.send = window;
            self.announcement_due = true;
        }
    }

    /// The peer finished its side: it can no longer acknowledge.
    pub fn on_peer_finished(&mut self) {
        self.unbounded = true;
    }

    /// The most of the peer's bytes this side buffers.
    pub fn receive_window(&self) -> u64 {
        self.own.receive
    }

    /// `n` of the peer's bytes went into our socket. Returns whether an
    /// acknowledgement became due ([`Self::take_ack`]).
    pub fn on_delivered(&mut self, n: u64) -> bool {
        self.delivered = self.delivered.saturating_add(n);
        if self.delivered - self.acknowledged < self.ack_every() {
            return false;
        }
        self.acknowledged = self.delivered;
        self.ack_due = Some(self.delivered);
        true
    }

    /// The acknowledgement to write now, if one is due.
    pub fn take_ack(&mut self) -> Option<u64> {
        self.ack_due.take()
    }

    /// The peer's bytes are all delivered and it sends no more (its end
    /// record came): everything delivered is acknowledged now, not at the
    /// next fraction of the window, so the peer knows it all arrived.
    /// Returns whether an acknowledgement became due.
    pub fn acknowledge_everything(&mut self) -> bool {
        if self.delivered == self.acknowledged {
            return false;
        }
        self.acknowledged = self.delivered;
        self.ack_due = Some(self.delivered);
        true
    }

    /// Whether the peer has acknowledged every byte taken for it.
    pub fn all_acknowledged(&self) -> bool {
        self.peer_delivered >= self.taken
    }

    /// How much is delivered between two acknowledgements: a fraction of
    /// the peer's window, so a peer whose window is full always gets one
    /// once its bytes are delivered (it has a whole window unacknowledged).
    fn ack_every(&self) -> u64 {
        let peer_send = self.peer.map_or(INITIAL_WINDOW, |p| p.send);
        (peer_send.min(self.own.receive) / ACKS_PER_WINDOW).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn now() -> Instant {
        Instant::now()
    }

    const CLIENT: Windows = Windows {
        send: 256 * 1024,
        receive: 8 << 20,
    };
    const SERVER: Windows = Windows {
        send: u64::MAX,
        receive: 16 << 20,
    };

    #[test]
    fn before_the_peer_announces_only_the_initial_window_may_go() {
        let mut w = SendWindow::new(CLIENT);
        assert_eq!(w.room(), INITIAL_WINDOW);
        w.on_taken(INITIAL_WINDOW, now());
        assert_eq!(w.room(), 0);
        w.on_peer_windows(SERVER);
        assert_eq!(w.window(), 256 * 1024);
        assert_eq!(w.room(), 256 * 1024 - INITIAL_WINDOW);
    }

    #[test]
    fn the_window_is_the_smaller_of_our_limit_and_the_peers_buffer() {
        let mut server = SendWindow::new(SERVER);
        server.on_peer_windows(CLIENT);
        assert_eq!(server.window(), 8 << 20);
        let mut small = SendWindow::new(Windows {
            send: 64 << 20,
            receive: 1 << 20,
        });
        small.on_peer_windows(SERVER);
        assert_eq!(small.window(), 16 << 20);
    }

    #[test]
    fn acknowledgements_open_the_window_again() {
        let mut w = SendWindow::new(CLIENT);
        w.on_peer_windows(SERVER);
        w.on_taken(256 * 1024, now());
        assert_eq!(w.room(), 0);
        w.on_acknowledged(100, now());
        assert_eq!(w.room(), 100);
        // Older and impossible counts.
        w.on_acknowledged(50, now());
        assert_eq!(w.room(), 100);
        w.on_acknowledged(u64::MAX, now());
        assert_eq!(w.room(), 256 * 1024);
    }

    #[test]
    fn a_peer_that_finished_lifts_the_window() {
        let mut w = SendWindow::new(CLIENT);
        w.on_taken(1 << 30, now());
        assert_eq!(w.room(), 0);
        w.on_peer_finished();
        assert_eq!(w.room(), u64::MAX);
    }

    #[test]
    fn the_receiver_acknowledges_each_quarter_of_the_senders_window() {
        // The server receives what the client sends.
        let mut server = SendWindow::new(SERVER);
        server.on_peer_windows(CLIENT);
        let quarter = 64 * 1024;
        assert!(!server.on_delivered(quarter - 1));
        assert_eq!(server.take_ack(), None);
        assert!(server.on_delivered(1));
        assert_eq!(server.take_ack(), Some(quarter));
        assert_eq!(server.take_ack(), None);
        // Two due before the writer came: the latest count goes.
        assert!(server.on_delivered(quarter));
        assert!(server.on_delivered(quarter + 5));
        assert_eq!(server.take_ack(), Some(3 * quarter + 5));
    }

    #[test]
    fn the_receiver_acknowledges_within_its_own_buffer() {
        // The client receives what the server sends: the server keeps no
        // limit of its own, so the client's buffer is the window.
        let mut client = SendWindow::new(CLIENT);
        client.on_peer_windows(SERVER);
        assert!(!client.on_delivered((2 << 20) - 1));
        assert!(client.on_delivered(1));
        assert_eq!(client.take_ack(), Some(2 << 20));
    }

    #[test]
    fn at_the_end_everything_delivered_is_acknowledged() {
        let mut sender = SendWindow::new(CLIENT);
        let mut receiver = SendWindow::new(SERVER);
        sender.on_peer_windows(SERVER);
        receiver.on_peer_windows(CLIENT);
        sender.on_taken(1000, now());
        assert!(!sender.all_acknowledged());
        // Less than a quarter of the window: no acknowledgement is due...
        assert!(!receiver.on_delivered(1000));
        assert_eq!(receiver.take_ack(), None);
        // ...until the sender's end came and everything is delivered.
        assert!(receiver.acknowledge_everything());
        assert_eq!(receiver.take_ack(), Some(1000));
        assert!(!receiver.acknowledge_everything());
        sender.on_acknowledged(1000, now());
        assert!(sender.all_acknowledged());
    }

    /// A sender and a receiver, run against each other on plain counts:
    /// the sender never has more than its window unacknowledged, and a
    /// receiver that delivers everything always unblocks it.
    #[test]
    fn a_full_window_is_always_acknowledged_once_delivered() {
        for send in [1u64, 3, 1000, 64 * 1024, 256 * 1024, 5_000_000] {
            let mut sender = SendWindow::new(Windows {
                send,
                receive: 8 << 20,
            });
            let mut receiver = SendWindow::new(SERVER);
            sender.on_peer_windows(SERVER);
            receiver.on_peer_windows(sender.own());
            let mut total = 0u64;
            for _ in 0..100 {
                let room = sender.room();
                assert!(room > 0, "window {send}: blocked for ever");
                let n = room.min(70_000);
                sender.on_taken(n, now());
                total += n;
                assert!(sender.taken - sender.peer_delivered <= send);
                receiver.on_delivered(n);
                if let Some(ack) = receiver.take_ack() {
                    sender.on_acknowledged(ack, now());
                }
            }
            assert!(total > 0);
        }
    }

    const MAX: Windows = Windows {
        send: 4 << 20,
        receive: 8 << 20,
    };

    #[test]
    fn an_adaptive_window_starts_small_and_announces_its_growth() {
        let t = Instant::now();
        let mut w = SendWindow::adaptive(MAX);
        assert_eq!(w.own().send, INITIAL_WINDOW);
        w.on_peer_windows(SERVER);
        assert_eq!(w.window(), INITIAL_WINDOW);
        assert_eq!(w.take_announcement(), None);
        // A full window delivered within a round trip: it doubles, and
        // the new one is announced once.
        let rtt = Duration::from_millis(20);
        w.on_taken(INITIAL_WINDOW, t);
        assert_eq!(w.room(), 0);
        w.on_acknowledged(INITIAL_WINDOW, t + rtt);
        assert_eq!(w.window(), 2 * INITIAL_WINDOW);
        assert_eq!(
            w.take_announcement(),
            Some(Windows {
                send: 2 * INITIAL_WINDOW,
                receive: MAX.receive
            })
        );
        assert_eq!(w.take_announcement(), None);
        assert_eq!(w.room(), 2 * INITIAL_WINDOW);
    }

    #[test]
    fn an_adaptive_window_never_passes_its_maximum_nor_the_peers_buffer() {
        let t = Instant::now();
        let mut w = SendWindow::adaptive(MAX);
        w.on_peer_windows(SERVER);
        let mut at = t;
        for _ in 0..20 {
            let n = w.room();
            w.on_taken(n, at);
            at += Duration::from_secs(1);
            w.on_acknowledged(w.taken, at);
        }
        assert_eq!(w.window(), MAX.send);
        w.on_peer_windows(Windows {
            send: u64::MAX,
            receive: 1 << 20,
        });
        assert_eq!(w.window(), 1 << 20);
    }

    #[test]
    fn a_smaller_announced_window_makes_the_due_acknowledgement_go_at_once() {
        let mut receiver = SendWindow::new(SERVER);
        receiver.on_peer_windows(Windows {
            send: 4 << 20,
            receive: 8 << 20,
        });
        // Less than a quarter of 4 MiB: nothing due...
        assert!(!receiver.on_delivered(100 * 1024));
        assert_eq!(receiver.take_ack(), None);
        // ...but more than a quarter of 64 KiB.
        assert!(receiver.on_peer_windows(Windows {
            send: INITIAL_WINDOW,
            receive: 8 << 20,
        }));
        assert_eq!(receiver.take_ack(), Some(100 * 1024));
        assert!(!receiver.on_peer_windows(Windows {
            send: INITIAL_WINDOW,
            receive: 8 << 20,
        }));
    }

    /// An adaptive sender and a receiver on plain counts, the sender's
    /// announcements reaching the receiver in order with the bytes: the
    /// sender is never blocked for ever, whatever the round trips do to
    /// its window (here they shrink it: the rate falls, the minimum round
    /// trip expires).
    #[test]
    fn an_adaptive_window_is_always_acknowledged_once_delivered() {
        let t = Instant::now();
        let mut sender = SendWindow::adaptive(MAX);
        let mut receiver = SendWindow::new(SERVER);
        sender.on_peer_windows(SERVER);
        receiver.on_peer_windows(sender.own());
        let mut at = t;
        for step in 0u32..400 {
            let room = sender.room();
            assert!(room > 0, "step {step}: blocked for ever");
            let n = room.min(70_000);
            sender.on_taken(n, at);
            // Fast round trips first, then ever slower ones.
            at += Duration::from_micros(if step < 100 { 50 } else { 50 * u64::from(step) });
            if let Some(windows) = sender.take_announcement() {
                receiver.on_peer_windows(windows);
            }
            receiver.on_delivered(n);
            if let Some(ack) = receiver.take_ack() {
                sender.on_acknowledged(ack, at);
            }
        }
    }
}
