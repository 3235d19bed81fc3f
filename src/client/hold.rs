//! A remote connect that outlives the call that started it: a non-blocking
//! connect (which returns EINPROGRESS at once, as the kernel's), or a
//! blocking one a signal interrupted. Until the server answers, the
//! program's socket must look like a kernel connect still under way: poll
//! reports nothing, a write would block, `SO_ERROR` is 0, `getpeername`
//! fails with ENOTCONN.
//!
//! So rscq puts the program's socket in SYN-SENT for real: it connects it
//! to a loopback *hold* listener whose accept queue is kept full, so the
//! kernel drops the socket's SYNs and keeps retrying them.
//!
//! When the server's connect ends, rscq ends the local one: a socket of its
//! own, bound to the hold port as well, connects to the program's socket;
//! the two SYNs cross (TCP simultaneous open, RFC 9293 §3.5) and both ends
//! are established within microseconds. On success that socket is the
//! pump's end. On failure it fails at once: with the server's errno where
//! an ICMP error rscq sends can make the kernel say it (with `CAP_NET_RAW`,
//! see [`super::held_error`]), else by a reset. The program's socket then
//! polls as a failed connect does (`POLLERR|POLLHUP`), and `SO_ERROR`, which
//! rscq traps for such a socket, gives the server's errno (after a reset
//! the kernel alone could only say ECONNRESET).
//!
//! A program that closes its socket meanwhile makes it vanish from the
//! kernel's TCP table; the connect on the server is then abandoned.
//!
//! Owns the hold listener and the crossing connect; must not decide a
//! connect's outcome (the server's answer does) nor stop the program.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::fs::OFlags;
use rustix::net::AddressFamily;
use tokio::net::{TcpSocket, TcpStream};

use crate::errno::Errno;

/// How long rscq's end of a crossing connect may take; on loopback it is
/// microseconds, so running out means the program's socket is gone.
const CROSS_TIMEOUT: Duration = Duration::from_secs(2);

use super::held_error;
use super::sock_diag::{self, TCP_SYN_RECV, TCP_SYN_SENT};

/// A loopback listener that never accepts and drops every SYN: its backlog
/// is 0 and one connection of rscq's own fills its accept queue.
#[derive(Debug)]
struct HoldListener {
    addr: SocketAddr,
    _listener: OwnedFd,
    _filler: std::net::TcpStream,
}

impl HoldListener {
    fn bind(v6: bool) -> std::io::Result<Self> {
        let loopback: SocketAddr = if v6 {
            (Ipv6Addr::LOCALHOST, 0).into()
        } else {
            (Ipv4Addr::LOCALHOST, 0).into()
        };
        let listener = super::net::tcp_socket(v6, rustix::net::SocketFlags::empty())?;
        // The crossing sockets bind the same port while this one listens.
        rustix::net::sockopt::set_socket_reuseaddr(&listener, true)?;
        rustix::net::sockopt::set_socket_reuseport(&listener, true)?;
        rustix::net::bind(&listener, &loopback)?;
        rustix::net::listen(&listener, 0)?;
        let addr = SocketAddr::try_from(rustix::net::getsockname(&listener)?)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        let filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        Ok(Self {
            addr,
            _listener: listener,
            _filler: filler,
        })
    }
}

/// The hold listeners, one per address family.
#[derive(Debug)]
pub struct Hold {
    v4: HoldListener,
    v6: Option<HoldListener>,
}

/// A program socket in SYN-SENT towards a hold listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The program socket's inode.
    pub ino: u64,
    /// Its local address, where rscq's crossing connect goes.
    pub local: SocketAddr,
    /// The hold listener it is connecting to.
    hold: SocketAddr,
}

impl Hold {
    pub fn bind() -> std::io::Result<Self> {
        Ok(Self {
            v4: HoldListener::bind(false)?,
            // A host without IPv6 on loopback still serves IPv4 programs.
            v6: HoldListener::bind(true).ok(),
        })
    }

