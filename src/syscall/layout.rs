//! Byte layouts of the kernel structures rscq writes into or reads from the
//! program's memory, for x86_64.
//!
//! Pure: byte layouts only; must not read or write tracee memory itself.

use crate::proto::{DirEntry, Stat, Statfs, TimeUpdate, Timespec, Utsname};

/// `sizeof(struct stat)` on x86_64 (stat(2)).
pub const STAT_SIZE: usize = 144;
/// `sizeof(struct statx)` (statx(2)).
pub const STATX_SIZE: usize = 256;
/// `sizeof(struct statfs)` on x86_64 (statfs(2)).
pub const STATFS_SIZE: usize = 120;
/// `sizeof(struct utsname)` (uname(2)).
pub const UTSNAME_SIZE: usize = 390;
const UTS_FIELD: usize = 65;

/// glibc's `makedev(3)` encoding of a device number.
pub fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0x0fff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `struct stat` as fstat(2) fills it.
pub fn encode_stat(st: &Stat) -> Vec<u8> {
    let mut b = vec![0u8; STAT_SIZE];
    put(
        &mut b,
        0,
        &makedev(st.dev_major, st.dev_minor).to_ne_bytes(),
    );
    put(&mut b, 8, &st.ino.to_ne_bytes());
    put(&mut b, 16, &st.nlink.to_ne_bytes());
    put(&mut b, 24, &st.mode.to_ne_bytes());
    put(&mut b, 28, &st.uid.to_ne_bytes());
    put(&mut b, 32, &st.gid.to_ne_bytes());
    put(
        &mut b,
        40,
        &makedev(st.rdev_major, st.rdev_minor).to_ne_bytes(),
    );
    put(&mut b, 48, &saturating_i64(st.size).to_ne_bytes());
    put(&mut b, 56, &i64::from(st.blksize).to_ne_bytes());
    put(&mut b, 64, &saturating_i64(st.blocks).to_ne_bytes());
    for (off, t) in [(72, st.atime), (88, st.mtime), (104, st.ctime)] {
        put(&mut b, off, &t.sec.to_ne_bytes());
        put(&mut b, off + 8, &i64::from(t.nsec).to_ne_bytes());
    }
    b
}

const STATX_BASIC_STATS: u32 = 0x7ff;
const STATX_BTIME: u32 = 0x800;
const STATX_MNT_ID: u32 = 0x1000;

/// `struct statx` as statx(2) fills it.
pub fn encode_statx(st: &Stat) -> Vec<u8> {
    let mut b = vec![0u8; STATX_SIZE];
    let mut mask = STATX_BASIC_STATS | STATX_MNT_ID;
    if st.btime.is_some() {
        mask |= STATX_BTIME;
    }
    put(&mut b, 0, &mask.to_ne_bytes());
    put(&mut b, 4, &st.blksize.to_ne_bytes());
    put(&mut b, 8, &st.attributes.to_ne_bytes());
    put(
        &mut b,
        16,
        &u32::try_from(st.nlink).unwrap_or(u32::MAX).to_ne_bytes(),
    );
    put(&mut b, 20, &st.uid.to_ne_bytes());
    put(&mut b, 24, &st.gid.to_ne_bytes());
    put(
        &mut b,
        28,
        &u16::try_from(st.mode & 0xffff).unwrap_or(0).to_ne_bytes(),
    );
    put(&mut b, 32, &st.ino.to_ne_bytes());
    put(&mut b, 40, &st.size.to_ne_bytes());
    put(&mut b, 48, &st.blocks.to_ne_bytes());
    put(&mut b, 56, &st.attributes_mask.to_ne_bytes());
    let btime = st.btime.unwrap_or_default();
    for (off, t) in [(64, st.atime), (80, btime), (96, st.ctime), (112, st.mtime)] {
        put(&mut b, off, &t.sec.to_ne_bytes());
        put(&mut b, off + 8, &t.nsec.to_ne_bytes());
    }
    put(&mut b, 128, &st.rdev_major.to_ne_bytes());
    put(&mut b, 132, &st.rdev_minor.to_ne_bytes());
    put(&mut b, 136, &st.dev_major.to_ne_bytes());
    put(&mut b, 140, &st.dev_minor.to_ne_bytes());
    put(&mut b, 144, &st.mnt_id.to_ne_bytes());
    b
}

