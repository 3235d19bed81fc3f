//! What wakes the tracer thread: its traced children (`SIGCHLD`, read
//! through a signalfd, then `waitpid(WNOHANG)` until none is left) and the
//! engine (an eventfd rung after each message). The tracer thread waits for
//! its children itself: a separate reaper thread would cost a thread
//! hand-off on every stop of the program.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd, poll};

use super::Event;

/// Sends events to the tracer thread and wakes it.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: Sender<Event>,
    wake: Arc<OwnedFd>,
}

/// The tracer thread has ended; nobody takes events any more.
#[derive(Debug, thiserror::Error)]
#[error("the tracer thread has ended")]
pub struct TracerGone;

impl EventSender {
    pub fn send(&self, event: Event) -> Result<(), TracerGone> {
        self.tx.send(event).map_err(|_| TracerGone)?;
        let _ = rustix::io::write(self.wake.as_fd(), &1u64.to_ne_bytes());
        Ok(())
    }
}

/// The tracer thread's end.
#[derive(Debug)]
pub struct EventQueue {
    rx: Receiver<Event>,
    wake: Arc<OwnedFd>,
    children: SignalFd,
}

/// Blocks `SIGCHLD` in the calling thread; call it before any thread
/// exists, so none takes it and the tracer's signalfd sees every one.
pub fn block_sigchld() -> nix::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.thread_block()
}

/// A connected sender and queue.
pub fn channel() -> std::io::Result<(EventSender, EventQueue)> {
    let (tx, rx) = mpsc::channel();
    let wake = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let children = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(std::io::Error::from)?;
    Ok((
        EventSender {
            tx,
            wake: wake.clone(),
        },
        EventQueue { rx, wake, children },
    ))
}

impl EventQueue {
    /// Blocks until at least one event is ready, then returns all ready.
    pub fn next_batch(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            while let Ok(event) = self.rx.try_recv() {
                out.push(event);
            }
            // One stop per batch: the caller handles it and asks again, so a
            // stop costs one `waitpid` that finds it and, when nothing else is
            // pending, one that finds nothing before the `poll`.
            match waitpid(None, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => out.push(Event::Wait(status)),
                Err(nix::Error::EINTR) => continue,
                Err(_) => out.push(Event::NoChildren),
            }
            if !out.is_empty() {
                return out;
            }
            // Both fds are level-triggered: anything that arrived since the
            // drains above makes this return at once. The signalfd is read
            // before the next `waitpid`, so a stop that comes after that
            // `waitpid` raises a fresh SIGCHLD and wakes this poll.
            let mut fds = [
                PollFd::new(self.wake.as_ref(), PollFlags::IN),
                PollFd::new(&self.children, PollFlags::IN),
            ];
            let _ = poll(&mut fds, None);
            let (wake_ready, child_ready) =
                (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
            if wake_ready {
                let mut counter = [0u8; 8];
                let _ = rustix::io::read(self.wake.as_fd(), &mut counter);
            }
            if child_ready {
                // SIGCHLD is not queued: one read takes the pending one.
                let _ = self.children.read_signal();
            }
        }
    }
}