    /// Starts the program socket's local connect to a hold listener (`dup`
    /// is rscq's copy of the socket, `ino` its inode). The program sees the
    /// socket connecting from here on.
    pub fn start(&self, dup: &OwnedFd, ino: u64) -> Result<Held, Errno> {
        let v6 =
            rustix::net::sockopt::socket_domain(dup).map_err(Errno::from)? == AddressFamily::INET6;
        let hold = if v6 { self.v6.as_ref() } else { Some(&self.v4) }
            .ok_or(Errno(libc::EAFNOSUPPORT))?
            .addr;
        // The file status flags belong to the program's open file too: a
        // blocking socket is made non-blocking only for this call, so that
        // rscq's thread does not wait out the SYN retries.
        let flags = rustix::fs::fcntl_getfl(dup).map_err(Errno::from)?;
        let blocking = !flags.contains(OFlags::NONBLOCK);
        if blocking {
            rustix::fs::fcntl_setfl(dup, flags | OFlags::NONBLOCK).map_err(Errno::from)?;
        }
        let connected = rustix::net::connect(dup, &hold);
        if blocking {
            let _ = rustix::fs::fcntl_setfl(dup, flags);
        }
        match connected {
            Err(e) if e == rustix::io::Errno::INPROGRESS => {}
            // The SYN cannot be answered: anything else is a local failure.
            Ok(()) => return Err(Errno::EIO),
            Err(e) => return Err(e.into()),
        }
        let local = SocketAddr::try_from(rustix::net::getsockname(dup).map_err(Errno::from)?)
            .map_err(|_| Errno::EINVAL)?;
        Ok(Held { ino, local, hold })
    }

    /// Establishes the held socket's connection; rscq's end is returned.
    /// Fails if the program closed its socket.
    pub async fn finish(&self, held: Held) -> Result<TcpStream, Errno> {
        // Another socket of the program may have taken the port since.
        if still_connecting(&held) == Some(false) {
            return Err(Errno(libc::ECONNABORTED));
        }
        let socket = if held.hold.is_ipv6() {
            TcpSocket::new_v6()
        } else {
            TcpSocket::new_v4()
        }
        .map_err(|e| {
            crate::limits::note_fd_exhaustion(&e, "rscq");
            Errno::from_io(&e)
        })?;
        socket.set_reuseaddr(true).map_err(|e| Errno::from_io(&e))?;
        socket.set_reuseport(true).map_err(|e| Errno::from_io(&e))?;
        socket.bind(held.hold).map_err(|e| Errno::from_io(&e))?;
        super::net::bound_pump_receive_buffer(&socket);
        tokio::time::timeout(CROSS_TIMEOUT, socket.connect(held.local))
            .await
            .map_err(|_| Errno(libc::ECONNABORTED))?
            .map_err(|e| Errno::from_io(&e))
    }

    /// Makes the held socket's connect fail with `errno` as the server's
    /// did, in one step: one crossing SYN from a socket that drops
    /// everything it receives takes the program's socket to SYN-RECV
    /// (still nothing to poll). Where the local kernel can give `errno`
    /// itself ([`held_error`]: an ICMP error about the socket's SYN, whose
    /// sequence number its SYN-ACK to that crossing SYN shows; both need
    /// raw sockets, so `CAP_NET_RAW`), it fails the socket with it, and the
    /// program's first read, write or `connect` gets it, as after a failed
    /// connect of its own. Otherwise a second crossing socket's SYN, out of
    /// that connection's window, makes it answer with an ACK, which that
    /// second socket, still in SYN-SENT, answers with a RST in sequence:
    /// the socket is reset, and a read or write gets ECONNRESET first. Either
    /// way it was never established: it polls as a failed connect
    /// (`POLLIN|POLLOUT|POLLERR|POLLHUP|POLLRDHUP`), and its `SO_ERROR` is
    /// the server's errno where rscq traps it. Returns whether the socket
    /// got there.
    pub async fn fail(&self, held: Held, errno: Errno) -> bool {
        let v6 = held.local.is_ipv6();
        let icmp = held_error::message_for(errno, v6)
            .and_then(|(kind, code)| Some((kind, code, RawPair::open(v6, held.hold.port())?)));
        let Ok(blind) = crossing_socket(held.hold, true) else {
            return false;
        };
        let _ = rustix::net::connect(&blind, &held.local);
        if !wait_state(&held, |state| state == Some(TCP_SYN_RECV)).await {
            return false;
        }
        drop(blind);
        if let Some((kind, code, raw)) = icmp
            && let Some(seq) = raw.syn_ack_seq(&held).await
            && let Some(message) = held_error::message(kind, code, held.local, held.hold, seq)
            && raw.send(&message, held.local.ip())
            && wait_state(&held, |state| state.is_none()).await
        {
            return true;
        }
        let Ok(resetter) = crossing_socket(held.hold, false) else {
            return false;
        };
        let _ = rustix::net::connect(&resetter, &held.local);
        wait_state(&held, |state| state.is_none()).await
    }

