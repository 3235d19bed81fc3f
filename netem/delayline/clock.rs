//! Precise waiting on `CLOCK_MONOTONIC`: sleep until shortly before the deadline, then spin.

use rustix::thread::{ClockId, Timespec};

use crate::sys::monotonic_ns;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Lowers this thread's timer slack from the default 50 µs to 1 ns. Without it the
/// kernel may coalesce our wake-ups up to 50 µs late, which is the whole spin budget.
pub fn tighten_timer_slack() -> std::io::Result<()> {
    rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1))?;
    Ok(())
}

/// Returns once `monotonic_ns() >= deadline_ns`.
///
/// Sleeping (absolute, so preemption between reading the clock and sleeping adds no
/// error) ends `spin_ns` early because a wake-up takes tens of µs on a busy VM; the rest
/// is busy-waited. The spin is bounded by `spin_ns` per packet, which is what keeps the
/// CPU cost acceptable at high packet rates.
pub fn sleep_until(deadline_ns: u64, spin_ns: u64) {
    if deadline_ns > monotonic_ns().saturating_add(spin_ns) {
        let wake = deadline_ns - spin_ns;
        let ts = Timespec {
            tv_sec: i64::try_from(wake / NANOS_PER_SEC).unwrap_or(i64::MAX),
            tv_nsec: i64::try_from(wake % NANOS_PER_SEC).unwrap_or(0),
        };
        // EINTR just means "sleep again"; any other error degrades to spinning.
        while let Err(e) = rustix::thread::clock_nanosleep_absolute(ClockId::Monotonic, &ts) {
            if e != rustix::io::Errno::INTR {
                break;
            }
        }
    }
    while monotonic_ns() < deadline_ns {
        std::hint::spin_loop();
    }
}