/// `struct statfs` as statfs(2) fills it.
pub fn encode_statfs(s: &Statfs) -> Vec<u8> {
    let mut b = vec![0u8; STATFS_SIZE];
    put(&mut b, 0, &s.fs_type.to_ne_bytes());
    put(&mut b, 8, &s.bsize.to_ne_bytes());
    put(&mut b, 16, &s.blocks.to_ne_bytes());
    put(&mut b, 24, &s.bfree.to_ne_bytes());
    put(&mut b, 32, &s.bavail.to_ne_bytes());
    put(&mut b, 40, &s.files.to_ne_bytes());
    put(&mut b, 48, &s.ffree.to_ne_bytes());
    put(&mut b, 56, &s.fsid[0].to_ne_bytes());
    put(&mut b, 60, &s.fsid[1].to_ne_bytes());
    put(&mut b, 64, &s.namelen.to_ne_bytes());
    put(&mut b, 72, &s.frsize.to_ne_bytes());
    put(&mut b, 80, &s.flags.to_ne_bytes());
    b
}

/// `struct utsname`: each field NUL-terminated, truncated to fit.
pub fn encode_utsname(u: &Utsname) -> Vec<u8> {
    let mut b = vec![0u8; UTSNAME_SIZE];
    let fields = [
        &u.sysname,
        &u.nodename,
        &u.release,
        &u.version,
        &u.machine,
        &u.domainname,
    ];
    for (i, f) in fields.iter().enumerate() {
        let n = f.len().min(UTS_FIELD - 1);
        put(&mut b, i * UTS_FIELD, &f[..n]);
    }
    b
}

/// The length of one `struct linux_dirent64` record holding `name`.
pub fn dirent_reclen(name: &[u8]) -> usize {
    (19 + name.len() + 1).next_multiple_of(8)
}

/// Encodes entries as getdents64(2) does. Stops before the first entry that
/// would overflow `capacity`; returns the bytes and how many entries fit.
pub fn encode_dirents(entries: &[DirEntry], capacity: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut fitted = 0;
    for e in entries {
        let reclen = dirent_reclen(&e.name);
        if out.len() + reclen > capacity {
            break;
        }
        let start = out.len();
        out.resize(start + reclen, 0);
        let rec = &mut out[start..];
        put(rec, 0, &e.ino.to_ne_bytes());
        put(rec, 8, &e.off.to_ne_bytes());
        put(
            rec,
            16,
            &u16::try_from(reclen).unwrap_or(u16::MAX).to_ne_bytes(),
        );
        rec[18] = e.kind;
        put(rec, 19, &e.name);
        fitted += 1;
    }
    (out, fitted)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(w)
}

/// An array of `struct iovec` as (base, len) pairs.
pub fn decode_iovecs(b: &[u8]) -> Vec<(u64, u64)> {
    b.chunks_exact(16)
        .map(|c| (u64_at(c, 0), u64_at(c, 8)))
        .collect()
}

const UTIME_NOW: i64 = (1 << 30) - 1;
const UTIME_OMIT: i64 = (1 << 30) - 2;

/// `struct timespec[2]` of utimensat(2), with `UTIME_NOW`/`UTIME_OMIT`.
pub fn decode_utimens(b: &[u8]) -> [TimeUpdate; 2] {
    let one = |off: usize| {
        let sec = u64_at(b, off).cast_signed();
        let nsec = u64_at(b, off + 8).cast_signed();
        match nsec {
            UTIME_NOW => TimeUpdate::Now,
            UTIME_OMIT => TimeUpdate::Omit,
            n => TimeUpdate::At(Timespec {
                sec,
                nsec: u32::try_from(n).unwrap_or(0),
            }),
        }
    };
    [one(0), one(16)]
}