    /// Makes the socket's connect fail when [`Hold::fail`] could not
    /// (`program` is a copy of it): shutting down a connecting socket aborts
    /// the connect, and shutting it down once more marks both directions
    /// closed. The program may see the first step alone (`POLLERR|POLLHUP|
    /// POLLOUT`), but never an established connection.
    pub fn abort(program: &OwnedFd) {
        let _ = rustix::net::shutdown(program, rustix::net::Shutdown::Both);
        let _ = rustix::net::shutdown(program, rustix::net::Shutdown::Both);
    }
}

/// Readies a socket whose connect failed (`program` is a copy of it) for
/// a new connect, as the kernel's `connect` after a failed one does: its
/// pending error is taken, and returned (`None` if the program took it
/// already), and it is disconnected.
pub fn forget_failed(program: &OwnedFd) -> Option<Errno> {
    let pending = rustix::net::sockopt::socket_error(program)
        .ok()
        .and_then(Result::err)
        .map(Errno::from);
    let _ = rustix::net::connect_unspec(program);
    pending
}

/// The raw sockets of one ICMP failure ([`Hold::fail`]): one that captures
/// the held socket's SYN-ACK (a filter lets only SYN-ACKs to the hold port
/// reach it), one that sends the ICMP message.
struct RawPair {
    capture: OwnedFd,
    icmp: OwnedFd,
    v6: bool,
}

impl RawPair {
    /// `None` without `CAP_NET_RAW`.
    fn open(v6: bool, hold_port: u16) -> Option<Self> {
        use rustix::net::{SocketFlags, SocketType, ipproto, socket_with};
        let (family, icmp) = if v6 {
            (AddressFamily::INET6, ipproto::ICMPV6)
        } else {
            (AddressFamily::INET, ipproto::ICMP)
        };
        let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
        let capture = socket_with(family, SocketType::RAW, flags, Some(ipproto::TCP)).ok()?;
        crate::sys::net::accept_only_syn_acks_to(&capture, !v6, hold_port).ok()?;
        // What came before the filter was attached.
        let mut buf = [0u8; 128];
        while rustix::net::recv(&capture, &mut buf, rustix::net::RecvFlags::empty()).is_ok() {}
        let icmp = socket_with(family, SocketType::RAW, flags, Some(icmp)).ok()?;
        Some(Self { capture, icmp, v6 })
    }

    /// The sequence number of the held socket's SYN-ACK, once captured.
    async fn syn_ack_seq(&self, held: &Held) -> Option<u32> {
        let deadline = tokio::time::Instant::now() + CROSS_TIMEOUT;
        let mut buf = [0u8; 128];
        loop {
            match rustix::net::recv(&self.capture, &mut buf, rustix::net::RecvFlags::empty()) {
                Ok((n, _)) => {
                    let seq = held_error::syn_ack_seq(
                        buf.get(..n)?,
                        self.v6,
                        held.local.port(),
                        held.hold.port(),
                    );
                    if seq.is_some() {
                        return seq;
                    }
                }
                Err(_) if tokio::time::Instant::now() > deadline => return None,
                Err(_) => tokio::time::sleep(Duration::from_micros(200)).await,
            }
        }
    }

