//! Raw syscalls the server needs that rustix does not wrap.