/// `struct timeval[2]` of utimes(2).
pub fn decode_timevals(b: &[u8]) -> [TimeUpdate; 2] {
    let one = |off: usize| {
        let sec = u64_at(b, off).cast_signed();
        let usec = u64_at(b, off + 8).cast_signed();
        TimeUpdate::At(Timespec {
            sec,
            nsec: u32::try_from(usec.saturating_mul(1000)).unwrap_or(0),
        })
    };
    [one(0), one(16)]
}

/// `struct open_how` of openat2(2): (flags, mode, resolve).
pub fn decode_open_how(b: &[u8]) -> (u64, u64, u64) {
    (u64_at(b, 0), u64_at(b, 8), u64_at(b, 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makedev_matches_libc() {
        for (maj, min) in [(0, 0), (8, 1), (259, 3), (0xfff, 0xff), (0x12345, 0x6789a)] {
            assert_eq!(makedev(maj, min), libc::makedev(maj, min));
        }
    }

    #[test]
    fn stat_layout_matches_libc_struct() {
        let st = Stat {
            dev_major: 8,
            dev_minor: 1,
            ino: 42,
            mode: 0o100644,
            nlink: 3,
            uid: 1000,
            gid: 100,
            size: 12345,
            blksize: 4096,
            blocks: 24,
            atime: Timespec { sec: 1, nsec: 2 },
            mtime: Timespec { sec: 3, nsec: 4 },
            ctime: Timespec { sec: 5, nsec: 6 },
            ..Stat::default()
        };
        let b = encode_stat(&st);
        assert_eq!(size_of::<libc::stat>(), STAT_SIZE);
        assert_eq!(u64_at(&b, 0), libc::makedev(8, 1));
        assert_eq!(u64_at(&b, 8), 42);
        assert_eq!(u64_at(&b, 16), 3);
        assert_eq!(&b[24..28], &0o100644u32.to_ne_bytes());
        assert_eq!(u64_at(&b, 48), 12345);
        assert_eq!(u64_at(&b, 88), 3);
        assert_eq!(u64_at(&b, 96), 4);
        assert_eq!(std::mem::offset_of!(libc::stat, st_mtime), 88);
        assert_eq!(std::mem::offset_of!(libc::stat, st_size), 48);
        assert_eq!(std::mem::offset_of!(libc::stat, st_blocks), 64);
    }

    #[test]
    fn statx_and_statfs_offsets_match_libc() {
        assert_eq!(size_of::<libc::statx>(), STATX_SIZE);
        assert_eq!(std::mem::offset_of!(libc::statx, stx_mtime), 112);
        assert_eq!(std::mem::offset_of!(libc::statx, stx_dev_major), 136);
        assert_eq!(std::mem::offset_of!(libc::statx, stx_mnt_id), 144);
        assert_eq!(size_of::<libc::statfs>(), STATFS_SIZE);
        assert_eq!(std::mem::offset_of!(libc::statfs, f_namelen), 64);
        assert_eq!(std::mem::offset_of!(libc::statfs, f_frsize), 72);
        assert_eq!(size_of::<libc::utsname>(), UTSNAME_SIZE);
    }

    #[test]
    fn dirents_are_padded_and_bounded() {
        let e = |n: &str| DirEntry {
            ino: 1,
            off: 2,
            kind: 4,
            name: n.as_bytes().to_vec(),
        };
        let entries = vec![e("a"), e("bbbbbbbbbbbb"), e("c")];
        let (bytes, n) = encode_dirents(&entries, 1024);
        assert_eq!(n, 3);
        assert_eq!(bytes.len(), 24 + 32 + 24);
        assert_eq!(bytes[19], b'a');
        assert_eq!(bytes[20], 0);
        let (bytes, n) = encode_dirents(&entries, 50);
        assert_eq!((bytes.len(), n), (24, 1));
    }

    #[test]
    fn utimens_special_values() {
        let mut b = vec![0u8; 32];
        b[8..16].copy_from_slice(&UTIME_NOW.to_ne_bytes());
        b[16..24].copy_from_slice(&7i64.to_ne_bytes());
        b[24..32].copy_from_slice(&UTIME_OMIT.to_ne_bytes());
        assert_eq!(decode_utimens(&b), [TimeUpdate::Now, TimeUpdate::Omit]);
    }
}

/// `sizeof(struct sockaddr_in)` and `sizeof(struct sockaddr_in6)`.
pub const SOCKADDR_IN_SIZE: usize = 16;
pub const SOCKADDR_IN6_SIZE: usize = 28;

/// Decodes an IPv4 or IPv6 `struct sockaddr`; `None` for other families
/// (those stay local) or a short buffer.
pub fn decode_sockaddr(b: &[u8]) -> Option<crate::proto::SockAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET if b.len() >= 8 => Some(crate::proto::SockAddr::V4 {
            ip: [b[4], b[5], b[6], b[7]],
            port,
        }),
        libc::AF_INET6 if b.len() >= SOCKADDR_IN6_SIZE => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[8..24]);
            Some(crate::proto::SockAddr::V6 {
                ip,
                port,
                flowinfo: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                scope_id: u32::from_ne_bytes([b[24], b[25], b[26], b[27]]),
            })
        }
        _ => None,
    }
}

