//! Shared memory as a slice of atomic words: a sealed memfd mapped shared,
//! which other processes map again through its `/proc/PID/fd/N` path; and
//! the `CLOCK_MONOTONIC` reading that memory's expiry times are in.
//!
//! Wrappers only: must not decide what the memory holds.

use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// A shared mapping of a memfd of its own, unmapped on drop.
#[derive(Debug)]
pub struct SharedWords {
    fd: OwnedFd,
    at: NonNull<AtomicU64>,
    words: usize,
}

// SAFETY: the mapping is only ever reached as `&[AtomicU64]`, which is
// `Sync`; the pointer itself is not shared mutably.
unsafe impl Send for SharedWords {}
// SAFETY: as above: every access goes through atomics.
unsafe impl Sync for SharedWords {}

impl SharedWords {
    /// A zeroed memfd of `bytes` (a multiple of 8 and of the page size),
    /// sealed against resizing, mapped shared and writable.
    pub fn create(name: &str, bytes: usize) -> std::io::Result<Self> {
        use rustix::fs::{MemfdFlags, SealFlags};
        if bytes == 0 || !bytes.is_multiple_of(4096) {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&fd, u64::try_from(bytes).unwrap_or(u64::MAX))?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        // SAFETY: a fresh shared mapping of a file of exactly `bytes`
        // (sealed, so it cannot shrink under it); the kernel picks the
        // address, so nothing else is replaced.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let at = NonNull::new(ptr.cast::<AtomicU64>())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        Ok(Self {
            fd,
            at,
            words: bytes / 8,
        })
    }

    /// The memory, as words.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: `at` is a live, page-aligned mapping of `words` words for
        // as long as `self` is; `AtomicU64` has `u64`'s layout, and every
        // access, here or in another process, is atomic.
        unsafe { std::slice::from_raw_parts(self.at.as_ptr(), self.words) }
    }

    /// The path another process of the same user opens it by.
    pub fn proc_path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }
}

impl AsRef<[AtomicU64]> for SharedWords {
    fn as_ref(&self) -> &[AtomicU64] {
        self.words()
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `create` made; no reference
        // from `words()` outlives `self`.
        unsafe {
            libc::munmap(self.at.as_ptr().cast(), self.words * 8);
        }
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (what `std::time::Instant` reads
/// on Linux, and what the preload library reads).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives
    // across the call.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn the_memory_is_zeroed_shared_and_reopened_by_its_proc_path() {
        let shm = SharedWords::create("rscq-test", 8192).unwrap();
        assert_eq!(shm.words().len(), 1024);
        assert!(shm.words().iter().all(|w| w.load(Ordering::Relaxed) == 0));
        shm.words()[3].store(0x1234, Ordering::SeqCst);
        let bytes = std::fs::read(shm.proc_path()).unwrap();
        assert_eq!(bytes.len(), 8192);
        assert_eq!(&bytes[24..32], &0x1234u64.to_le_bytes());
        // Sealed: it cannot be resized under the mapping.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(shm.proc_path())
            .unwrap();
        assert!(f.set_len(4096).is_err());
        assert!(SharedWords::create("rscq-test", 100).is_err());
    }

    #[test]
    fn the_monotonic_clock_moves_on() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
    }
}
