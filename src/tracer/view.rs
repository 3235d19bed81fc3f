//! [`TraceeView`]: the planner's view of one stopped thread (its memory,
//! fds, sockets and cwd), the [`Tracee`] trait the pure planner asks.
//!
//! Reads only: must not change the thread, its registers or rscq's state
//! (except consuming a connect error the program reads, as the kernel would).

use nix::unistd::Pid;

use super::registry::SocketsByFd;
use super::state::ProcessState;
use super::{Forwarder, RemoteSocket, Tracer, mem};
use crate::errno::Errno;
use crate::syscall::plan::{FdKind, Tracee};

/// The fds an epoll instance watches for input, from the `tfd:` lines of
/// its `/proc/PID/fdinfo/EPFD`.
fn epoll_input_fds(fdinfo: &str) -> Vec<(i32, bool)> {
    fdinfo
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "tfd:" {
                return None;
            }
            let fd: i32 = words.next()?.parse().ok()?;
            if words.next()? != "events:" {
                return None;
            }
            let events = u32::from_str_radix(words.next()?, 16).ok()?;
            let edge = events & libc::EPOLLET.cast_unsigned() != 0;
            (events & libc::EPOLLIN.cast_unsigned() != 0).then_some((fd, edge))
        })
        .collect()
}

/// The planner's view of one stopped thread.
pub(super) struct TraceeView<'t, 'a, F: Forwarder> {
    pub(super) tracer: &'t mut Tracer<'a, F>,
    pub(super) pid: Pid,
}

impl<F: Forwarder> TraceeView<'_, '_, F> {
    fn process(&self) -> Option<&ProcessState> {
        let tid = self.pid.as_raw();
        let tgid = self.tracer.tgid_of(tid);
        self.tracer.processes.get(&tgid)
    }
}

impl<F: Forwarder> Tracee for TraceeView<'_, '_, F> {
    fn tgid(&mut self) -> i32 {
        let tid = self.pid.as_raw();
        self.tracer.tgid_of(tid)
    }

    fn shadow_maps(&mut self, addr: u64, len: u64) -> Vec<Vec<u8>> {
        let Some(dir) = &self.tracer.placeholders else {
            return Vec::new();
        };
        let mut prefix = dir.path().as_os_str().as_encoded_bytes().to_vec();
        prefix.extend_from_slice(b"/shadow-");
        let tid = self.pid.as_raw();
        match std::fs::read(format!("/proc/{tid}/maps")) {
            Ok(maps) => crate::syscall::mapping::shadows_in(&maps, &prefix, addr, len),
            Err(_) => Vec::new(),
        }
    }

    fn holds_record_locks(&mut self) -> bool {
        self.process().is_some_and(|p| p.record_locks)
    }

    fn local_link(&mut self, path: &[u8]) -> Option<Vec<u8>> {
        use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
        // readlink(2) on rscq's side sees the program's file system (same
        // mount namespace); a path that is not a link gives EINVAL, cheaply.
        std::fs::read_link(std::ffi::OsStr::from_bytes(path))
            .ok()
            .map(|target| target.into_os_string().into_vec())
    }

    fn read_path(&mut self, addr: u64) -> Result<Vec<u8>, Errno> {
        mem::read_cstring(self.pid, addr)
    }

    fn read_bytes(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        mem::read_bytes(self.pid, addr, len)
    }

    fn cwd(&mut self) -> Result<Vec<u8>, Errno> {
        if let Some(cwd) = self.process().and_then(|p| p.virtual_cwd.clone()) {
            return Ok(cwd);
        }
        use std::os::unix::ffi::OsStrExt;
        std::fs::read_link(format!("/proc/{}/cwd", self.pid))
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .map_err(|e| Errno::from_io(&e))
    }

    fn has_virtual_cwd(&mut self) -> bool {
        self.process().is_some_and(|p| p.virtual_cwd.is_some())
    }

    fn fd(&mut self, fd: i32) -> FdKind {
        if fd < 0 || self.tracer.registry.is_empty() {
            return FdKind::Local;
        }
        self.tracer.registry.lookup(self.pid.as_raw(), fd)
    }

    fn is_open(&mut self, fd: i32) -> bool {
        fd >= 0 && self.tracer.dup_fd(self.pid, fd).is_some()
    }

