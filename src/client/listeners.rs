//! Releases the server's listening (or only bound) socket as soon as the
//! program closes its own. rscq does not trap `close`, so it looks: a
//! listening socket the kernel no longer lists among its listeners
//! (sock_diag, or `/proc/net/tcp{,6}` where that is not available), or a
//! bound one it no longer lists as bound (sock_diag's bound-inactive
//! sockets, Linux 6.8 and later), is closed. The look runs a
//! few times a second while the program has remote listeners, and at once
//! when a remote `bind` finds its port taken (a program that closes a
//! listener and binds the port again must find it free, as natively).
//!
//! Must not close anything the program still holds: it only releases the
//! server's side of listeners the kernel no longer lists.

use std::collections::HashSet;
use std::time::Duration;

use crate::proto::Request;
use crate::syscall::sockets::SocketRegistry;
use crate::transport::Link;

/// How often the program's listening sockets are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_millis(200);

use super::sock_diag::{self, TCP_BOUND_INACTIVE, TCP_LISTEN};

/// The inodes of the listening sockets in a `/proc/net/tcp` or `tcp6` text.
pub fn listening_inodes(table: &str) -> HashSet<u64> {
    super::hold::inodes_in_state(table, TCP_LISTEN)
}

/// The listening sockets of this network namespace, or `None` if the
/// kernel's tables cannot be read (then nothing is taken for closed). A
/// sock_diag dump of listeners walks the listening table only; the text
/// tables, the fallback, cost a walk of every TCP socket.
fn listening_now() -> Option<HashSet<u64>> {
    if let Ok(found) = sock_diag::inodes_in_states(1 << TCP_LISTEN) {
        return Some(found);
    }
    let tables = super::hold::tcp_tables()?;
    Some(
        tables
            .iter()
            .flat_map(|text| listening_inodes(text))
            .collect(),
    )
}

/// Whether this kernel lists bound-only TCP sockets through sock_diag
/// (Linux 6.8 and later): asked once, with a socket of rscq's own. An
/// older kernel lists none, and every bound socket would look closed.
fn kernel_lists_bound_sockets() -> bool {
    static LISTS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LISTS.get_or_init(|| {
        let loopback = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
        let Ok(probe) = super::net::tcp_socket(false, rustix::net::SocketFlags::empty()) else {
            return false;
        };
        let Ok(st) = rustix::net::bind(&probe, &loopback).and_then(|()| rustix::fs::fstat(&probe))
        else {
            return false;
        };
        sock_diag::inodes_in_states(1 << TCP_BOUND_INACTIVE)
            .is_ok_and(|found| found.contains(&st.st_ino))
    })
}

/// The bound-only and listening sockets of this network namespace (a bound
/// socket may be on its way to listening), or `None` if the kernel cannot
/// list bound sockets (then none is taken for closed).
fn bound_or_listening_now() -> Option<HashSet<u64>> {
    if !kernel_lists_bound_sockets() {
        return None;
    }
    sock_diag::inodes_in_states(1 << TCP_BOUND_INACTIVE | 1 << TCP_LISTEN).ok()
}

/// Unbinds on the server every remote listener or bound socket whose
/// program socket is closed; returns how many were released, or `None`
/// once the link is gone.
pub async fn release_closed(sockets: &SocketRegistry, link: &Link) -> Option<usize> {
    let mut closed = Vec::new();
    let listening = sockets.listening();
    if !listening.is_empty()
        && let Some(alive) = listening_now()
    {
        closed.extend(
            listening
                .into_iter()
                .filter(|(ino, _)| !alive.contains(ino)),
        );
    }
    let bound = sockets.bound_only();
    if !bound.is_empty()
        && let Some(alive) = bound_or_listening_now()
    {
        closed.extend(bound.into_iter().filter(|(ino, _)| !alive.contains(ino)));
    }
    let mut released = 0;
    for (ino, listener) in closed {
        sockets.remove(ino);
        let _ = link.call(&Request::TcpUnbind { listener }).await.ok()?;
        released += 1;
    }
    Some(released)
}

/// Runs [`release_closed`] every [`SWEEP_EVERY`] until the link ends.
pub async fn sweep(sockets: SocketRegistry, link: Link) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        if release_closed(&sockets, &link).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_read_from_the_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 621 1 00000000c013d1a7 100 0 0 10 0\n\
            1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1\n\
            2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table), HashSet::from([621, 4242]));
        assert!(listening_inodes("").is_empty());
    }
}
