//! Mutations: byte-level ones on any input (bit flips, inserts, deletes,
//! splices, truncation, frame length edits) and structure-aware ones on
//! sequences of `Call` frames (decode, change one field to a hostile
//! value, re-encode).

use rscq::proto::{
    Call, Handle, OptionTarget, RemotePath, Request, SockAddr, TimeUpdate, XattrTarget, frame,
};

use crate::rng::Rng;

/// Byte values that sit on the edges of postcard's varints and of flags.
const INTERESTING_BYTES: [u8; 6] = [0, 1, 0x7f, 0x80, 0xfe, 0xff];

/// One to four stacked byte-level mutations.
pub fn mutate_bytes(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        mutate_once(rng, &mut out, corpus);
    }
    out
}

fn mutate_once(rng: &mut Rng, out: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = out.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            out[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            out[i] = *rng.pick(&INTERESTING_BYTES);
        }
        2 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            out.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(16));
            out.drain(at..at + n);
        }
        4 if len > 0 => {
            // Duplicate a stretch: repeated fields and frames.
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            let piece = out[at..at + n].to_vec();
            let to = rng.below(len + 1);
            out.splice(to..to, piece);
        }
        5 if !corpus.is_empty() => {
            // Splice: our head, another seed's tail.
            let other = rng.pick(corpus);
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        6 if len > 0 => out.truncate(rng.below(len)),
        7 => edit_length_field(rng, out),
        _ => {
            // A huge varint: postcard's lengths and integers are varints.
            let at = rng.below(len + 1);
            out.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        }
    }
}

/// Changes the length prefix of one of the frames in `out` (walking them
/// as the stream reader does): past the limit, off by one, zero, or random.
fn edit_length_field(rng: &mut Rng, out: &mut [u8]) {
    let mut starts = Vec::new();
    let mut at = 0;
    while let Ok(Some(range)) = frame::check(&out[at..]) {
        starts.push(at);
        at += range.end;
    }
    if starts.is_empty() && out.len() < frame::HEADER {
        return;
    }
    let start = if starts.is_empty() {
        0
    } else {
        *rng.pick(&starts)
    };
    let mut header = [0u8; frame::HEADER];
    header.copy_from_slice(&out[start..start + frame::HEADER]);
    let len = u32::from_le_bytes(header);
    let max = u32::try_from(frame::MAX_FRAME).unwrap_or(u32::MAX);
    let new = match rng.below(6) {
        0 => max + 1,
        1 => u32::MAX,
        2 => len.wrapping_add(1),
        3 => len.wrapping_sub(1),
        4 => 0,
        _ => u32::try_from(rng.next_u64() >> 32).unwrap_or(0),
    };
    out[start..start + frame::HEADER].copy_from_slice(&new.to_le_bytes());
}

/// The calls a buffer of back-to-back frames holds, up to the first one
/// that is not a whole `Call`.
pub fn decode_calls(input: &[u8]) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut rest = input;
    while let Ok(Some(range)) = frame::check(rest) {
        match frame::decode::<Call>(&rest[range.clone()]) {
            Ok(call) => calls.push(call),
            Err(_) => break,
        }
        rest = &rest[range.end..];
    }
    calls
}

pub fn encode_calls(calls: &[Call]) -> Vec<u8> {
    calls.iter().flat_map(frame::encode).collect()
}

/// What structure-aware mutations draw on: hostile paths, and the handles
/// and listener ids the session really gave out.
#[derive(Debug)]
pub struct Dictionary {
    pub paths: Vec<Vec<u8>>,
    pub handles: Vec<u64>,
}

