//! The count of a server's live sessions, and what to do when it falls to
//! zero: rscq-server gives freed memory back to the kernel then
//! (`sys::trim_freed_memory`), because glibc keeps what a burst of
//! sessions freed in its per-thread arenas, and RSS would stay at the
//! burst's peak for good (issue 14's soak: 6.8 MB before 1,000 runs,
//! 14 MB after).
//!
//! Owns the count and the moment; must not know what a session holds or
//! how memory is returned (the action is given).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What to run each time the last live session ends; it is given the
/// count, to look again later.
pub type OnIdle = Box<dyn Fn(&Arc<LiveSessions>) + Send + Sync>;

/// How many sessions are live; runs its [`OnIdle`] each time the count
/// falls to zero.
pub struct LiveSessions {
    count: AtomicUsize,
    on_idle: OnIdle,
}

impl fmt::Debug for LiveSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveSessions")
            .field("count", &self.live())
            .finish_non_exhaustive()
    }
}

impl LiveSessions {
    pub fn new(on_idle: OnIdle) -> Arc<Self> {
        Arc::new(Self {
            count: AtomicUsize::new(0),
            on_idle,
        })
    }

    /// Counts one more live session until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> LiveGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        LiveGuard(Arc::clone(self))
    }

    /// Sessions live now.
    pub fn live(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// One live session; dropped with it, after what it held was freed.
#[derive(Debug)]
pub struct LiveGuard(Arc<LiveSessions>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        // Only the guard that takes the count from 1 to 0 runs the action;
        // a session that starts meanwhile just makes the trim early.
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            (self.0.on_idle)(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting() -> (Arc<LiveSessions>, Arc<AtomicUsize>) {
        let idles = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&idles);
        let live = LiveSessions::new(Box::new(move |_: &Arc<LiveSessions>| {
            seen.fetch_add(1, Ordering::SeqCst);
        }));
        (live, idles)
    }

    #[test]
    fn idle_runs_once_when_the_last_of_a_burst_ends() {
        let (live, idles) = counting();
        let guards: Vec<LiveGuard> = (0..5).map(|_| live.enter()).collect();
        assert_eq!(live.live(), 5);
        let mut guards = guards.into_iter();
        for left in (1..5).rev() {
            drop(guards.next());
            assert_eq!(live.live(), left);
            assert_eq!(idles.load(Ordering::SeqCst), 0, "sessions still live");
        }
        drop(guards.next());
        assert_eq!(live.live(), 0);
        assert_eq!(idles.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn each_burst_ends_in_one_idle() {
        let (live, idles) = counting();
        drop(live.enter());
        let a = live.enter();
        let b = live.enter();
        drop(a);
        drop(b);
        assert_eq!(idles.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn concurrent_sessions_end_in_one_idle() {
        let (live, idles) = counting();
        let holder = live.enter();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        drop(live.enter());
                    }
                });
            }
        });
        assert_eq!(idles.load(Ordering::SeqCst), 0, "one session stayed live");
        drop(holder);
        assert_eq!(idles.load(Ordering::SeqCst), 1);
    }
}
