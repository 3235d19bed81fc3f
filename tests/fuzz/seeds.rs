//! The seed inputs: one real encoded [`Request`] of every variant, the
//! handshake and stream messages, written to `tests/fuzz/corpus/<target>/`
//! and committed. `variant_name` is an exhaustive match, so a new request
//! variant does not compile until it has a seed here.

use rscq::proto::{
    Call, Credentials, DatagramKind, FileLock, Handle, Hello, IcmpError, Incoming, IpFields,
    LockOwner, OptionTarget, PureOp, PureReply, RemotePath, Reply, Request, Response, SockAddr,
    SockOption, Stat, SystemFile, TimeUpdate, Timespec, UdpEvent, UdpOp, Welcome, XattrTarget,
    frame,
};

fn rp(path: &str) -> RemotePath {
    RemotePath(path.as_bytes().to_vec())
}

/// The name of a request's variant (the seed file's name).
pub fn variant_name(req: &Request) -> &'static str {
    match req {
        Request::Open { .. } => "open",
        Request::OpenPlus { .. } => "open_plus",
        Request::OpenRead { .. } => "open_read",
        Request::Close { .. } => "close",
        Request::Read { .. } => "read",
        Request::Pread { .. } => "pread",
        Request::Write { .. } => "write",
        Request::Pwrite { .. } => "pwrite",
        Request::Lseek { .. } => "lseek",
        Request::Fsync { .. } => "fsync",
        Request::Fstat { .. } => "fstat",
        Request::Getdents { .. } => "getdents",
        Request::GetdentsPlus { .. } => "getdents_plus",
        Request::SetFlags { .. } => "set_flags",
        Request::Ftruncate { .. } => "ftruncate",
        Request::Fchmod { .. } => "fchmod",
        Request::Fchown { .. } => "fchown",
        Request::Futimens { .. } => "futimens",
        Request::Fstatfs { .. } => "fstatfs",
        Request::Stat { .. } => "stat",
        Request::LookupAndList { .. } => "lookup_and_list",
        Request::StatPlus { .. } => "stat_plus",
        Request::Access { .. } => "access",
        Request::Readlink { .. } => "readlink",
        Request::Mkdir { .. } => "mkdir",
        Request::Mknod { .. } => "mknod",
        Request::Rmdir { .. } => "rmdir",
        Request::Unlink { .. } => "unlink",
        Request::Rename { .. } => "rename",
        Request::Link { .. } => "link",
        Request::LinkHandle { .. } => "link_handle",
        Request::Symlink { .. } => "symlink",
        Request::Chmod { .. } => "chmod",
        Request::Chown { .. } => "chown",
        Request::Utimens { .. } => "utimens",
        Request::Truncate { .. } => "truncate",
        Request::Statfs { .. } => "statfs",
        Request::CheckDir { .. } => "check_dir",
        Request::GetXattr { .. } => "get_xattr",
        Request::ListXattr { .. } => "list_xattr",
        Request::SetXattr { .. } => "set_xattr",
        Request::RemoveXattr { .. } => "remove_xattr",
        Request::Uname => "uname",
        Request::ReadSystemFile { .. } => "read_system_file",
        Request::TcpConnect { .. } => "tcp_connect",
        Request::TcpBind { .. } => "tcp_bind",
        Request::TcpListen { .. } => "tcp_listen",
        Request::TcpUnbind { .. } => "tcp_unbind",
        Request::UdpBind { .. } => "udp_bind",
        Request::FlushWrites { .. } => "flush_writes",
        Request::TcpSetOption { .. } => "tcp_set_option",
        Request::Flock { .. } => "flock",
        Request::RecordLock { .. } => "record_lock",
        Request::ReleaseLocks { .. } => "release_locks",
        Request::CopyRange { .. } => "copy_range",
        Request::Fallocate { .. } => "fallocate",
        Request::CancelWait { .. } => "cancel_wait",
        Request::Reopen { .. } => "reopen",
        Request::Reattach { .. } => "reattach",
        Request::TcpGetInfo { .. } => "tcp_get_info",
    }
}

