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

/// Gives back to the kernel every whole free page glibc's allocator holds,
/// in every arena (malloc_trim(3) with no padding). The trim threshold of
/// [`return_freed_memory`] only trims the top of a heap as it is freed;
/// pages freed below live blocks, and the per-thread arenas of threads that
/// served a burst of sessions, stay resident until this. Returns whether
/// memory was given back. Other C libraries: nothing, `false`.
pub fn trim_freed_memory() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes one integer and works only on the
        // allocator's own free lists, under the allocator's locks; it may
        // be called from any thread at any time.
        let released = unsafe { libc::malloc_trim(0) };
        released != 0
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}
