//! The program's side of a coalescing socket pump (see
//! [`crate::engine::coalesce`]): whether the program asked for
//! `TCP_NODELAY`, and whether it has turned around to wait for input.
//!
//! Both are read without stopping the program. `TCP_NODELAY` is an option
//! of the program's own socket, so rscq takes a copy of that fd for a
//! moment (`pidfd_getfd`) and asks it; holding the copy longer would keep
//! the connection open after the program's `close`. A thread that waits
//! for input sits in a read-side syscall, which `/proc/PID/task/TID/syscall`
//! names (rscq is the tracer, so it may read it).
//!
//! Must not decide when bytes go: that is [`crate::engine::coalesce`]'s; this
//! module only reports what it sees of the program.

use std::time::Duration;

use crate::syscall::sockets::SocketRegistry;
use crate::transport::Link;
use crate::transport::pump::ProgramSide;

/// Whether a `/proc/PID/task/TID/syscall` line names a wait for input. A
/// running thread reads `running`; a blocked one, its syscall number first.
pub fn waits_for_input(syscall_line: &str) -> bool {
    syscall_line
        .split_whitespace()
        .next()
        .and_then(|nr| nr.parse::<i64>().ok())
        .is_some_and(crate::syscall::nr::waits_for_input)
}

/// Where the program's socket is: fd `fd` of process `tgid`, a socket with
/// inode `ino`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub tgid: i32,
    pub fd: i32,
    pub ino: u64,
}

/// Finds the owner of a connection delivered to a program listener once
/// the program has accepted it.
#[derive(Debug, Clone)]
pub struct Claim {
    pub sockets: SocketRegistry,
    /// rscq's own port of the delivered connection.
    pub port: u16,
}

/// [`ProgramSide`] for one program socket.
pub struct ProgramSocket {
    link: Link,
    owner: Option<Owner>,
    claim: Option<Claim>,
}

impl ProgramSocket {
    /// A socket rscq connected for the program (owner known).
    pub fn connected(link: Link, owner: Owner) -> Self {
        Self {
            link,
            owner: Some(owner),
            claim: None,
        }
    }

    /// A connection delivered to a program listener: the owner becomes
    /// known when the program accepts it.
    pub fn delivered(link: Link, claim: Claim) -> Self {
        Self {
            link,
            owner: None,
            claim: Some(claim),
        }
    }

    fn owner(&mut self) -> Option<Owner> {
        if self.owner.is_none()
            && let Some(claim) = &self.claim
            && let Some(owner) = claim.sockets.owner_of_incoming(claim.port)
        {
            self.owner = Some(Owner {
                tgid: owner.0,
                fd: owner.1,
                ino: owner.2,
            });
            self.claim = None;
        }
        self.owner
    }
}

/// The program's socket: a short-lived copy of its fd, found again by
/// inode if the program moved it to another fd.
fn program_socket(owner: &mut Owner) -> Option<std::os::fd::OwnedFd> {
    let matches =
        |fd: &std::os::fd::OwnedFd| rustix::fs::fstat(fd).is_ok_and(|st| st.st_ino == owner.ino);
    if let Some(dup) = crate::sys::fd::dup_fd(owner.tgid, owner.fd)
        && matches(&dup)
    {
        return Some(dup);
    }
    let wanted = format!("socket:[{}]", owner.ino);
    let dir = std::fs::read_dir(format!("/proc/{}/fd", owner.tgid)).ok()?;
    for entry in dir.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.as_os_str() == wanted.as_str()
            && let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok())
        {
            owner.fd = fd;
            return crate::sys::fd::dup_fd(owner.tgid, fd).filter(matches);
        }
    }
    None
}

impl ProgramSide for ProgramSocket {
    fn rtt(&self) -> Duration {
        self.link.rtt()
    }

    fn nodelay(&mut self) -> Option<bool> {
        let mut owner = self.owner()?;
        let on = nodelay_of(&mut owner);
        self.owner = Some(owner);
        on
    }

    fn waiting_for_input(&mut self) -> bool {
        self.owner()
            .is_some_and(|owner| a_thread_waits_for_input(owner.tgid))
    }
}

/// `TCP_NODELAY` of the owner's socket; follows the socket to another fd.
fn nodelay_of(owner: &mut Owner) -> Option<bool> {
    let socket = program_socket(owner)?;
    rustix::net::sockopt::tcp_nodelay(&socket).ok()
}

/// Whether some thread of process `tgid` sits in a wait for input.
fn a_thread_waits_for_input(tgid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{tgid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("syscall"))
            .is_ok_and(|line| waits_for_input(&line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines_that_wait_for_input() {
        assert!(waits_for_input(
            "0 0x3 0x7ffd5c0 0x1000 0x0 0x0 0x0 0x7ffd5b8 0x7f12"
        ));
        assert!(waits_for_input(
            "232 0x4 0x7ffd 0x20 0xffffffff 0x0 0x0 0x1 0x2"
        ));
        assert!(waits_for_input(
            "7 0x7ffd 0x1 0xffffffff 0x0 0x0 0x0 0x1 0x2"
        ));
        assert!(!waits_for_input("running"));
        assert!(!waits_for_input("1 0x3 0x7ffd 0x1 0x0 0x0 0x0 0x1 0x2"));
        assert!(!waits_for_input(
            "61 0xffffffff 0x0 0x0 0x0 0x0 0x0 0x1 0x2"
        ));
        assert!(!waits_for_input(""));
    }

    fn own_socket() -> (std::net::TcpStream, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let s =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        (s, listener)
    }

    #[test]
    fn nodelay_is_read_from_the_program_socket_even_after_a_dup2() {
        use std::os::fd::AsRawFd;
        let (s, _l) = own_socket();
        let ino = rustix::fs::fstat(&s).expect("fstat").st_ino;
        let tgid = i32::try_from(std::process::id()).expect("pid");
        let mut owner = Owner {
            tgid,
            fd: s.as_raw_fd(),
            ino,
        };
        assert_eq!(nodelay_of(&mut owner), Some(false));
        s.set_nodelay(true).expect("nodelay");
        assert_eq!(nodelay_of(&mut owner), Some(true));
        // The program moved the socket to another fd and closed the first.
        let moved = rustix::io::dup(&s).expect("dup");
        drop(s);
        assert_eq!(nodelay_of(&mut owner), Some(true));
        assert_eq!(owner.fd, moved.as_raw_fd());
        drop(moved);
        assert_eq!(nodelay_of(&mut owner), None, "the socket is gone");
    }

    #[test]
    fn a_thread_blocked_in_read_is_seen_waiting_for_input() {
        let tgid = i32::try_from(std::process::id()).expect("pid");
        let (rd, wr) = rustix::pipe::pipe().expect("pipe");
        let reader = std::thread::spawn(move || {
            let mut b = [0u8; 1];
            let _ = rustix::io::read(&rd, &mut b);
        });
        // The reader blocks in read(2) soon; /proc shows it there.
        let mut seen = false;
        for _ in 0..2000 {
            if a_thread_waits_for_input(tgid) {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        rustix::io::write(&wr, b"x").expect("write");
        reader.join().expect("join");
        assert!(seen, "no thread seen in read(2)");
    }
}