/// Whether the request is one the server's network handlers run
/// (`server::net`, `server::udp`), not the executor.
pub fn is_network(req: &Request) -> bool {
    matches!(
        req,
        Request::TcpConnect { .. }
            | Request::TcpBind { .. }
            | Request::TcpListen { .. }
            | Request::TcpUnbind { .. }
            | Request::UdpBind { .. }
            | Request::TcpSetOption { .. }
            | Request::TcpGetInfo { .. }
    )
}

const LOOPBACK_V4: SockAddr = SockAddr::V4 {
    ip: [127, 0, 0, 1],
    port: 0,
};
const LOOPBACK_V6: SockAddr = SockAddr::V6 {
    ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    port: 0,
    flowinfo: 0,
    scope_id: 0,
};

/// One request of every variant, with values a program really sends. The
/// handles are the first ones a fresh session gives out (1, 2, ...), so a
/// seed sequence that opens first reaches real files.
pub fn every_request() -> Vec<Request> {
    let h = Handle(1);
    let now = [TimeUpdate::Now, TimeUpdate::Omit];
    let at = TimeUpdate::At(Timespec { sec: 1, nsec: 2 });
    let lock = FileLock {
        kind: FileLock::WRLCK,
        whence: FileLock::SEEK_SET,
        start: 0,
        len: 10,
        pid: 0,
    };
    vec![
        Request::Open {
            path: rp("a/f"),
            flags: libc::O_RDWR | libc::O_CREAT,
            mode: 0o644,
        },
        Request::OpenPlus {
            path: rp("a"),
            flags: libc::O_RDONLY | libc::O_DIRECTORY,
            mode: 0,
        },
        Request::OpenRead {
            path: rp("a/f"),
            flags: libc::O_RDONLY,
            mode: 0,
            max: 65_536,
        },
        Request::Close { handle: h },
        Request::Read {
            handle: h,
            len: 4096,
        },
        Request::Pread {
            handle: h,
            len: 16,
            offset: 2,
        },
        Request::Write {
            handle: h,
            data: b"hello".to_vec(),
        },
        Request::Pwrite {
            handle: h,
            data: b"world".to_vec(),
            offset: 5,
        },
        Request::Lseek {
            handle: h,
            offset: 0,
            whence: libc::SEEK_END,
        },
        Request::Fsync {
            handle: h,
            data_only: true,
        },
        Request::Fstat { handle: h },
        Request::Getdents {
            handle: Handle(2),
            bytes: 32768,
        },
        Request::GetdentsPlus { handle: Handle(2) },
        Request::SetFlags {
            handle: h,
            flags: libc::O_APPEND | libc::O_NONBLOCK,
        },
        Request::Ftruncate { handle: h, len: 3 },
        Request::Fchmod {
            handle: h,
            mode: 0o600,
        },
        Request::Fchown {
            handle: h,
            uid: u32::MAX,
            gid: u32::MAX,
        },
        Request::Futimens {
            handle: h,
            times: [at, TimeUpdate::Now],
        },
        Request::Fstatfs { handle: h },
        Request::LookupAndList {
            dir: rp("a"),
            lookup: rscq::proto::Lookup::Stat {
                path: rp("a/f"),
                follow: true,
            },
        },
        Request::Stat {
            path: rp("a/f"),
            follow: true,
        },
        Request::StatPlus {
            path: rp("up"),
            follow: false,
        },
        Request::Access {
            path: rp("a/f"),
            mode: libc::R_OK | libc::W_OK,
            flags: libc::AT_EACCESS,
        },
        Request::Readlink { path: rp("up") },
        Request::Mkdir {
            path: rp("a/d"),
            mode: 0o755,
        },
        Request::Mknod {
            path: rp("a/node"),
            mode: libc::S_IFIFO | 0o644,
            dev: 0,
        },
        Request::Rmdir { path: rp("a/d") },
        Request::Unlink { path: rp("a/node") },
        Request::Rename {
            from: rp("a/f"),
            to: rp("a/g"),
            flags: 0,
        },
        Request::Link {
            from: rp("a/g"),
            to: rp("a/f"),
            follow: false,
        },
        Request::Symlink {
            target: b"../../../outside".to_vec(),
            path: rp("a/s"),
        },
        Request::Chmod {
            path: rp("a/f"),
            mode: 0o640,
            follow: true,
        },
        Request::Chown {
            path: rp("a/s"),
            uid: u32::MAX,
            gid: 0,
            follow: false,
        },
        Request::Utimens {
            path: rp("a/f"),
            times: now,
            follow: true,
        },
        Request::Truncate {
            path: rp("a/f"),
            len: 1,
        },
        Request::Statfs { path: rp("/") },
        Request::CheckDir { path: rp("a") },
        Request::GetXattr {
            target: XattrTarget::Path {
                path: rp("a/f"),
                follow: true,
            },
            name: b"user.k".to_vec(),
            size: 64,
        },
        Request::ListXattr {
            target: XattrTarget::Handle(h),
            size: 0,
        },
        Request::SetXattr {
            target: XattrTarget::Path {
                path: rp("a/f"),
                follow: false,
            },
            name: b"user.k".to_vec(),
            value: b"v".to_vec(),
            flags: 0,
        },
        Request::RemoveXattr {
            target: XattrTarget::Handle(h),
            name: b"user.k".to_vec(),
        },
        Request::Uname,
        Request::ReadSystemFile {
            file: SystemFile::Hosts,
        },
        Request::TcpConnect {
            addr: LOOPBACK_V4,
            pure: false,
            options: vec![SockOption::NoDelay(true), SockOption::Linger(Some(0))],
            bound: None,
        },
        Request::TcpBind {
            addr: LOOPBACK_V6,
            reuse_addr: true,
            reuse_port: false,
            v6_only: Some(true),
            options: vec![SockOption::KeepAlive(true), SockOption::RecvBuffer(65536)],
        },
        Request::TcpListen {
            listener: 1,
            backlog: 128,
            pure: false,
        },
        Request::TcpUnbind { listener: 1 },
        Request::UdpBind {
            addr: LOOPBACK_V4,
            reuse_addr: false,
            reuse_port: false,
            v6_only: None,
            pure: true,
            kind: DatagramKind::UdpLite,
        },
        Request::FlushWrites { handle: h },
        Request::TcpSetOption {
            target: OptionTarget::Listener(1),
            option: SockOption::KeepIdle(30),
        },
        Request::TcpGetInfo {
            local: LOOPBACK_V4,
            peer: LOOPBACK_V4,
        },
        Request::Flock {
            handle: h,
            op: libc::LOCK_EX,
            wait: None,
        },
        Request::RecordLock {
            handle: h,
            owner: LockOwner::Process(42),
            lock,
            set: true,
            wait: None,
        },
        Request::ReleaseLocks {
            owner: 42,
            handle: Some(h),
        },
        Request::CopyRange {
            from: h,
            from_offset: Some(0),
            to: h,
            to_offset: Some(100),
            len: 10,
        },
        Request::Fallocate {
            handle: h,
            mode: 0,
            offset: 0,
            len: 4096,
        },
        Request::CancelWait { wait: 7 },
        Request::Reopen {
            handle: h,
            flags: libc::O_RDWR,
        },
        Request::LinkHandle {
            handle: h,
            to: rp("a/linked"),
            empty_path: false,
        },
        Request::Reattach {
            handle: Handle(9),
            path: Some(rp("a/file")),
            flags: libc::O_RDONLY,
            dev: (0, 0),
            ino: 0,
            offset: Some(3),
        },
    ]
}

