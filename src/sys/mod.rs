//! The only module allowed to use `unsafe`. Each block says why it is sound
//! in a `SAFETY:` comment; everything outside calls these safe wrappers.
//!
//! Must not hold policy: each wrapper is one syscall or one documented
//! sequence, and callers decide when to use it.

pub mod fd;
pub mod net;
pub mod server;
pub mod shm;
pub mod tracer;

/// Lets glibc's allocator give freed memory back to the kernel: with an
/// explicit trim threshold (mallopt(3) `M_TRIM_THRESHOLD`, here glibc's own
/// default of 128 KiB) it no longer raises the threshold as large blocks
/// come and go, which otherwise keeps tens of megabytes of a long-running
/// server's freed memory resident for good. Other C libraries: nothing.
pub fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes two integers and only changes the allocator's
    // tuning; it is called before the server starts its threads.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}