/// Encodes a socket address as the kernel lays out `struct sockaddr_in`/`_in6`.
pub fn encode_sockaddr(a: &crate::proto::SockAddr) -> Vec<u8> {
    match *a {
        crate::proto::SockAddr::V4 { ip, port } => {
            let mut b = vec![0u8; SOCKADDR_IN_SIZE];
            put(
                &mut b,
                0,
                &u16::try_from(libc::AF_INET).unwrap_or(2).to_ne_bytes(),
            );
            put(&mut b, 2, &port.to_be_bytes());
            put(&mut b, 4, &ip);
            b
        }
        crate::proto::SockAddr::V6 {
            ip,
            port,
            flowinfo,
            scope_id,
        } => {
            let mut b = vec![0u8; SOCKADDR_IN6_SIZE];
            put(
                &mut b,
                0,
                &u16::try_from(libc::AF_INET6).unwrap_or(10).to_ne_bytes(),
            );
            put(&mut b, 2, &port.to_be_bytes());
            put(&mut b, 4, &flowinfo.to_be_bytes());
            put(&mut b, 8, &ip);
            put(&mut b, 24, &scope_id.to_ne_bytes());
            b
        }
    }
}

#[cfg(test)]
mod sockaddr_tests {
    use super::*;
    use crate::proto::SockAddr;

    #[test]
    fn sockaddrs_round_trip() {
        let v4 = SockAddr::V4 {
            ip: [10, 0, 0, 1],
            port: 8080,
        };
        let b = encode_sockaddr(&v4);
        assert_eq!(&b[2..4], &[0x1f, 0x90]);
        assert_eq!(decode_sockaddr(&b), Some(v4));
        let v6 = SockAddr::V6 {
            ip: [0xfe; 16],
            port: 443,
            flowinfo: 7,
            scope_id: 3,
        };
        assert_eq!(decode_sockaddr(&encode_sockaddr(&v6)), Some(v6));
    }

    #[test]
    fn other_families_and_short_buffers_are_refused() {
        assert_eq!(decode_sockaddr(&[1, 0, b'/', b't']), None);
        assert_eq!(decode_sockaddr(&[2, 0, 0]), None);
        assert_eq!(decode_sockaddr(&[]), None);
    }
}