/// The rights of a caller as rscq sends them: this process's own.
pub fn own_credentials() -> Credentials {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    Credentials {
        ruid: uid,
        rgid: gid,
        fsuid: uid,
        fsgid: gid,
        groups: vec![gid],
        umask: 0o022,
        cap_effective: 0,
        cap_permitted: 0,
    }
}

/// A request as its stream's first frame carries it; every other one runs
/// with the caller's rights, as the tracer sends file calls.
pub fn call_frame(req: &Request, index: usize) -> Vec<u8> {
    let creds = (index % 2 == 1).then(own_credentials);
    // Every third one numbered, as the program's calls are.
    let once = (index % 3 == 2).then(|| rscq::proto::Once {
        id: u64::try_from(index).unwrap_or(0) + 1,
        acked_below: 0,
    });
    frame::encode(&Call {
        creds,
        request: req.clone(),
        once,
    })
}

/// Seeds of the frame target: a framed `Call` of every request, and every
/// other message kind the two sides exchange.
pub fn frame_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = every_request()
        .iter()
        .enumerate()
        .map(|(i, req)| (format!("call_{}", variant_name(req)), call_frame(req, i)))
        .collect();
    let peer = SockAddr::V4 {
        ip: [127, 0, 0, 1],
        port: 8080,
    };
    let responses: [(&str, Response); 4] = [
        (
            "response_opened",
            Ok(Reply::Opened {
                handle: Handle(3),
                stat: Stat::default(),
            }),
        ),
        ("response_data", Ok(Reply::Data(b"bytes".to_vec()))),
        ("response_errno", Err(rscq::errno::Errno::ENOENT)),
        (
            "response_tcp_connected",
            Ok(Reply::TcpConnected {
                local: LOOPBACK_V4,
                peer,
            }),
        ),
    ];
    for (name, resp) in responses {
        seeds.push((name.to_owned(), frame::encode(&resp)));
    }
    seeds.push((
        "hello".to_owned(),
        frame::encode(&Hello {
            version: rscq::proto::PROTOCOL_VERSION,
            keep_secs: 300,
            resume: Some(rscq::proto::SessionToken([7; 16])),
        }),
    ));
    seeds.push((
        "welcome".to_owned(),
        frame::encode(&Welcome::Accepted {
            version: rscq::proto::PROTOCOL_VERSION,
            read_only: false,
            session: rscq::proto::SessionToken([7; 16]),
            resumed: true,
        }),
    ));
    seeds.push((
        "incoming".to_owned(),
        frame::encode(&Incoming {
            listener: 1,
            local: LOOPBACK_V4,
            peer,
        }),
    ));
    let mut udp = frame::encode(&UdpOp::Connect { peer });
    udp.extend(frame::encode(&UdpOp::Send {
        peer: None,
        data: b"ping".to_vec(),
        ip: IpFields {
            ttl: Some(9),
            tos: Some(0x10),
        },
    }));
    udp.extend(frame::encode(&UdpOp::Recv { nonblocking: true }));
    seeds.push(("udp_ops".to_owned(), udp));
    seeds.push((
        "udp_event".to_owned(),
        frame::encode(&UdpEvent::Unreachable {
            peer,
            icmp: IcmpError {
                v6: false,
                kind: 3,
                code: 3,
            },
            offender: Some(LOOPBACK_V4),
            quoted: b"ping".to_vec(),
        }),
    ));
    let mut pure = frame::encode(&PureOp::Send(b"data".to_vec()));
    pure.extend(frame::encode(&PureOp::Recv {
        max: 100,
        nonblocking: true,
    }));
    seeds.push(("pure_ops".to_owned(), pure));
    seeds.push((
        "pure_reply".to_owned(),
        frame::encode(&PureReply::Data(b"x".to_vec())),
    ));
    seeds
}

