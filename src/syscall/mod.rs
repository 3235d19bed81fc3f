//! Decoding trapped syscalls into requests and encoding replies.