impl Dictionary {
    pub fn new(canary: &std::path::Path) -> Self {
        let mut paths: Vec<Vec<u8>> = [
            "..",
            "../..",
            "/..",
            "/../../..",
            "../canary/secret",
            "a/../../canary",
            "a/rel_secret",
            "/proc/self/root/",
            "/proc/self/cwd/..",
            "/proc/self/fd/0",
            "/proc/thread-self/root",
            ".",
            "",
            "/",
            "//a//f",
            "a/f",
            "a/f/",
            "a/",
            "a/new",
            "new/",
            "fifo/",
            "up/tmp",
            "abs_canary/secret",
            "abs_canary/new",
            "loop1/x",
            "noperm/inner",
        ]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
        paths.extend(crate::trap_root::TRAP_NAMES.map(|n| n.as_bytes().to_vec()));
        paths.push(canary.join("secret").into_os_string().into_encoded_bytes());
        paths.push(vec![b'n'; 255]);
        paths.push(vec![b'n'; 256]);
        let mut deep = b"deep".to_vec();
        for _ in 0..16 {
            deep.push(b'/');
            deep.extend([b'n'; 255]);
        }
        paths.push(deep);
        paths.push(b"a\0f".to_vec());
        Self {
            paths,
            handles: Vec::new(),
        }
    }

    /// Remembers a handle a reply gave out, so later requests can use it.
    pub fn saw_handle(&mut self, handle: Handle) {
        if !self.handles.contains(&handle.0) {
            self.handles.push(handle.0);
            if self.handles.len() > 64 {
                self.handles.remove(0);
            }
        }
    }
}

/// Mutable views of every field of a request, by kind.
#[derive(Default)]
struct Fields<'a> {
    paths: Vec<&'a mut RemotePath>,
    handles: Vec<&'a mut Handle>,
    i64s: Vec<&'a mut i64>,
    u64s: Vec<&'a mut u64>,
    u32s: Vec<&'a mut u32>,
    i32s: Vec<&'a mut i32>,
    bytes: Vec<&'a mut Vec<u8>>,
    addrs: Vec<&'a mut SockAddr>,
    times: Vec<&'a mut TimeUpdate>,
}

impl<'a> Fields<'a> {
    fn xattr_target(&mut self, target: &'a mut XattrTarget) {
        match target {
            XattrTarget::Path { path, .. } => self.paths.push(path),
            XattrTarget::Handle(h) => self.handles.push(h),
        }
    }
}

