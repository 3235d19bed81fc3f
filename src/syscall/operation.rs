//! [`Operation`]: one remote operation as a value, the one thing the tracer
//! hands the engine for a stopped call (with the program's fd, taken once
//! during the stop), and [`Waiting`]: how the thread waits for it.
//!
//! The planners build operations; the engine (`crate::client`) interprets
//! them; the tracer only carries them and puts the thread to wait. So a new
//! kind of remote call that blocks (a connect today, a lock wait tomorrow)
//! is one more variant here and one arm in the engine, not a new path
//! through the tracer.
//!
//! Pure values only: must not do I/O, call ptrace or read the clock.

use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::{Handle, IpFields, OptionTarget, RemotePath, Request, SockAddr, SockOption};
use crate::syscall::describe::{CopyCall, Shown, describe_as};
use crate::syscall::paths::MountTable;
use crate::syscall::plan::{Plan, PureWait, Then};

/// A remote operation for one call of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// A file request, through the engine's file layers (a lock that may
    /// wait carries its sleep number, see [`Operation::numbered`]).
    File(Request),
    /// Connect the program's TCP socket to `addr` on the server; the reply
    /// is `Done` (→ 0) or the remote errno.
    TcpConnect { addr: SockAddr },
    /// Bind the program's TCP socket on the server (and, locally, to a
    /// loopback port where remote connections will be delivered).
    TcpBind { addr: SockAddr },
    /// Start listening on the server and locally.
    TcpListen { listener: u64, backlog: u32 },
    /// The program's last fd of a socket bound or listening on the server
    /// is being closed: the server's socket `listener` goes first, so its
    /// port is free (and connects to it refused) once the close returns;
    /// replies `Done`.
    TcpRelease { listener: u64 },
    /// The program's last fd of remote UDP socket `udp` is being closed:
    /// the server's socket goes first; replies `Done`.
    UdpRelease { udp: u64 },
    /// `--pure`: the program's last fd of the connection of `pump` is
    /// being closed: once what the program sent went, the server's socket
    /// closes too (a `shutdown` leaves it open); replies `Done` at once.
    PureRelease { pump: u64 },
    /// `--pure`: fetch at most `len` bytes into the program's empty remote
    /// socket (one round trip); the call then runs natively.
    PureRecv { pump: u64, len: u32, wait: PureWait },
    /// `--pure`: a send on a remote socket, as one round trip; replies
    /// `Count` or the errno. `urgent`: `MSG_OOB`, the last byte is urgent.
    PureSend {
        pump: u64,
        data: Vec<u8>,
        urgent: bool,
    },
    /// `--pure`: a `poll` for room to send on a remote socket. If the
    /// socket's last send found the server's socket full, wait there until
    /// it has room (at most `timeout`; `None`: no limit); then the poll
    /// runs natively, or returns 0 (the reply `Count(0)`) if the timeout
    /// passed first.
    PureRoom {
        pump: u64,
        timeout: Option<Duration>,
    },
    /// Bind the program's UDP socket on the server (and locally to a
    /// loopback port).
    UdpBind { addr: SockAddr },
    /// Connect a remote UDP socket on the server, and locally to the
    /// peer's relay; `None` (`AF_UNSPEC`) dissolves the association.
    UdpConnect { udp: u64, addr: Option<SockAddr> },
    /// `--pure`: one datagram sent on the server; replies `Count`. `ip`:
    /// the fields its `sendmsg` control messages set (the socket's own
    /// options are read by the engine).
    UdpSend {
        udp: u64,
        peer: Option<SockAddr>,
        data: Vec<u8>,
        ip: IpFields,
    },
    /// `--pure`: fetch one datagram into the program's empty remote UDP
    /// socket; the call then runs natively.
    UdpRecv { udp: u64, dontwait: bool },
    /// `mmap`: make (or bring up to date) the shadow file of
    /// the file `handle` is of; replies its path.
    MapShadow { handle: Handle, writable: bool },
    /// Write what shared mappings changed in the shadows at `paths` (all
    /// when empty) to the server. With `report`, failures are said on
    /// stderr and the reply is `Done`.
    SyncShadows { paths: Vec<Vec<u8>>, report: bool },
    /// Copy the remote executable `path` to the new local file `copy`, once
    /// the thread may run it; replies `Done` (or a symlink's target).
    FetchExecutable { path: RemotePath, copy: Vec<u8> },
    /// The program set `option` on an INET stream socket: on the server's
    /// socket `target` now, or with its connect or bind if it has none yet.
    /// No reply, except for an option [`SockOption::server_only`] (`Done`
    /// or the server's errno).
    SetSockOption {
        target: Option<OptionTarget>,
        option: SockOption,
    },
    /// `--pure`: one fetch on each of these pumps and remote UDP sockets,
    /// unless one is under way. No reply.
    Prefetch { pumps: Vec<u64>, udp: Vec<u64> },
    /// `getsockopt(TCP_INFO)` of the remote connection from `local` to
    /// `peer` (the server's addresses); replies `Data`.
    TcpInfo { local: SockAddr, peer: SockAddr },
}

