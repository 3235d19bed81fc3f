//! The hand-off of a trapped call to its planner families: the families
//! of a number come from the one table ([`crate::syscall::nr`]), in the
//! order they are asked; the first that takes the call plans it.
//!
//! Must not match on syscall numbers to pick a family (that is the table's
//! job) nor plan a call itself beyond the one-line families (`socket`,
//! `uname`, `munmap`/`msync`, `close`).

use crate::proto::Request;
use crate::syscall::nr::{self, Family};
use crate::syscall::paths::RemoteIndex;
use crate::syscall::plan::{AfterNative, FdKind, Forwarding, Plan, Planner, Then, Tracee, arg_i32};

/// Decides what to do with trapped syscall `nr` with arguments `args`: the
/// call's planner families ([`nr::families`], from the one table) are asked
/// in order, and the first that takes it plans it.
pub fn plan(nr: i64, args: [u64; 6], fwd: &Forwarding, t: &mut impl Tracee) -> Plan {
    plan_on(nr, args, fwd, t).0
}

/// [`plan`], with the remote a forwarded plan goes to: that of the mount
/// or remote fd it acts on; `None` when it names neither (a socket call
/// goes to the `--net` remote, `uname` to the `--uname` one).
pub fn plan_on(
    nr: i64,
    args: [u64; 6],
    fwd: &Forwarding,
    t: &mut impl Tracee,
) -> (Plan, Option<RemoteIndex>) {
    let mut p = Planner {
        mounts: &fwd.mounts,
        system_files: &fwd.system_files,
        t,
        follow_last: false,
        on: None,
    };
    let plan = nr::families(nr)
        .iter()
        .filter(|family| family.offered(fwd))
        .find_map(|&family| p.family_call(family, nr, args, fwd))
        .unwrap_or(Plan::Native);
    (plan, p.on)
}

