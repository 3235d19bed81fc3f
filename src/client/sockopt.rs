//! Socket options the program set on a socket that is not on the server
//! yet: kept by socket inode until its `connect` or `bind` takes them.
//!
//! Pure bookkeeping: must not set options itself; `connect` and `bind` send
//! what it kept.

use std::collections::HashMap;
use std::mem::discriminant;
use std::sync::{Mutex, PoisonError};

use crate::proto::SockOption;

/// The most sockets options are kept for; past that the oldest sockets'
/// options are forgotten (a program setting options on ever more sockets it
/// never connects).
const MAX_SOCKETS: usize = 4096;

#[derive(Debug, Default)]
pub struct PendingOptions {
    by_socket: Mutex<HashMap<u64, Vec<SockOption>>>,
}

impl PendingOptions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<SockOption>>> {
        self.by_socket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Socket `ino` now has `option`; a later value of the same option
    /// replaces the earlier one.
    pub fn record(&self, ino: u64, option: SockOption) {
        let mut map = self.map();
        if map.len() >= MAX_SOCKETS && !map.contains_key(&ino) {
            // Socket inodes only grow: the smallest is the oldest.
            if let Some(oldest) = map.keys().min().copied() {
                map.remove(&oldest);
            }
        }
        let options = map.entry(ino).or_default();
        options.retain(|o| discriminant(o) != discriminant(&option));
        options.push(option);
    }

    /// The options of socket `ino`, which is going to the server.
    pub fn take(&self, ino: u64) -> Vec<SockOption> {
        self.map().remove(&ino).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_value_of_each_option_is_taken_once() {
        let p = PendingOptions::default();
        p.record(5, SockOption::KeepAlive(true));
        p.record(5, SockOption::RecvBuffer(1000));
        p.record(5, SockOption::KeepAlive(false));
        p.record(6, SockOption::NoDelay(true));
        assert_eq!(
            p.take(5),
            vec![SockOption::RecvBuffer(1000), SockOption::KeepAlive(false)]
        );
        assert!(p.take(5).is_empty());
        assert_eq!(p.take(6), vec![SockOption::NoDelay(true)]);
    }
}
