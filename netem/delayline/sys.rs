//! The only `unsafe` code of the delay line: creating a TUN device (ioctl `TUNSETIFF`)
//! and reading `CLOCK_MONOTONIC` as a plain nanosecond count.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

#[derive(Debug, thiserror::Error)]
pub enum TunError {
    #[error("TUN device name {0:?} must be 1..=15 bytes without NUL")]
    BadName(String),
    #[error("open /dev/net/tun: {0}")]
    Open(#[source] std::io::Error),
    #[error("ioctl TUNSETIFF for {name}: {source}")]
    SetIff {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Layout of `struct ifreq` as far as `TUNSETIFF` reads it: the name, then the
/// `ifr_flags` member of the union. The kernel copies `sizeof(struct ifreq)` = 40 bytes,
/// hence the padding.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const _: () = assert!(size_of::<IfReqFlags>() == 40);

/// Opens a non-persistent layer-3 TUN device (`IFF_TUN | IFF_NO_PI`) named `name`.
///
/// The device lives as long as the returned file: closing it (including at process exit)
/// removes the device from whichever namespace it was moved to.
pub fn open_tun(name: &str) -> Result<File, TunError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(TunError::BadName(name.to_owned()));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(TunError::Open)?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        // IFF_* are small positive constants; the kernel field is a short.
        flags: libc::c_short::try_from(libc::IFF_TUN | libc::IFF_NO_PI)
            .expect("IFF_TUN|IFF_NO_PI fits in c_short"),
        _pad: [0; 22],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `file` is an open /dev/net/tun descriptor, and `req` is a properly sized,
    // NUL-terminated (name is shorter than IFNAMSIZ and zero-filled) `struct ifreq`
    // that lives across the call. TUNSETIFF only reads and writes within those 40 bytes.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
    if rc < 0 {
        return Err(TunError::SetIff {
            name: name.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(file)
}

/// Nanoseconds on `CLOCK_MONOTONIC`, the clock `clock_nanosleep(TIMER_ABSTIME)` sleeps on.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux,
    // so the call cannot fail (checked below anyway).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    let secs = u64::try_from(ts.tv_sec).expect("monotonic clock is non-negative");
    let nanos = u64::try_from(ts.tv_nsec).expect("tv_nsec is in 0..1e9");
    secs * 1_000_000_000 + nanos
}
