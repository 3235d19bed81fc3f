//! `--pure --net`: data calls on remote TCP sockets go stop-and-wait. A
//! receive on an empty socket first fetches (one round trip) into the
//! program's socket, a send is one round trip, and a wait for input
//! (`poll`, `select`, `epoll_wait`) starts one fetch per empty socket. A
//! `poll` for room to send only waits on the server when the last send
//! found no room there.
//!
//! Plans only: the fetches and sends are the engine's (`src/client/pure.rs`).
//! A call on anything but a pure remote socket is not this module's (`None`).

use crate::errno::Errno;
use crate::proto::MAX_IO;
use crate::syscall::plan::{Plan, Planner, PureWait, Tracee, arg_i32, io_count};

/// `ioctl(SIOCATMARK)`, which the libc crate does not define for Linux
/// (`asm-generic/sockios.h`).
pub(crate) const SIOCATMARK: u64 = 0x8905;

impl<T: Tracee> Planner<'_, T> {
    /// The pure pump of a remote socket fd.
    fn pure_pump(&mut self, fd: i32) -> Option<u64> {
        self.t.remote_socket(fd).and_then(|s| s.pure_pump)
    }

    /// `--pure --net`: data calls on remote sockets go stop-and-wait. `None`
    /// when the call does not concern a pure remote socket.
    pub(in crate::syscall) fn pure_socket_call(&mut self, nr: i64, a: [u64; 6]) -> Option<Plan> {
        let fd = arg_i32(a[0]);
        match nr {
            libc::SYS_read | libc::SYS_readv | libc::SYS_recvfrom | libc::SYS_recvmsg => {
                self.pure_receive(nr, a)
            }
            libc::SYS_write | libc::SYS_writev | libc::SYS_sendto | libc::SYS_sendmsg => {
                self.pure_send(nr, a)
            }
            libc::SYS_poll | libc::SYS_ppoll => {
                self.poll_room(nr, a).or_else(|| self.poll_prefetch(a))
            }
            libc::SYS_select | libc::SYS_pselect6 => self.select_prefetch(a),
            libc::SYS_epoll_wait | libc::SYS_epoll_pwait | libc::SYS_epoll_pwait2 => {
                let fds = self.t.epoll_inputs(fd);
                self.prefetch_plan(&fds)
            }
            // `FIONREAD` counts what the remote socket holds and
            // `SIOCATMARK` looks for its urgent mark: one round trip
            // brings it all (urgent byte and mark included) into the
            // program's socket, and the ioctl then runs on it.
            libc::SYS_ioctl if a[1] == libc::FIONREAD || a[1] == SIOCATMARK => Some(
                Plan::pure_recv(fd, self.pure_pump(fd)?, MAX_IO, PureWait::Available),
            ),
            _ => None,
        }
    }

    /// `read`, `readv`, `recvfrom` and `recvmsg`: a fetch first, unless the
    /// socket can already answer.
    fn pure_receive(&mut self, nr: i64, a: [u64; 6]) -> Option<Plan> {
        let fd = arg_i32(a[0]);
        let pump = self.pure_pump(fd)?;
        let (len, flags) = match nr {
            libc::SYS_read => (a[2], 0),
            libc::SYS_recvfrom => (a[2], arg_i32(a[3])),
            libc::SYS_readv => (self.iov_total(a[1], a[2]), 0),
            _ => (self.msg_iov_total(a[1]), arg_i32(a[2])),
        };
        // Urgent data is never waited for (EINVAL when none came): one
        // non-blocking fetch brings what the server has, the urgent byte
        // included, and the call runs on the program's socket.
        if flags & libc::MSG_OOB != 0 {
            return Some(Plan::pure_recv(fd, pump, MAX_IO, PureWait::Available));
        }
        if flags & libc::MSG_PEEK != 0 && len == 0 {
            return Some(Plan::Native);
        }
        let wait = if flags & libc::MSG_DONTWAIT != 0 {
            PureWait::DontWait
        } else if flags & libc::MSG_WAITALL != 0 {
            PureWait::All
        } else {
            PureWait::Any
        };
        let unread = u64::try_from(self.t.socket_unread(fd).unwrap_or(0)).unwrap_or(0);
        // A peek shows all that arrived, as the kernel's: what the server
        // holds beyond an earlier, shorter fetch comes first, without
        // waiting for more.
        if flags & libc::MSG_PEEK != 0 && unread > 0 && unread < len {
            let more = io_count(len - unread);
            return Some(Plan::pure_recv(fd, pump, more, PureWait::Available));
        }
        // Bytes already in the socket answer the call natively,
        // unless MSG_WAITALL asks for more than is there; so does a
        // socket the program shut down for reading (end of file).
        if unread > 0 && !(wait == PureWait::All && unread < len) {
            return Some(Plan::Native);
        }
        if unread == 0 && self.t.socket_readable(fd) {
            return Some(Plan::Native);
        }
        Some(Plan::pure_recv(fd, pump, io_count(len), wait))
    }

    /// `write`, `writev`, `sendto` and `sendmsg`: one round trip.
    fn pure_send(&mut self, nr: i64, a: [u64; 6]) -> Option<Plan> {
        let fd = arg_i32(a[0]);
        let pump = self.pure_pump(fd)?;
        let data = match nr {
            libc::SYS_write | libc::SYS_sendto => self
                .t
                .read_bytes(a[1], usize::try_from(io_count(a[2])).unwrap_or(0)),
            libc::SYS_writev => self.gather(a[1], a[2]),
            _ => self.msg_gather(a[1]),
        };
        let flags = match nr {
            libc::SYS_sendto => arg_i32(a[3]),
            libc::SYS_sendmsg => arg_i32(a[2]),
            _ => 0,
        };
        Some(match data {
            Ok(data) => Plan::pure_send(
                fd,
                pump,
                data,
                flags & libc::MSG_DONTWAIT != 0,
                flags & libc::MSG_OOB != 0,
            ),
            Err(e) => Plan::fail(e),
        })
    }

    /// `poll(fds, nfds, timeout)` and `ppoll` that wait only for room to
    /// send on one remote socket (Python's sends with a timeout, its
    /// `sendfile`): the program's own socket always polls writable, so the
    /// engine waits for room on the server (if the last send found none)
    /// before the poll runs. A poll for anything else, or on several
    /// sockets, runs as before.
    fn poll_room(&mut self, nr: i64, a: [u64; 6]) -> Option<Plan> {
        const ROOM: i16 = libc::POLLOUT | libc::POLLWRNORM;
        let n = usize::try_from(a[1])
            .ok()
            .filter(|n| (1..=16).contains(n))?;
        let bytes = self.t.read_bytes(a[0], n * 8).ok()?;
        let mut on: Option<(i32, u64)> = None;
        for p in bytes.chunks_exact(8) {
            let fd = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
            let events = i16::from_ne_bytes([p[4], p[5]]);
            // A negative fd is not polled.
            if fd < 0 {
                continue;
            }
            if events & ROOM == 0 || events & !ROOM != 0 {
                return None;
            }
            let pump = self.pure_pump(fd)?;
            if on.is_some_and(|(_, other)| other != pump) {
                return None;
            }
            on = Some((fd, pump));
        }
        let (fd, pump) = on?;
        let timeout = if nr == libc::SYS_poll {
            u64::try_from(arg_i32(a[2]))
                .ok()
                .map(std::time::Duration::from_millis)
        } else if a[2] == 0 {
            None
        } else {
            let ts = self.t.read_bytes(a[2], 16).ok()?;
            let word = |o: usize| i64::from_ne_bytes(ts[o..o + 8].try_into().unwrap_or([0; 8]));
            let secs = u64::try_from(word(0)).ok()?;
            let nanos = u32::try_from(word(8)).ok().filter(|n| *n < 1_000_000_000)?;
            Some(std::time::Duration::new(secs, nanos))
        };
        Some(Plan::pure_room(fd, pump, timeout))
    }

    /// `poll(fds, nfds, ...)` and `ppoll`: the fds waited on for input.
    fn poll_prefetch(&mut self, a: [u64; 6]) -> Option<Plan> {
        let n = usize::try_from(a[1].min(4096)).unwrap_or(0);
        let bytes = self.t.read_bytes(a[0], n * 8).ok()?;
        let fds: Vec<(i32, bool)> = bytes
            .chunks_exact(8)
            .filter(|p| i16::from_ne_bytes([p[4], p[5]]) & (libc::POLLIN | libc::POLLRDNORM) != 0)
            .map(|p| (i32::from_ne_bytes([p[0], p[1], p[2], p[3]]), false))
            .collect();
        self.prefetch_plan(&fds)
    }

    /// `select(nfds, readfds, ...)` and `pselect6`: the fds in `readfds`.
    fn select_prefetch(&mut self, a: [u64; 6]) -> Option<Plan> {
        let nfds = usize::try_from(a[0].min(1024)).unwrap_or(0);
        if a[1] == 0 || nfds == 0 {
            return None;
        }
        let bytes = self.t.read_bytes(a[1], nfds.div_ceil(64) * 8).ok()?;
        let fds: Vec<(i32, bool)> = (0..nfds)
            .filter(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
            .filter_map(|i| Some((i32::try_from(i).ok()?, false)))
            .collect();
        self.prefetch_plan(&fds)
    }

    /// A wait for input on `fds` (each with whether it is edge-triggered)
    /// starts one fetch for each remote socket that has nothing to read, so
    /// that it can become readable; an edge-triggered one needs new bytes
    /// to be reported again even when it has some.
    fn prefetch_plan(&mut self, fds: &[(i32, bool)]) -> Option<Plan> {
        let mut pumps = Vec::new();
        let mut udp = Vec::new();
        for &(fd, edge) in fds {
            let Some(sock) = self.t.remote_socket(fd) else {
                continue;
            };
            if !edge && self.t.socket_unread(fd).unwrap_or(0) != 0 {
                continue;
            }
            if let Some(pump) = sock.pure_pump {
                pumps.push(pump);
            }
            if let Some(id) = sock.udp {
                udp.push(id);
            }
        }
        (!pumps.is_empty() || !udp.is_empty()).then(|| Plan::prefetch(pumps, udp))
    }

    fn iov_total(&mut self, addr: u64, count: u64) -> u64 {
        self.iovecs(addr, count)
            .map(|v| v.iter().map(|&(_, l)| l).fold(0u64, u64::saturating_add))
            .unwrap_or(0)
    }

    /// `(msg_iov, msg_iovlen)` of a `struct msghdr`.
    fn msg_iov(&mut self, msg: u64) -> Result<(u64, u64), Errno> {
        let b = self.t.read_bytes(msg, 56)?;
        let word = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_ne_bytes(w)
        };
        Ok((word(16), word(24)))
    }

    fn msg_iov_total(&mut self, msg: u64) -> u64 {
        self.msg_iov(msg)
            .map_or(0, |(iov, n)| self.iov_total(iov, n))
    }

    fn gather(&mut self, addr: u64, count: u64) -> Result<Vec<u8>, Errno> {
        let limit = usize::try_from(MAX_IO).unwrap_or(usize::MAX);
        let mut data = Vec::new();
        for (base, len) in self.iovecs(addr, count)? {
            let take = usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(limit - data.len());
            data.extend_from_slice(&self.t.read_bytes(base, take)?);
            if data.len() == limit {
                break;
            }
        }
        Ok(data)
    }

    fn msg_gather(&mut self, msg: u64) -> Result<Vec<u8>, Errno> {
        let (iov, n) = self.msg_iov(msg)?;
        self.gather(iov, n)
    }
}