    /// Sends `message` to `to`, the held socket's address.
    fn send(&self, message: &[u8], to: std::net::IpAddr) -> bool {
        let to = SocketAddr::new(to, 0);
        rustix::net::sendto(&self.icmp, message, rustix::net::SendFlags::empty(), &to).is_ok()
    }
}

/// A non-blocking socket bound to the hold listener's port, to cross a
/// held socket's SYN; with `blind`, nothing it receives reaches it.
fn crossing_socket(hold: SocketAddr, blind: bool) -> Result<OwnedFd, Errno> {
    let socket = super::net::tcp_socket(hold.is_ipv6(), rustix::net::SocketFlags::NONBLOCK)?;
    rustix::net::sockopt::set_socket_reuseaddr(&socket, true)?;
    rustix::net::sockopt::set_socket_reuseport(&socket, true)?;
    if blind {
        crate::sys::net::drop_all_incoming(&socket)?;
    }
    rustix::net::bind(&socket, &hold)?;
    Ok(socket)
}

/// Waits (briefly: loopback segments take microseconds) until the TCP
/// state of socket `ino` satisfies `done`; `None` is a socket no longer in
/// the kernel's tables.
async fn wait_state(held: &Held, done: impl Fn(Option<u8>) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + CROSS_TIMEOUT;
    loop {
        match held_state(held) {
            Some(state) if done(state) => return true,
            None => return false,
            Some(_) => {}
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// The program's socket with inode `ino`: its fd `fd` in process `tgid`,
/// or, if the program moved it, whichever of its fds it now is.
pub fn program_socket(tgid: i32, fd: i32, ino: u64) -> Option<OwnedFd> {
    let is_it = |dup: &OwnedFd| rustix::fs::fstat(dup).is_ok_and(|st| st.st_ino == ino);
    if let Some(dup) = crate::sys::fd::dup_fd(tgid, fd).filter(is_it) {
        return Some(dup);
    }
    let wanted = format!("socket:[{ino}]");
    std::fs::read_dir(format!("/proc/{tgid}/fd"))
        .ok()?
        .flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|target| target.as_os_str() == wanted.as_str())
        })
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .find_map(|other: i32| crate::sys::fd::dup_fd(tgid, other).filter(is_it))
}

/// Whether the held program socket is still connecting, from the kernel's
/// TCP tables; `None` if they cannot be read.
pub fn still_connecting(held: &Held) -> Option<bool> {
    held_state(held).map(|state| state == Some(TCP_SYN_SENT))
}

/// The TCP state of the held program socket: `None` if the kernel's tables
/// cannot be read, `Some(None)` if it is not in them. One lookup by its
/// addresses (sock_diag), or, where that is not available, a scan of
/// `/proc/net/tcp` for its inode.
fn held_state(held: &Held) -> Option<Option<u8>> {
    match sock_diag::lookup(held.local, held.hold) {
        // Another socket may have taken the same ends since.
        Ok(found) => Some(found.filter(|s| s.inode == held.ino).map(|s| s.state)),
        Err(_) => scanned_state(held.ino),
    }
}

/// [`held_state`] from the text tables: slow (the kernel walks its whole
/// TCP hash for them), so only a fallback.
fn scanned_state(ino: u64) -> Option<Option<u8>> {
    let tables = tcp_tables()?;
    Some(
        tables
            .iter()
            .flat_map(|text| table_rows(text))
            .find(|&(_, inode)| inode == ino)
            .and_then(|(state, _)| u8::from_str_radix(state, 16).ok()),
    )
}

