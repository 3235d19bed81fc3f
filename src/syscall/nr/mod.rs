//! The one table of syscalls rscq traps ([`TABLE`]), and what is read from
//! it: the seccomp rules of each filter in each mode ([`rules`]), which
//! planner families get a call and in which order ([`families`]), the names
//! `--trace` and `--stats` print ([`name`]), and the calls a thread waits
//! for input in ([`waits_for_input`]).
//!
//! Pure: numbers, names and rules as plain values. Building and installing
//! the BPF program is the tracer's (`tracer::seccomp`); planning a call is
//! the family planners'. No other module keeps a list of trapped numbers.

mod table;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeSet;

use crate::syscall::plan::Forwarding;

pub use table::TABLE;

/// What a filter does with one syscall number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Trace,
    /// Trace unless argument `arg` (its low 32 bits) equals `value`:
    /// `mmap` only stops when it maps an fd, not for anonymous memory.
    TraceUnlessArg {
        arg: u8,
        value: u32,
    },
    /// Trace only if argument `arg` (its low 32 bits) equals one of
    /// `values`: `getsockopt` only stops for `SO_ERROR`, `IPV6_V6ONLY` and
    /// `TCP_INFO`.
    TraceIfArg {
        arg: u8,
        values: &'static [u32],
    },
    Errno(u16),
}

/// The seccomp filters rscq puts into a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// The program's filter, from its start: path calls, sockets, uname.
    Program,
    /// Put into a process with its first remote file: calls on fds, so
    /// processes that never open one run their reads and writes natively.
    Fd,
    /// Put into a process with its first shared mapping of a remote file.
    Map,
    /// Put into a process with its first socket bound or listening on the
    /// server (`--net`): its `close` stops, so the server's socket goes at
    /// the program's last close, as a kernel frees a port.
    Sockets,
}

/// In which mode a [`Trap`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// `--uname`.
    Uname,
    /// `--net`.
    Net,
    /// `--net --pure`.
    PureNet,
    /// `--net` without `--pure`.
    NetNotPure,
    /// `--net` and no mount.
    NetWithoutMounts,
    /// At least one mount.
    Mounts,
    /// A mount, without `--net`.
    MountsWithoutNet,
}

impl When {
    /// Whether the mode `fwd` is one of these.
    pub fn holds(self, fwd: &Forwarding) -> bool {
        let mounts = !fwd.mounts.is_empty();
        match self {
            Self::Always => true,
            Self::Uname => fwd.uname,
            Self::Net => fwd.net,
            Self::PureNet => fwd.net && fwd.pure_net,
            Self::NetNotPure => fwd.net && !fwd.pure_net,
            Self::NetWithoutMounts => fwd.net && !mounts,
            Self::Mounts => mounts,
            Self::MountsWithoutNet => mounts && !fwd.net,
        }
    }
}

/// One way a call is trapped: by which filter, in which mode, how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trap {
    pub filter: Filter,
    pub when: When,
    /// Only if rsc.config's `REMOTE` set, when there is one, lists the
    /// call or its family.
    pub if_listed: bool,
    pub action: Action,
}

impl Trap {
    pub const fn new(filter: Filter, when: When, action: Action) -> Self {
        Self {
            filter,
            when,
            if_listed: false,
            action,
        }
    }

    /// A trap rsc.config's `REMOTE` set may leave out.
    pub const fn listed(filter: Filter, when: When, action: Action) -> Self {
        Self {
            filter,
            when,
            if_listed: true,
            action,
        }
    }
}

/// The planners a trapped call is offered to, in this order (the first
/// that takes it plans it; a call none takes runs natively). Each is one
/// module of `crate::syscall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// `net/udp`, with `--net`: calls on UDP sockets.
    Udp,
    /// `net/pure`, with `--pure --net`: data calls on remote TCP sockets.
    PureSocket,
    /// `net/unix`, with a mount: AF_UNIX paths in it.
    UnixSocket,
    /// `net`: `socket`, refusing UDP-Lite with `--net`.
    SocketCreate,
    /// `net` (`tcp`, `sockopt`), with `--net`: address-carrying socket calls.
    Net,
    /// `uname`, with `--uname`.
    Uname,
    /// `mapping`: `mmap` of a remote file.
    Mmap,
    /// `mapping`: `munmap` and `msync` of shared mappings of remote files.
    SharedSync,
    /// `close` of a remote file (held writes, record locks).
    Close,
    /// `fs` (`Planner::fd_call`): calls on a remote fd.
    Fd,
    /// `fs` (`Planner::path_call`): calls that name a path.
    Path,
    /// Calls that change the caller's credentials or umask: they run
    /// natively, and the credentials forwarded calls carry are read again
    /// after them (`tracer::creds`).
    Creds,
}