fn fields(req: &mut Request) -> Fields<'_> {
    let mut f = Fields::default();
    match req {
        Request::Open { path, flags, mode } | Request::OpenPlus { path, flags, mode } => {
            f.paths.push(path);
            f.i32s.push(flags);
            f.u32s.push(mode);
        }
        Request::OpenRead {
            path,
            flags,
            mode,
            max,
        } => {
            f.paths.push(path);
            f.i32s.push(flags);
            f.u32s.extend([mode, max]);
        }
        Request::Close { handle }
        | Request::Fstat { handle }
        | Request::GetdentsPlus { handle }
        | Request::Fstatfs { handle }
        | Request::FlushWrites { handle }
        | Request::Fsync { handle, .. } => f.handles.push(handle),
        Request::Read { handle, len } | Request::Getdents { handle, bytes: len } => {
            f.handles.push(handle);
            f.u32s.push(len);
        }
        Request::Pread {
            handle,
            len,
            offset,
        } => {
            f.handles.push(handle);
            f.u32s.push(len);
            f.i64s.push(offset);
        }
        Request::Write { handle, data } => {
            f.handles.push(handle);
            f.bytes.push(data);
        }
        Request::Pwrite {
            handle,
            data,
            offset,
        } => {
            f.handles.push(handle);
            f.bytes.push(data);
            f.i64s.push(offset);
        }
        Request::Lseek {
            handle,
            offset,
            whence,
        } => {
            f.handles.push(handle);
            f.i64s.push(offset);
            f.i32s.push(whence);
        }
        Request::SetFlags { handle, flags } | Request::Reopen { handle, flags } => {
            f.handles.push(handle);
            f.i32s.push(flags);
        }
        Request::Reattach {
            handle,
            path,
            flags,
            dev,
            ino,
            offset,
        } => {
            f.handles.push(handle);
            if let Some(path) = path {
                f.paths.push(path);
            }
            f.i32s.push(flags);
            f.u32s.extend([&mut dev.0, &mut dev.1]);
            f.u64s.push(ino);
            if let Some(offset) = offset {
                f.i64s.push(offset);
            }
        }
        Request::Ftruncate { handle, len } => {
            f.handles.push(handle);
            f.i64s.push(len);
        }
        Request::Fchmod { handle, mode } => {
            f.handles.push(handle);
            f.u32s.push(mode);
        }
        Request::Fchown { handle, uid, gid } => {
            f.handles.push(handle);
            f.u32s.extend([uid, gid]);
        }
        Request::Futimens { handle, times } => {
            f.handles.push(handle);
            f.times.extend(times.iter_mut());
        }
        Request::Stat { path, .. }
        | Request::StatPlus { path, .. }
        | Request::Readlink { path }
        | Request::Rmdir { path }
        | Request::Unlink { path }
        | Request::Statfs { path }
        | Request::CheckDir { path } => f.paths.push(path),
        Request::Access { path, mode, flags } => {
            f.paths.push(path);
            f.i32s.extend([mode, flags]);
        }
        Request::LookupAndList { dir, lookup } => {
            f.paths.push(dir);
            match lookup {
                rscq::proto::Lookup::Stat { path, .. }
                | rscq::proto::Lookup::StatPlus { path, .. }
                | rscq::proto::Lookup::Readlink { path } => f.paths.push(path),
                rscq::proto::Lookup::Access { path, mode, flags } => {
                    f.paths.push(path);
                    f.i32s.extend([mode, flags]);
                }
                rscq::proto::Lookup::Open { path, flags, mode } => {
                    f.paths.push(path);
                    f.i32s.push(flags);
                    f.u32s.push(mode);
                }
                rscq::proto::Lookup::OpenRead {
                    path,
                    flags,
                    mode,
                    max,
                } => {
                    f.paths.push(path);
                    f.i32s.push(flags);
                    f.u32s.extend([mode, max]);
                }
            }
        }
        Request::Mkdir { path, mode } | Request::Chmod { path, mode, .. } => {
            f.paths.push(path);
            f.u32s.push(mode);
        }
        Request::Mknod { path, mode, dev } => {
            f.paths.push(path);
            f.u32s.extend([mode, dev]);
        }
        Request::Rename { from, to, flags } => {
            f.paths.extend([from, to]);
            f.u32s.push(flags);
        }
        Request::Link { from, to, .. } => f.paths.extend([from, to]),
        Request::LinkHandle { handle, to, .. } => {
            f.handles.push(handle);
            f.paths.push(to);
        }
        Request::Symlink { target, path } => {
            f.bytes.push(target);
            f.paths.push(path);
        }
        Request::Chown { path, uid, gid, .. } => {
            f.paths.push(path);
            f.u32s.extend([uid, gid]);
        }
        Request::Utimens { path, times, .. } => {
            f.paths.push(path);
            f.times.extend(times.iter_mut());
        }
        Request::Truncate { path, len } => {
            f.paths.push(path);
            f.i64s.push(len);
        }
        Request::GetXattr { target, name, size } => {
            f.xattr_target(target);
            f.bytes.push(name);
            f.u32s.push(size);
        }
        Request::ListXattr { target, size } => {
            f.xattr_target(target);
            f.u32s.push(size);
        }
        Request::SetXattr {
            target,
            name,
            value,
            flags,
        } => {
            f.xattr_target(target);
            f.bytes.extend([name, value]);
            f.i32s.push(flags);
        }
        Request::RemoveXattr { target, name } => {
            f.xattr_target(target);
            f.bytes.push(name);
        }
        Request::Uname | Request::ReadSystemFile { .. } => {}
        Request::TcpConnect { addr, .. }
        | Request::TcpBind { addr, .. }
        | Request::UdpBind { addr, .. } => f.addrs.push(addr),
        Request::TcpListen {
            listener, backlog, ..
        } => {
            f.u64s.push(listener);
            f.u32s.push(backlog);
        }
        Request::TcpUnbind { listener } | Request::CancelWait { wait: listener } => {
            f.u64s.push(listener);
        }
        Request::TcpSetOption { target, .. } => match target {
            OptionTarget::Connection { local, peer } => f.addrs.extend([local, peer]),
            OptionTarget::Listener(id) => f.u64s.push(id),
        },
        Request::TcpGetInfo { local, peer } => f.addrs.extend([local, peer]),
        Request::Flock { handle, op, .. } => {
            f.handles.push(handle);
            f.i32s.push(op);
        }
        Request::RecordLock { handle, lock, .. } => {
            f.handles.push(handle);
            f.i64s.extend([&mut lock.start, &mut lock.len]);
            f.i32s.push(&mut lock.pid);
        }
        Request::ReleaseLocks { owner, handle } => {
            f.u32s.push(owner);
            if let Some(h) = handle {
                f.handles.push(h);
            }
        }
        Request::CopyRange {
            from,
            from_offset,
            to,
            to_offset,
            len,
        } => {
            f.handles.extend([from, to]);
            f.i64s
                .extend(from_offset.iter_mut().chain(to_offset.iter_mut()));
            f.u64s.push(len);
        }
        Request::Fallocate {
            handle,
            mode,
            offset,
            len,
        } => {
            f.handles.push(handle);
            f.i32s.push(mode);
            f.i64s.extend([offset, len]);
        }
    }
    f
}