/// The texts of this network namespace's `/proc/net/tcp` and `tcp6`, or
/// `None` if they cannot be read.
pub fn tcp_tables() -> Option<Vec<String>> {
    let mut texts = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        match std::fs::read_to_string(table) {
            Ok(text) => texts.push(text),
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return None,
        }
    }
    Some(texts)
}

/// The (state, inode) of each socket in a `/proc/net/tcp` or `tcp6` text.
fn table_rows(table: &str) -> impl Iterator<Item = (&str, u64)> {
    table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        Some((*fields.get(3)?, fields.get(9)?.parse().ok()?))
    })
}

/// The inodes of the sockets in TCP state `state` in a `/proc/net/tcp` or
/// `tcp6` text.
pub fn inodes_in_state(table: &str, state: u8) -> HashSet<u64> {
    table_rows(table)
        .filter(|&(s, _)| u8::from_str_radix(s, 16) == Ok(state))
        .map(|(_, inode)| inode)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn new_socket(v6: bool) -> (OwnedFd, u64) {
        let fd = super::super::net::tcp_socket(v6, rustix::net::SocketFlags::empty()).unwrap();
        let ino = rustix::fs::fstat(&fd).unwrap().st_ino;
        (fd, ino)
    }

    /// What a poll for input and output reports now.
    fn polled(fd: &OwnedFd) -> rustix::event::PollFlags {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(fd, PollFlags::IN | PollFlags::OUT)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&now)).unwrap();
        fds[0].revents()
    }

    #[tokio::test]
    async fn a_held_socket_connects_for_real_when_told() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let hold = Hold::bind().unwrap();
        for v6 in [false, true] {
            let (program, ino) = new_socket(v6);
            let held = hold.start(&program, ino).unwrap();
            // SYN_SENT, and nothing to report yet, as a kernel connect.
            assert_eq!(still_connecting(&held), Some(true));
            assert!(polled(&program).is_empty());
            std::thread::sleep(Duration::from_millis(1100));
            assert_eq!(
                still_connecting(&held),
                Some(true),
                "a SYN retry was answered"
            );
            assert!(polled(&program).is_empty());
            let mut ours = hold.finish(held).await.unwrap();
            assert_eq!(polled(&program), rustix::event::PollFlags::OUT);
            assert_eq!(
                rustix::net::sockopt::socket_error(&program).unwrap(),
                Ok(())
            );
            ours.write_all(b"pump").await.unwrap();
            let mut buf = [0u8; 4];
            assert_eq!(rustix::io::read(&program, &mut buf).unwrap(), 4);
            assert_eq!(&buf, b"pump");
            rustix::io::write(&program, b"prog").unwrap();
            ours.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"prog");
            assert_eq!(still_connecting(&held), Some(false));
        }
    }

    #[tokio::test]
    async fn a_failed_held_socket_polls_as_a_failed_connect() {
        let hold = Hold::bind().unwrap();
        for v6 in [false, true] {
            let (program, ino) = new_socket(v6);
            // A blocking socket stays blocking.
            let held = hold.start(&program, ino).unwrap();
            assert!(
                !rustix::fs::fcntl_getfl(&program)
                    .unwrap()
                    .contains(OFlags::NONBLOCK)
            );
            assert!(
                hold.fail(held, Errno(libc::ECONNRESET)).await,
                "the held socket must be reset"
            );
            use rustix::event::PollFlags;
            assert_eq!(
                polled(&program),
                PollFlags::IN | PollFlags::OUT | PollFlags::ERR | PollFlags::HUP
            );
            assert_eq!(
                rustix::net::sockopt::socket_error(&program).unwrap(),
                Err(rustix::io::Errno::CONNRESET)
            );
            let mut buf = [0u8; 4];
            assert_eq!(rustix::io::read(&program, &mut buf), Ok(0));
            assert_eq!(
                rustix::net::send(&program, b"x", rustix::net::SendFlags::NOSIGNAL),
                Err(rustix::io::Errno::PIPE)
            );
            assert_eq!(still_connecting(&held), Some(false));
        }
    }

    #[tokio::test]
    async fn a_held_socket_fails_with_the_servers_errno_and_connects_again() {
        if rustix::process::geteuid().as_raw() != 0 {
            eprintln!("NOTICE: skipped, raw sockets need CAP_NET_RAW");
            return;
        }
        let hold = Hold::bind().unwrap();
        for (v6, errno) in [
            (false, libc::ECONNREFUSED),
            (true, libc::ECONNREFUSED),
            (false, libc::EHOSTUNREACH),
            (true, libc::ENETUNREACH),
        ] {
            let (program, ino) = new_socket(v6);
            let held = hold.start(&program, ino).unwrap();
            assert!(hold.fail(held, Errno(errno)).await, "{errno}: must fail");
            use rustix::event::PollFlags;
            assert_eq!(
                polled(&program),
                PollFlags::IN | PollFlags::OUT | PollFlags::ERR | PollFlags::HUP
            );
            // The first read gets the error itself, then end of file.
            let mut buf = [0u8; 4];
            assert_eq!(
                rustix::io::read(&program, &mut buf),
                Err(rustix::io::Errno::from_raw_os_error(errno))
            );
            assert_eq!(rustix::io::read(&program, &mut buf), Ok(0));
            // Taken already: a new connect may start, and works.
            assert_eq!(forget_failed(&program), None);
            let listener =
                std::net::TcpListener::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).unwrap();
            rustix::net::connect(&program, &listener.local_addr().unwrap()).unwrap();
            assert_eq!(
                rustix::net::sockopt::socket_error(&program).unwrap(),
                Ok(())
            );
        }
    }

    #[tokio::test]
    async fn a_failure_not_taken_yet_is_taken_by_forget_failed() {
        let hold = Hold::bind().unwrap();
        let (program, ino) = new_socket(false);
        let held = hold.start(&program, ino).unwrap();
        // No message gives ETIMEDOUT: the socket is reset.
        assert!(hold.fail(held, Errno(libc::ETIMEDOUT)).await);
        assert_eq!(forget_failed(&program), Some(Errno(libc::ECONNRESET)));
        assert_eq!(forget_failed(&program), None);
    }

    #[test]
    fn the_program_socket_is_found_where_the_program_moved_it() {
        let (program, ino) = new_socket(false);
        let me = std::process::id().cast_signed();
        let found = program_socket(me, program.as_raw_fd(), ino).expect("by its fd");
        assert_eq!(rustix::fs::fstat(&found).unwrap().st_ino, ino);
        drop(found);
        let moved = rustix::io::dup(&program).unwrap();
        drop(program);
        // The old number now names another file, or nothing.
        let other = std::fs::File::open("/proc/self/stat").unwrap();
        let found = program_socket(me, other.as_raw_fd(), ino).expect("by a scan");
        assert_eq!(rustix::fs::fstat(&found).unwrap().st_ino, ino);
        drop(moved);
        drop(found);
        assert!(program_socket(me, other.as_raw_fd(), ino).is_none());
    }

    #[tokio::test]
    async fn a_closed_held_socket_cannot_be_finished() {
        let hold = Hold::bind().unwrap();
        let (program, ino) = new_socket(false);
        let held = hold.start(&program, ino).unwrap();
        drop(program);
        assert_eq!(still_connecting(&held), Some(false));
        assert_eq!(
            hold.finish(held).await.unwrap_err(),
            Errno(libc::ECONNABORTED)
        );
    }

    #[test]
    fn sockets_are_found_by_state_in_the_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 621 1 00000000c013d1a7 100 0 0 10 0\n\
            1: 0100007F:9C40 0100007F:1F90 02 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(inodes_in_state(table, TCP_SYN_SENT), HashSet::from([777]));
        assert_eq!(
            inodes_in_state(table, sock_diag::TCP_LISTEN),
            HashSet::from([621])
        );
        assert!(inodes_in_state("", TCP_SYN_SENT).is_empty());
    }
}