/// The socket option a `setsockopt(level, name, value)` sets, for the
/// options that matter on the server's socket; `None` for any other (or a
/// value too short, which the kernel refuses itself).
pub fn decode_sock_option(level: i32, name: i32, value: &[u8]) -> Option<crate::proto::SockOption> {
    use crate::proto::SockOption;
    let int = |at: usize| -> Option<i32> {
        let b = value.get(at..at + 4)?;
        Some(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let count = |at: usize| int(at).map(|v| u32::try_from(v.max(0)).unwrap_or(0));
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => Some(SockOption::KeepAlive(int(0)? != 0)),
        (libc::SOL_SOCKET, libc::SO_RCVBUF) => Some(SockOption::RecvBuffer(count(0)?)),
        (libc::SOL_SOCKET, libc::SO_SNDBUF) => Some(SockOption::SendBuffer(count(0)?)),
        (libc::SOL_SOCKET, libc::SO_LINGER) => {
            let on = int(0)? != 0;
            let secs = count(4)?;
            Some(SockOption::Linger(on.then_some(secs)))
        }
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) => Some(SockOption::NoDelay(int(0)? != 0)),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE) => Some(SockOption::KeepIdle(count(0)?)),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL) => Some(SockOption::KeepInterval(count(0)?)),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => Some(SockOption::KeepCount(count(0)?)),
        (libc::IPPROTO_TCP, libc::TCP_CORK) => Some(SockOption::Cork(int(0)? != 0)),
        (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT) => Some(SockOption::UserTimeout(count(0)?)),
        // The kernel takes an int, or a single byte (`ip_setsockopt`).
        (libc::IPPROTO_IP, libc::IP_TOS) => {
            let tos = match int(0) {
                Some(v) => u8::try_from(v & 0xff).ok()?,
                None => *value.first()?,
            };
            Some(SockOption::IpTos(tos))
        }
        _ => None,
    }
}

#[cfg(test)]
mod sock_option_tests {
    use super::*;
    use crate::proto::SockOption;

    #[test]
    fn tos_cork_and_user_timeout_decode() {
        let one = 1i32.to_ne_bytes();
        assert_eq!(
            decode_sock_option(libc::IPPROTO_TCP, libc::TCP_CORK, &one),
            Some(SockOption::Cork(true))
        );
        assert_eq!(
            decode_sock_option(
                libc::IPPROTO_TCP,
                libc::TCP_USER_TIMEOUT,
                &7000i32.to_ne_bytes()
            ),
            Some(SockOption::UserTimeout(7000))
        );
        assert_eq!(
            decode_sock_option(libc::IPPROTO_IP, libc::IP_TOS, &0x28i32.to_ne_bytes()),
            Some(SockOption::IpTos(0x28))
        );
        assert_eq!(
            decode_sock_option(libc::IPPROTO_IP, libc::IP_TOS, &[0x48]),
            Some(SockOption::IpTos(0x48))
        );
        assert_eq!(
            decode_sock_option(libc::IPPROTO_IP, libc::IP_TOS, &[]),
            None
        );
    }

    #[test]
    fn options_decode_from_their_values() {
        let one = 1i32.to_ne_bytes();
        assert_eq!(
            decode_sock_option(libc::SOL_SOCKET, libc::SO_KEEPALIVE, &one),
            Some(SockOption::KeepAlive(true))
        );
        let mut linger = 1i32.to_ne_bytes().to_vec();
        linger.extend_from_slice(&5i32.to_ne_bytes());
        assert_eq!(
            decode_sock_option(libc::SOL_SOCKET, libc::SO_LINGER, &linger),
            Some(SockOption::Linger(Some(5)))
        );
        linger[0] = 0;
        assert_eq!(
            decode_sock_option(libc::SOL_SOCKET, libc::SO_LINGER, &linger),
            Some(SockOption::Linger(None))
        );
        assert_eq!(
            decode_sock_option(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, &60i32.to_ne_bytes()),
            Some(SockOption::KeepIdle(60))
        );
        // Short values are the kernel's to refuse; others stay local.
        assert_eq!(
            decode_sock_option(libc::SOL_SOCKET, libc::SO_RCVBUF, &[1, 0]),
            None
        );
        assert_eq!(
            decode_sock_option(libc::SOL_SOCKET, libc::SO_REUSEADDR, &one),
            None
        );
    }
}