const INTERESTING_I64: [i64; 9] = [
    0,
    -1,
    1,
    i64::MIN,
    i64::MAX,
    1 << 31,
    1 << 40,
    -(1 << 20),
    4095,
];
const INTERESTING_U32: [u32; 8] = [
    0,
    1,
    0o777,
    0o7777,
    u32::MAX,
    1 << 20,
    (1 << 20) + 1,
    0x8000_0000,
];
const INTERESTING_FLAGS: [i32; 12] = [
    libc::O_RDONLY,
    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
    libc::O_RDWR | libc::O_APPEND,
    libc::O_DIRECTORY,
    libc::O_PATH,
    libc::O_NOFOLLOW,
    libc::O_TMPFILE | libc::O_RDWR,
    libc::O_CREAT | libc::O_EXCL,
    libc::O_DIRECT | libc::O_RDWR,
    libc::AT_SYMLINK_NOFOLLOW | libc::AT_EACCESS,
    -1,
    i32::MIN,
];

/// Changes one field of one request to a hostile value.
pub fn mutate_request(rng: &mut Rng, req: &mut Request, dict: &Dictionary) {
    let f = fields(req);
    let mut choices: Vec<u8> = Vec::new();
    for (kind, present) in [
        (0u8, !f.paths.is_empty()),
        (1, !f.handles.is_empty()),
        (2, !f.i64s.is_empty()),
        (3, !f.u64s.is_empty()),
        (4, !f.u32s.is_empty()),
        (5, !f.i32s.is_empty()),
        (6, !f.bytes.is_empty()),
        (7, !f.addrs.is_empty()),
        (8, !f.times.is_empty()),
    ] {
        if present {
            choices.push(kind);
        }
    }
    if choices.is_empty() {
        return;
    }
    let Fields {
        mut paths,
        mut handles,
        mut i64s,
        mut u64s,
        mut u32s,
        mut i32s,
        mut bytes,
        mut addrs,
        mut times,
    } = f;
    match *rng.pick(&choices) {
        0 => {
            let i = rng.below(paths.len());
            mutate_path(rng, &mut paths[i].0, dict);
        }
        1 => {
            let i = rng.below(handles.len());
            *handles[i] = Handle(match rng.below(4) {
                0 if !dict.handles.is_empty() => *rng.pick(&dict.handles),
                1 => u64::MAX,
                2 => 0,
                _ => u64::try_from(rng.below(8)).unwrap_or(0) + 1,
            });
        }
        2 => {
            let i = rng.below(i64s.len());
            *i64s[i] = if rng.one_in(3) {
                i64::from_le_bytes(rng.next_u64().to_le_bytes())
            } else {
                *rng.pick(&INTERESTING_I64)
            };
        }
        3 => {
            let i = rng.below(u64s.len());
            *u64s[i] = match rng.below(3) {
                0 => u64::MAX,
                1 => rng.next_u64(),
                _ => u64::try_from(rng.below(4)).unwrap_or(0),
            };
        }
        4 => {
            let i = rng.below(u32s.len());
            *u32s[i] = if rng.one_in(3) {
                u32::try_from(rng.next_u64() >> 32).unwrap_or(0)
            } else {
                *rng.pick(&INTERESTING_U32)
            };
        }
        5 => {
            let i = rng.below(i32s.len());
            *i32s[i] = if rng.one_in(3) {
                *i32s[i] ^ (1 << rng.below(32))
            } else {
                *rng.pick(&INTERESTING_FLAGS)
            };
        }
        6 => {
            let i = rng.below(bytes.len());
            *bytes[i] = match rng.below(4) {
                0 => rng.pick(&dict.paths).clone(),
                1 => vec![b'v'; 1 + rng.below(70_000)],
                _ => mutate_bytes(rng, bytes[i], &[]),
            };
        }
        7 => {
            let i = rng.below(addrs.len());
            *addrs[i] = if rng.one_in(2) {
                SockAddr::V4 {
                    ip: rng.next_u64().to_le_bytes()[..4]
                        .try_into()
                        .unwrap_or([0; 4]),
                    port: u16::from_le_bytes([rng.byte(), rng.byte()]),
                }
            } else {
                let mut ip = [0u8; 16];
                ip.iter_mut().for_each(|b| *b = rng.byte());
                SockAddr::V6 {
                    ip,
                    port: u16::from_le_bytes([rng.byte(), rng.byte()]),
                    flowinfo: u32::try_from(rng.next_u64() >> 32).unwrap_or(0),
                    scope_id: u32::try_from(rng.next_u64() >> 32).unwrap_or(0),
                }
            };
        }
        _ => {
            let i = rng.below(times.len());
            *times[i] = match rng.below(3) {
                0 => TimeUpdate::Omit,
                1 => TimeUpdate::Now,
                _ => TimeUpdate::At(rscq::proto::Timespec {
                    sec: *rng.pick(&INTERESTING_I64),
                    nsec: *rng.pick(&INTERESTING_U32),
                }),
            };
        }
    }
}