/// Seeds of the executor target: sequences of calls on the trap-filled
/// root, each a file of back-to-back `Call` frames. The first opens a file
/// (handle 1) and a directory (handle 2) and then sends every file request
/// once; the others walk into each trap.
pub fn executor_seeds() -> Vec<(String, Vec<u8>)> {
    let file_requests: Vec<Request> = every_request()
        .into_iter()
        .filter(|r| !is_network(r))
        .collect();
    let mut seeds = Vec::new();
    for (i, req) in file_requests.iter().enumerate() {
        let mut input = call_frame(&file_requests[0], 0);
        input.extend(call_frame(&file_requests[1], 1));
        input.extend(call_frame(req, i));
        seeds.push((format!("after_open_{}", variant_name(req)), input));
    }
    for trap in crate::trap_root::TRAP_NAMES {
        let mut input = Vec::new();
        let reqs = [
            Request::Open {
                path: rp(trap),
                flags: libc::O_RDONLY | libc::O_NONBLOCK,
                mode: 0,
            },
            Request::Read {
                handle: Handle(1),
                len: 4096,
            },
            Request::Stat {
                path: rp(&format!("{trap}/secret")),
                follow: true,
            },
            Request::Open {
                path: rp(&format!("{trap}/new")),
                flags: libc::O_WRONLY | libc::O_CREAT | libc::O_NONBLOCK,
                mode: 0o644,
            },
            Request::Readlink { path: rp(trap) },
        ];
        for (i, req) in reqs.iter().enumerate() {
            input.extend(call_frame(req, i));
        }
        seeds.push((format!("trap_{}", trap.replace('/', "_")), input));
    }
    seeds
}