    fn socket_kind(&mut self, fd: i32) -> Option<(i32, i32)> {
        let dup = self.tracer.dup_fd(self.pid, fd)?;
        let domain = rustix::net::sockopt::socket_domain(&dup).ok()?;
        let ty = rustix::net::sockopt::socket_type(&dup).ok()?;
        Some((i32::from(domain.as_raw()), i32::try_from(ty.as_raw()).ok()?))
    }

    fn socket_protocol(&mut self, fd: i32) -> Option<i32> {
        let dup = self.tracer.dup_fd(self.pid, fd)?;
        let protocol = rustix::net::sockopt::socket_protocol(&dup).ok()??;
        i32::try_from(protocol.as_raw().get()).ok()
    }

    fn remote_socket(&mut self, fd: i32) -> Option<RemoteSocket> {
        self.tracer.sockets.lookup(self.pid.as_raw(), fd)
    }

    fn socket_readable(&mut self, fd: i32) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let Some(dup) = self.tracer.dup_fd(self.pid, fd) else {
            return false;
        };
        let mut fds = [PollFd::new(&dup, PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&now)).is_ok_and(|n| n > 0)
    }

    fn socket_unread(&mut self, fd: i32) -> Option<usize> {
        let dup = self.tracer.dup_fd(self.pid, fd)?;
        rustix::io::ioctl_fionread(&dup)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
    }

    fn epoll_inputs(&mut self, epfd: i32) -> Vec<(i32, bool)> {
        let path = format!("/proc/{}/fdinfo/{epfd}", self.pid);
        std::fs::read_to_string(path)
            .map(|text| epoll_input_fds(&text))
            .unwrap_or_default()
    }

    fn remote_listener(&mut self, fd: i32) -> Option<u64> {
        self.tracer.sockets.lookup_listener(self.pid.as_raw(), fd)
    }

    fn socket_shared(&mut self, fd: i32) -> bool {
        let tgids = self.tracer.processes.keys().copied();
        super::registry::socket_shared(self.pid.as_raw(), fd, tgids)
    }

    fn dual_stack(&mut self, fd: i32) -> bool {
        let Some(dup) = self.tracer.dup_fd(self.pid, fd) else {
            return false;
        };
        rustix::fs::fstat(&dup).is_ok_and(|st| self.tracer.sockets.is_dual_stack(st.st_ino))
    }

    fn v6_only(&mut self, fd: i32) -> bool {
        let Some(dup) = self.tracer.dup_fd(self.pid, fd) else {
            return false;
        };
        rustix::net::sockopt::ipv6_v6only(&dup).unwrap_or(false)
            && !rustix::fs::fstat(&dup).is_ok_and(|st| self.tracer.sockets.is_dual_stack(st.st_ino))
    }

    fn connect_error(&mut self, fd: i32) -> Option<Errno> {
        let dup = self.tracer.dup_fd(self.pid, fd)?;
        let ino = rustix::fs::fstat(&dup).ok()?.st_ino;
        let errno = self.tracer.sockets.take_connect_error(ino)?;
        // The kernel saw rscq's stand-in connection reset: that pending
        // error is consumed here, as reading SO_ERROR consumes it.
        let _ = rustix::net::sockopt::socket_error(&dup);
        Some(errno)
    }

    fn udp_relay(
        &mut self,
        v6: bool,
        peer: crate::proto::SockAddr,
    ) -> Option<crate::proto::SockAddr> {
        self.tracer.forwarder.udp_relay(v6, peer).map(Into::into)
    }

    fn local_fd_path(&mut self, fd: i32) -> Option<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let target = std::fs::read_link(format!("/proc/{}/fd/{fd}", self.pid)).ok()?;
        let bytes = target.as_os_str().as_bytes();
        bytes.starts_with(b"/").then(|| bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_fdinfo_lists_input_fds() {
        let fdinfo = "pos:\t0\nflags:\t02\nmnt_id:\t16\nino:\t1057\n\
                      tfd:        5 events:       19 data:                5  pos:0 ino:4 sdev:9\n\
                      tfd:        7 events:        4 data:                7  pos:0 ino:5 sdev:9\n\
                      tfd:        9 events: 80000001 data:                9  pos:0 ino:6 sdev:9\n";
        assert_eq!(epoll_input_fds(fdinfo), vec![(5, false), (9, true)]);
    }
}