fn mutate_path(rng: &mut Rng, path: &mut Vec<u8>, dict: &Dictionary) {
    match rng.below(5) {
        0 => *path = rng.pick(&dict.paths).clone(),
        1 => {
            path.push(b'/');
            path.extend(rng.pick(&dict.paths));
        }
        2 => {
            let mut up = b"../".repeat(1 + rng.below(6));
            up.extend(path.iter());
            *path = up;
        }
        3 => {
            // `..` in the middle of the path, after some component.
            let slashes: Vec<usize> = path
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'/')
                .map(|(i, _)| i)
                .collect();
            let at = if slashes.is_empty() {
                path.len()
            } else {
                *rng.pick(&slashes)
            };
            path.splice(at..at, b"/..".iter().copied());
        }
        _ => *path = mutate_bytes(rng, path, &[]),
    }
}

/// A structure-aware mutation of a sequence of calls: one field, one
/// request replaced by another seed's, one dropped or repeated, or the
/// caller's rights changed.
pub fn mutate_calls(rng: &mut Rng, calls: &mut Vec<Call>, seeds: &[Request], dict: &Dictionary) {
    if calls.is_empty() {
        calls.push(Call {
            creds: None,
            request: rng.pick(seeds).clone(),
            once: None,
        });
        return;
    }
    let i = rng.below(calls.len());
    match rng.below(8) {
        0 => calls[i].request = rng.pick(seeds).clone(),
        1 if calls.len() > 1 => {
            calls.remove(i);
        }
        2 if calls.len() < 32 => {
            let again = calls[i].clone();
            calls.insert(rng.below(calls.len() + 1), again);
        }
        3 if calls.len() < 32 => calls.insert(
            rng.below(calls.len() + 1),
            Call {
                creds: None,
                request: rng.pick(seeds).clone(),
                once: None,
            },
        ),
        4 => {
            calls[i].creds = match calls[i].creds.take() {
                None => Some(crate::seeds::own_credentials()),
                Some(mut creds) => {
                    match rng.below(4) {
                        0 => creds.fsuid = u32::try_from(rng.next_u64() >> 32).unwrap_or(0),
                        1 => creds.groups = vec![u32::MAX; rng.below(70)],
                        2 => creds.cap_effective = u64::MAX,
                        _ => creds.umask = u32::MAX,
                    }
                    Some(creds)
                }
            };
        }
        _ => mutate_request(rng, &mut calls[i].request, dict),
    }
}