/// How the thread whose call is an [`Operation`] waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Held in its seccomp stop until the reply, which goes through `then`.
    Held(Then),
    /// Asleep interruptibly until the reply, which is the call's result (a
    /// count, 0 or an errno).
    Asleep,
    /// Asleep as [`Waiting::Asleep`] if its socket blocks; a non-blocking
    /// one is held (its reply through `then`).
    AsleepIfBlocking(Then),
    /// Asleep interruptibly until the engine made the call ready (data in
    /// its socket); it then runs natively. A reply `Count(n)` is instead
    /// the call's result, and an errno its failure: it does not run.
    UntilReady,
    /// Not at all: the call runs natively at once, and nothing replies.
    No,
}

/// What a signal does to a thread asleep in an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSignal {
    /// The call ends at once with `-ERESTARTSYS` (restarted after an
    /// `SA_RESTART` handler, else EINTR); the engine is told, and the
    /// operation goes on without the thread (a connect) or is dropped.
    Restart,
    /// A signal the program handles makes the engine stop the operation,
    /// whose answer is the call's result (the bytes a send got out, a lock
    /// that came first); one that does nothing leaves the sleep alone.
    AskEngine,
    /// As [`OnSignal::Restart`], but after a handler the call fails with
    /// EINTR even if the handler has `SA_RESTART` (`-ERESTARTNOHAND`), as
    /// the kernel's `poll` does.
    Interrupt,
}

impl Operation {
    /// What a signal does to a thread asleep in this operation.
    pub fn on_signal(&self) -> OnSignal {
        match self {
            Self::PureSend { .. } | Self::File(_) => OnSignal::AskEngine,
            Self::PureRoom { .. } => OnSignal::Interrupt,
            _ => OnSignal::Restart,
        }
    }

    /// The operation as sleep number `op` carries it: a lock that may wait
    /// names its wait, so that a signal can cancel it on the server.
    pub fn numbered(self, op: u64) -> Self {
        match self {
            Self::File(request) => Self::File(super::locks::with_wait(request, op)),
            other => other,
        }
    }

    /// The arguments of its `--trace` line, for a call on program fd `fd`,
    /// with paths as the server names them.
    pub fn trace_args(&self, fd: i32) -> String {
        self.trace_args_in(fd, None, None)
    }

