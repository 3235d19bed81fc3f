//! Raw syscalls of the tracer: ptrace requests, seccomp, fork.