impl<T: Tracee> Planner<'_, T> {
    /// Offers call `nr` to one planner family; `None` when the call is not
    /// that family's (a UDP planner asked about a TCP socket).
    fn family_call(
        &mut self,
        family: Family,
        nr: i64,
        args: [u64; 6],
        fwd: &Forwarding,
    ) -> Option<Plan> {
        match family {
            Family::Udp => super::net::udp::plan(nr, args, fwd.pure_net, false, self.t),
            Family::PureSocket => self.pure_socket_call(nr, args),
            Family::UnixSocket => self.unix_socket_call(nr, args),
            // Trapped for ICMP and UDP-Lite, whose echo ("ping") and
            // UDP-Lite sockets become UDP ones carried to a server socket of
            // their kind (`net::standin`).
            Family::SocketCreate => Some(if fwd.net {
                super::net::standin::plan_socket(
                    arg_i32(args[0]),
                    arg_i32(args[1]),
                    arg_i32(args[2]),
                )
                .unwrap_or(Plan::Native)
            } else {
                Plan::Native
            }),
            Family::Net => Some(if fwd.net {
                self.net_call(nr, args)
            } else {
                Plan::Native
            }),
            Family::Uname => Some(if fwd.uname {
                Plan::forward(Request::Uname, Then::Uname { addr: args[0] })
            } else {
                Plan::Native
            }),
            Family::Mmap => Some(match self.fd(arg_i32(args[4])) {
                FdKind::Remote(rfd) => super::mapping::plan(&rfd, args),
                FdKind::Local => Plan::Native,
            }),
            Family::SharedSync => {
                let paths = self.t.shadow_maps(args[0], args[1]);
                Some(if paths.is_empty() {
                    Plan::Native
                } else {
                    Plan::sync_shadows(paths, nr == libc::SYS_munmap)
                })
            }
            Family::Close => Some(self.close(args)),
            Family::Fd => Some(self.fd_call(nr, args)),
            Family::Path => Some(self.path_call(nr, args)),
            Family::Creds => Some(Plan::NativeRewritten {
                paths: Vec::new(),
                after: AfterNative::CredsChanged,
            }),
        }
    }

    /// `close` of a remote file: its record locks go first, or its held
    /// writes.
    fn close(&mut self, args: [u64; 6]) -> Plan {
        match self.fd(arg_i32(args[0])) {
            FdKind::Remote(rfd) if self.t.holds_record_locks() => {
                let owner = self.t.tgid().cast_unsigned();
                Plan::forward(
                    Request::ReleaseLocks {
                        owner,
                        handle: Some(rfd.handle),
                    },
                    Then::CloseAfterRelease,
                )
            }
            // Also with `--pure`: a close is where shared mappings of the
            // file write back (answered locally when there is nothing).
            FdKind::Remote(rfd) if !rfd.is_dir => Plan::forward(
                Request::FlushWrites { handle: rfd.handle },
                Then::CloseAfterFlush,
            ),
            FdKind::Remote(_) => Plan::Native,
            FdKind::Local => self.close_socket(arg_i32(args[0])),
        }
    }

    /// `close` of a local fd: the last one of a socket bound or listening
    /// on the server releases the server's socket first, so that its port
    /// is free and connects to it refused when the close returns, as the
    /// kernel does; so does the last one of a remote UDP socket, or of a
    /// `--pure` connection (whose server socket closes once what the
    /// program sent went). A socket another fd still holds stays.
    fn close_socket(&mut self, fd: i32) -> Plan {
        if let Some(listener) = self.t.remote_listener(fd) {
            return if self.t.socket_shared(fd) {
                Plan::Native
            } else {
                Plan::release_tcp(fd, listener)
            };
        }
        let Some(socket) = self.t.remote_socket(fd) else {
            return Plan::Native;
        };
        match (socket.udp, socket.pure_pump) {
            _ if self.t.socket_shared(fd) => Plan::Native,
            (Some(udp), _) => Plan::release_udp(fd, udp),
            (None, Some(pump)) => Plan::release_pure(fd, pump),
            (None, None) => Plan::Native,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::testutil::{FakeTracee, mounted};

    /// Where every pointer argument points: a path in the mount. Its low
    /// word is 0, so as an fd it is fd 0 and as flags it is none.
    const P: u64 = 0x10_0000_0000;

    /// Plans `nr` with every argument `P` (an absolute path in the mount,
    /// so a dirfd argument does not matter) and fd 0 remote.
    fn plan_remote(nr: i64) -> Plan {
        let mut t = FakeTracee::new();
        t.put_str(P, "/r/x");
        t.remote_fd(0, 7, "/r/x", libc::O_RDWR, false);
        plan(nr, [P; 6], &mounted(), &mut t)
    }

    /// A number the table gives to the path or fd planner has an arm
    /// there: on a remote path or fd it is not simply let run.
    #[test]
    fn every_path_and_fd_call_has_a_planner_arm() {
        // Native on these arguments for a reason of their own: the cwd is
        // local, and `fcntl` command 0 (`F_DUPFD`) is the kernel's.
        let native_here = [libc::SYS_getcwd, libc::SYS_fcntl];
        let planned = |f: &Family| matches!(f, Family::Path | Family::Fd);
        let unplanned: Vec<&str> = nr::TABLE
            .iter()
            .filter(|call| call.families.iter().any(planned))
            .filter(|call| (plan_remote(call.nr) == Plan::Native) != native_here.contains(&call.nr))
            .map(|call| call.name)
            .collect();
        assert!(unplanned.is_empty(), "no planner arm: {unplanned:?}");
    }

    #[test]
    fn a_number_outside_the_table_runs_natively() {
        assert_eq!(plan_remote(libc::SYS_getpid), Plan::Native);
        assert_eq!(plan_remote(libc::SYS_mremap), Plan::Native);
    }

    /// The last close of a socket bound on the server releases it first;
    /// a socket another fd holds, and any other local fd, just close.
    #[test]
    fn closing_a_remote_listener_releases_it_unless_shared() {
        use crate::syscall::operation::{Operation, Waiting};
        let fwd = crate::syscall::testutil::net(false);
        let mut t = FakeTracee::new();
        t.listeners.insert(5, 42);
        t.listeners.insert(6, 43);
        t.shared_sockets.insert(6);
        let close =
            |t: &mut FakeTracee, fd: u64| plan(libc::SYS_close, [fd, 0, 0, 0, 0, 0], &fwd, t);
        assert_eq!(
            close(&mut t, 5),
            Plan::Remote {
                operation: Operation::TcpRelease { listener: 42 },
                fd: Some(5),
                wait: Waiting::Held(Then::CloseAfterRelease),
            }
        );
        assert_eq!(close(&mut t, 6), Plan::Native);
        assert_eq!(close(&mut t, 7), Plan::Native);
    }
}