    /// The arguments of its `--trace` line, for a call on program fd `fd`,
    /// with paths as the program names them through `mounts`; a copy
    /// between remote files shows the fds of the program's `copy` call.
    pub fn trace_args_in(
        &self,
        fd: i32,
        mounts: Option<&MountTable>,
        copy: Option<CopyCall>,
    ) -> String {
        let addr = |a: &SockAddr| SocketAddr::from(*a).to_string();
        let shown = Shown {
            fd: Some(fd),
            mounts,
            copy,
        };
        match self {
            Self::File(request) => describe_as(request, shown),
            Self::TcpConnect { addr: a }
            | Self::TcpBind { addr: a }
            | Self::UdpBind { addr: a } => {
                format!("{fd}, {}", addr(a))
            }
            Self::TcpListen { backlog, .. } => format!("{fd}, {backlog}"),
            Self::TcpRelease { .. } | Self::UdpRelease { .. } | Self::PureRelease { .. } => {
                format!("{fd}")
            }
            Self::PureRecv { len, .. } => format!("{fd}, {len}"),
            Self::PureSend { data, .. } => format!("{fd}, {}", data.len()),
            Self::PureRoom { .. } => format!("{fd}, POLLOUT"),
            Self::UdpConnect { addr: to, .. } => {
                format!(
                    "{fd}, {}",
                    to.as_ref().map_or("AF_UNSPEC".to_string(), addr)
                )
            }
            Self::UdpSend { peer, data, .. } => {
                let to = peer.as_ref().map(|p| format!(", {}", addr(p)));
                format!("{fd}, {}{}", data.len(), to.unwrap_or_default())
            }
            Self::UdpRecv { .. } => format!("{fd}"),
            // Shared or private: the program's own flags stay in its call.
            Self::MapShadow { handle, .. } => format!("NULL, #{}", handle.0),
            Self::SyncShadows { paths, .. } => format!("{} shared mappings", paths.len()),
            Self::FetchExecutable { path, .. } => Shown {
                fd: None,
                mounts,
                copy: None,
            }
            .path(path),
            Self::TcpInfo { .. } => format!("{fd}, SOL_TCP, TCP_INFO"),
            Self::SetSockOption { .. } | Self::Prefetch { .. } => String::new(),
        }
    }
}

/// The plans of the remote operations each family builds, by name.
impl Plan {
    /// `mmap(MAP_PRIVATE)` of a remote file: map its shadow natively,
    /// opened read-only (copy-on-write pages never reach the file).
    pub(crate) fn map_private(handle: Handle) -> Self {
        Self::map_shared(handle, false)
    }

    /// `mmap(MAP_SHARED)` of a remote file: map its shadow natively
    /// ([`Then::MapShadow`]), read-write if `writable`.
    pub(crate) fn map_shared(handle: Handle, writable: bool) -> Self {
        let operation = Operation::MapShadow { handle, writable };
        Self::unbound(operation, Waiting::Held(Then::MapShadow { writable }))
    }

    /// `munmap`/`msync` of a range that maps these shadows: their changes
    /// go to the server, then the call runs natively. With `report`
    /// (`munmap`), a failure is said on stderr; else (`msync`) it is the
    /// call's result.
    pub(crate) fn sync_shadows(paths: Vec<Vec<u8>>, report: bool) -> Self {
        let operation = Operation::SyncShadows { paths, report };
        Self::unbound(operation, Waiting::Held(Then::CloseAfterFlush))
    }

    /// A request that may wait on the server (a lock): the thread sleeps
    /// interruptibly until the reply, which is the call's result. The
    /// tracer numbers the wait ([`Operation::numbered`]).
    pub(crate) fn forward_wait(request: Request) -> Self {
        Self::unbound(Operation::File(request), Waiting::Asleep)
    }

    /// Connect TCP socket `fd` to `addr` on the server: a blocking socket
    /// sleeps meanwhile, a non-blocking one is held.
    pub(crate) fn connect_tcp(fd: i32, addr: SockAddr) -> Self {
        let operation = Operation::TcpConnect { addr };
        Self::remote(operation, fd, Waiting::AsleepIfBlocking(Then::Zero))
    }

    pub(crate) fn bind_tcp(fd: i32, addr: SockAddr) -> Self {
        Self::remote(Operation::TcpBind { addr }, fd, Waiting::Held(Then::Zero))
    }

    /// `close` of the program's last fd of socket `fd`, bound or listening
    /// on the server as `listener`: the server's socket is released, then
    /// the close runs natively.
    pub(crate) fn release_tcp(fd: i32, listener: u64) -> Self {
        let operation = Operation::TcpRelease { listener };
        Self::remote(operation, fd, Waiting::Held(Then::CloseAfterRelease))
    }

    /// `close` of the program's last fd of remote UDP socket `fd`: the
    /// server's socket is released, then the close runs natively.
    pub(crate) fn release_udp(fd: i32, udp: u64) -> Self {
        let operation = Operation::UdpRelease { udp };
        Self::remote(operation, fd, Waiting::Held(Then::CloseAfterRelease))
    }

