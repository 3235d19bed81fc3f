//! `--stats`: calls per syscall, bytes each way, time spent waiting on the
//! network.
//!
//! Only counts: must not change what is forwarded or when.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallStats {
    pub calls: u64,
    /// Calls answered by rscq itself, with no round trip.
    pub local: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub waited: Duration,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    by_call: Arc<Mutex<BTreeMap<&'static str, CallStats>>>,
    /// The bytes of `--net` TCP connections the pumps carried, outside
    /// any call (default mode; `--pure` counts them per `send`/`recv`).
    streams: Arc<crate::transport::pump::Traffic>,
}

impl Stats {
    pub fn record(&self, name: &'static str, sent: usize, received: usize, waited: Duration) {
        let mut map = self.by_call.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(name).or_default();
        entry.calls += 1;
        entry.bytes_sent += u64::try_from(sent).unwrap_or(u64::MAX);
        entry.bytes_received += u64::try_from(received).unwrap_or(u64::MAX);
        entry.waited += waited;
    }

    /// A call the optimization layers answered without the network.
    pub fn record_local(&self, name: &'static str) {
        let mut map = self.by_call.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(name).or_default().local += 1;
    }

    /// The pumps' byte counters, to hand to them.
    pub fn streams(&self) -> Arc<crate::transport::pump::Traffic> {
        self.streams.clone()
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, CallStats> {
        self.by_call
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The summary printed at exit.
    pub fn report(&self) -> String {
        self.report_of(None)
    }

    /// The summary of the calls forwarded to one remote of several,
    /// `remote` naming it in the title.
    pub fn report_of(&self, remote: Option<&str>) -> String {
        let map = self.snapshot();
        let mut out = match remote {
            Some(name) => format!("rscq: forwarded calls to {name}\n"),
            None => String::from("rscq: forwarded calls\n"),
        };
        let _ = writeln!(
            out,
            "rscq: {:<16} {:>8} {:>8} {:>12} {:>12} {:>12}",
            "syscall", "calls", "local", "bytes sent", "bytes recv", "wait ms"
        );
        let mut total = CallStats::default();
        for (name, s) in &map {
            let _ = writeln!(
                out,
                "rscq: {:<16} {:>8} {:>8} {:>12} {:>12} {:>12.3}",
                name,
                s.calls,
                s.local,
                s.bytes_sent,
                s.bytes_received,
                s.waited.as_secs_f64() * 1000.0
            );
            total.calls += s.calls;
            total.local += s.local;
            total.bytes_sent += s.bytes_sent;
            total.bytes_received += s.bytes_received;
            total.waited += s.waited;
        }
        let _ = writeln!(
            out,
            "rscq: {:<16} {:>8} {:>8} {:>12} {:>12} {:>12.3}",
            "total",
            total.calls,
            total.local,
            total.bytes_sent,
            total.bytes_received,
            total.waited.as_secs_f64() * 1000.0
        );
        let sent = self.streams.sent.load(std::sync::atomic::Ordering::Relaxed);
        let received = self
            .streams
            .received
            .load(std::sync::atomic::Ordering::Relaxed);
        if sent > 0 || received > 0 {
            // Carried by the pumps, not by a forwarded call: a row of its
            // own, after the total of the calls.
            let _ = writeln!(
                out,
                "rscq: {:<16} {:>8} {:>8} {:>12} {:>12} {:>12}",
                "tcp streams", "-", "-", sent, received, "-"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_add_up_per_call_and_in_total() {
        let s = Stats::default();
        s.record("openat", 10, 20, Duration::from_millis(2));
        s.record("openat", 5, 5, Duration::from_millis(1));
        s.record("read", 1, 100, Duration::from_millis(3));
        let snap = s.snapshot();
        assert_eq!(snap["openat"].calls, 2);
        assert_eq!(snap["openat"].bytes_sent, 15);
        assert_eq!(snap["read"].bytes_received, 100);
        let report = s.report();
        assert!(report.contains("total"));
        assert!(!report.contains("tcp streams"), "{report}");
        assert!(report.lines().last().unwrap().contains(" 3 "), "{report}");
        s.streams()
            .sent
            .fetch_add(1000, std::sync::atomic::Ordering::Relaxed);
        let report = s.report();
        let row = report
            .lines()
            .find(|l| l.contains("tcp streams"))
            .expect("a row for the streams");
        assert!(row.contains(" 1000 "), "{report}");
        assert_eq!(report.lines().next(), Some("rscq: forwarded calls"));
        let named = s.report_of(Some("buildbox"));
        assert_eq!(
            named.lines().next(),
            Some("rscq: forwarded calls to buildbox")
        );
        assert_eq!(
            named.lines().skip(1).collect::<Vec<_>>(),
            report.lines().skip(1).collect::<Vec<_>>()
        );
    }
}