impl Family {
    /// Whether the family takes calls at all in mode `fwd`.
    pub fn offered(self, fwd: &Forwarding) -> bool {
        match self {
            Self::Udp => fwd.net,
            Self::PureSocket => fwd.pure_net,
            Self::UnixSocket => !fwd.mounts.is_empty(),
            Self::SocketCreate
            | Self::Net
            | Self::Uname
            | Self::Mmap
            | Self::SharedSync
            | Self::Close
            | Self::Fd
            | Self::Path
            | Self::Creds => true,
        }
    }
}

/// One trapped syscall.
#[derive(Debug, Clone, Copy)]
pub struct Syscall {
    pub nr: i64,
    /// For `--trace`, `--stats` and rsc.config's `REMOTE` names.
    pub name: &'static str,
    /// Who plans it, in [`Family`] order; empty for a refused call.
    pub families: &'static [Family],
    /// Which filters trap it; for one filter, the first trap whose mode
    /// holds decides.
    pub traps: &'static [Trap],
    /// A thread blocked in it waits for input: coalesced sends are held
    /// no longer (`client::coalesce`).
    pub waits_for_input: bool,
}

impl Syscall {
    pub const fn new(
        nr: i64,
        name: &'static str,
        families: &'static [Family],
        traps: &'static [Trap],
    ) -> Self {
        Self {
            nr,
            name,
            families,
            traps,
            waits_for_input: false,
        }
    }

    const fn waiting_for_input(mut self) -> Self {
        self.waits_for_input = true;
        self
    }

    /// How `filter` treats the call in mode `fwd` with rsc.config's set
    /// `only`; `None` when it lets it run.
    pub fn action(
        &self,
        filter: Filter,
        fwd: &Forwarding,
        only: Option<&BTreeSet<String>>,
    ) -> Option<Action> {
        let wanted = || only.is_none_or(|set| listed(set, self.name));
        self.traps
            .iter()
            .find(|t| t.filter == filter && t.when.holds(fwd) && (!t.if_listed || wanted()))
            .map(|t| t.action)
    }
}

/// The table entry of `nr`.
pub fn lookup(nr: i64) -> Option<&'static Syscall> {
    TABLE.iter().find(|call| call.nr == nr)
}

/// The rules of `filter` in mode `fwd`, with rsc.config's set `only`: one
/// per trapped number, in table order. Empty means the filter is not needed.
pub fn rules(
    filter: Filter,
    fwd: &Forwarding,
    only: Option<&BTreeSet<String>>,
) -> Vec<(i64, Action)> {
    TABLE
        .iter()
        .filter_map(|call| Some((call.nr, call.action(filter, fwd, only)?)))
        .collect()
}

/// The planners that get trapped call `nr`, in order; none for a number
/// the table does not have.
pub fn families(nr: i64) -> &'static [Family] {
    lookup(nr).map_or(&[], |call| call.families)
}

/// The name of a trapped syscall, for `--trace` and `--stats`.
pub fn name(nr: i64) -> &'static str {
    lookup(nr).map_or("syscall", |call| call.name)
}

/// Whether a thread blocked in syscall `nr` waits for input.
pub fn waits_for_input(nr: i64) -> bool {
    lookup(nr).is_some_and(|call| call.waits_for_input)
}

/// The thesis's name for the family a trapped syscall belongs to: its
/// `rsc.config` listed `open`, `lstat`, `getdents`, …, which today's libcs
/// reach through `openat`, `newfstatat`, `getdents64`, ….
pub fn family(name: &str) -> &str {
    match name {
        "openat" | "openat2" | "creat" => "open",
        "stat" | "newfstatat" | "statx" | "fstat" => "lstat",
        "faccessat" | "faccessat2" => "access",
        "readlinkat" => "readlink",
        "getdents64" => "getdents",
        "mkdirat" => "mkdir",
        "unlinkat" => "unlink",
        "renameat" | "renameat2" => "rename",
        "linkat" => "link",
        "symlinkat" => "symlink",
        "fchmod" | "fchmodat" | "fchmodat2" => "chmod",
        "chown" | "fchown" | "fchownat" => "lchown",
        "utimensat" | "utime" | "futimesat" => "utimes",
        "readv" | "preadv" | "preadv2" => "read",
        "writev" | "pwritev" | "pwritev2" => "write",
        "fstatfs" => "statfs",
        "setxattr" | "lsetxattr" | "fsetxattr" | "getxattr" | "lgetxattr" | "fgetxattr"
        | "listxattr" | "llistxattr" | "flistxattr" | "removexattr" | "lremovexattr"
        | "fremovexattr" => "xattr",
        other => other,
    }
}

/// Whether a `REMOTE` set from rsc.config asks for syscall `name`: listed
/// itself, or its family is.
pub fn listed(set: &BTreeSet<String>, name: &str) -> bool {
    set.contains(name) || set.contains(family(name))
}