    /// `close` of the program's last fd of `--pure` connection `fd`.
    pub(crate) fn release_pure(fd: i32, pump: u64) -> Self {
        let operation = Operation::PureRelease { pump };
        Self::remote(operation, fd, Waiting::Held(Then::CloseAfterRelease))
    }

    pub(crate) fn listen_tcp(fd: i32, listener: u64, backlog: u32) -> Self {
        let operation = Operation::TcpListen { listener, backlog };
        Self::remote(operation, fd, Waiting::Held(Then::Zero))
    }

    /// `--pure`: a receive on an empty remote socket.
    pub(crate) fn pure_recv(fd: i32, pump: u64, len: u32, wait: PureWait) -> Self {
        let operation = Operation::PureRecv { pump, len, wait };
        Self::remote(operation, fd, Waiting::UntilReady)
    }

    /// `--pure`: a send on a remote socket; one that may wait for room (a
    /// blocking socket, no `MSG_DONTWAIT`) sleeps interruptibly meanwhile.
    pub(crate) fn pure_send(
        fd: i32,
        pump: u64,
        data: Vec<u8>,
        dontwait: bool,
        urgent: bool,
    ) -> Self {
        let wait = if dontwait {
            Waiting::Held(Then::Number)
        } else {
            Waiting::AsleepIfBlocking(Then::Number)
        };
        let operation = Operation::PureSend { pump, data, urgent };
        Self::remote(operation, fd, wait)
    }

    /// `--pure`: a `poll` that waits only for room to send on remote socket
    /// `fd` (the wait's `timeout`, `None` for none).
    pub(crate) fn pure_room(fd: i32, pump: u64, timeout: Option<Duration>) -> Self {
        let operation = Operation::PureRoom { pump, timeout };
        Self::remote(operation, fd, Waiting::UntilReady)
    }

    /// `setsockopt` of an option that matters on the server, on an INET
    /// stream socket: it runs natively and the option is passed on.
    pub(crate) fn set_sock_option(
        fd: i32,
        target: Option<OptionTarget>,
        option: SockOption,
    ) -> Self {
        let operation = Operation::SetSockOption { target, option };
        Self::remote(operation, fd, Waiting::No)
    }

    /// `setsockopt` of an option that names something of the server's
    /// ([`SockOption::server_only`]) on an INET stream socket: it does not
    /// run locally; the thread is held until the engine answers.
    pub(crate) fn server_option(fd: i32, target: Option<OptionTarget>, option: SockOption) -> Self {
        let operation = Operation::SetSockOption { target, option };
        Self::remote(operation, fd, Waiting::Held(Then::Zero))
    }

    /// `getsockopt(fd, SOL_TCP, TCP_INFO, value, len)` of a remote
    /// connection: the server socket's, laid out as the kernel's (at most
    /// `room` bytes at `value`, the length written at `len`).
    pub(crate) fn tcp_info(
        fd: i32,
        local: SockAddr,
        peer: SockAddr,
        value: u64,
        len: u64,
        room: u32,
    ) -> Self {
        let then = Then::SockOptValue {
            addr: value,
            len_addr: len,
            room,
        };
        Self::remote(Operation::TcpInfo { local, peer }, fd, Waiting::Held(then))
    }

    /// `--pure`: a wait for input on empty remote sockets; one fetch on
    /// each, then the wait runs natively.
    pub(crate) fn prefetch(pumps: Vec<u64>, udp: Vec<u64>) -> Self {
        Self::unbound(Operation::Prefetch { pumps, udp }, Waiting::No)
    }

    /// Bind UDP socket `fd` on the server; with `replan`, the call that
    /// needed it (a send or `connect` on a socket never bound) is planned
    /// again afterwards.
    pub(crate) fn udp_bind(fd: i32, addr: SockAddr, replan: bool) -> Self {
        let then = if replan { Then::Replan } else { Then::Zero };
        Self::remote(Operation::UdpBind { addr }, fd, Waiting::Held(then))
    }

    pub(crate) fn udp_connect(fd: i32, udp: u64, addr: Option<SockAddr>) -> Self {
        let operation = Operation::UdpConnect { udp, addr };
        Self::remote(operation, fd, Waiting::Held(Then::Zero))
    }

    /// `--pure`: one datagram sent on the server, its count through `then`;
    /// `ip`: the fields its control messages set.
    pub(crate) fn udp_pure_send(
        fd: i32,
        udp: u64,
        peer: Option<SockAddr>,
        data: Vec<u8>,
        ip: IpFields,
        then: Then,
    ) -> Self {
        let operation = Operation::UdpSend {
            udp,
            peer,
            data,
            ip,
        };
        Self::remote(operation, fd, Waiting::Held(then))
    }

    /// `--pure`: a receive on an empty remote UDP socket.
    pub(crate) fn udp_pure_recv(fd: i32, udp: u64, dontwait: bool) -> Self {
        let operation = Operation::UdpRecv { udp, dontwait };
        Self::remote(operation, fd, Waiting::UntilReady)
    }

    fn unbound(operation: Operation, wait: Waiting) -> Self {
        Self::Remote {
            operation,
            fd: None,
            wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(port: u16) -> SockAddr {
        SockAddr::from(SocketAddr::from(([10, 2, 0, 5], port)))
    }

    #[test]
    fn only_sends_and_file_waits_ask_the_engine_on_a_signal() {
        let send = Operation::PureSend {
            pump: 1,
            data: vec![1],
            urgent: false,
        };
        assert_eq!(send.on_signal(), OnSignal::AskEngine);
        let lock = Operation::File(Request::Flock {
            handle: Handle(3),
            op: libc::LOCK_EX,
            wait: None,
        });
        assert_eq!(lock.on_signal(), OnSignal::AskEngine);
        // A poll for room fails with EINTR after any handler, as a poll.
        let room = Operation::PureRoom {
            pump: 1,
            timeout: None,
        };
        assert_eq!(room.on_signal(), OnSignal::Interrupt);
        for op in [
            Operation::TcpConnect { addr: v4(80) },
            Operation::PureRecv {
                pump: 1,
                len: 10,
                wait: PureWait::Any,
            },
            Operation::UdpRecv {
                udp: 2,
                dontwait: false,
            },
        ] {
            assert_eq!(op.on_signal(), OnSignal::Restart, "{op:?}");
        }
    }

    #[test]
    fn a_lock_carries_its_sleep_number_and_nothing_else_changes() {
        let lock = Operation::File(Request::Flock {
            handle: Handle(3),
            op: libc::LOCK_EX,
            wait: Some(0),
        });
        match lock.numbered(42) {
            Operation::File(Request::Flock { wait, .. }) => assert_eq!(wait, Some(42)),
            other => panic!("{other:?}"),
        }
        let connect = Operation::TcpConnect { addr: v4(80) };
        assert_eq!(connect.clone().numbered(42), connect);
    }

    #[test]
    fn trace_arguments_name_the_fd_and_what_goes() {
        assert_eq!(
            Operation::TcpConnect { addr: v4(80) }.trace_args(3),
            "3, 10.2.0.5:80"
        );
        assert_eq!(
            Operation::TcpListen {
                listener: 9,
                backlog: 128
            }
            .trace_args(4),
            "4, 128"
        );
        assert_eq!(Operation::TcpRelease { listener: 9 }.trace_args(4), "4");
        assert_eq!(
            Operation::UdpConnect { udp: 1, addr: None }.trace_args(5),
            "5, AF_UNSPEC"
        );
        assert_eq!(
            Operation::UdpSend {
                udp: 1,
                peer: Some(v4(53)),
                data: vec![0; 12],
                ip: IpFields::default()
            }
            .trace_args(6),
            "6, 12, 10.2.0.5:53"
        );
        assert_eq!(
            Operation::UdpSend {
                udp: 1,
                peer: None,
                data: vec![0; 12],
                ip: IpFields::default()
            }
            .trace_args(6),
            "6, 12"
        );
        assert_eq!(
            Operation::MapShadow {
                handle: Handle(7),
                writable: false
            }
            .trace_args(-1),
            "NULL, #7"
        );
        assert_eq!(
            Operation::SyncShadows {
                paths: vec![b"a".to_vec(), b"b".to_vec()],
                report: true
            }
            .trace_args(-1),
            "2 shared mappings"
        );
    }
}
