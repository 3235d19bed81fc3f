//! rscq's integration tests: real programs run under the real `rscq`
//! binary against a real `rscq-server` process over loopback QUIC, each
//! compared with the same program run directly on an identical tree.
//!
//! Run them with `tests/run.sh` (or `cargo test --release --test it`).
//! Tests that need root (a UTS namespace for the server) fail without it
//! when `RSCQ_REQUIRE_ROOT_TESTS=1` is set, and are skipped otherwise.

#[path = "../common/hang_report.rs"]
mod hang_report;
mod harness;

mod calls;
mod dirmeta;
mod embedded;
mod exec;
mod fastpath;
mod faults;
mod files;
mod locks;
mod mapping;
mod mapshared;
mod openahead;
mod pjdfstest;
mod posix;
mod process;
mod readiness;
mod reads;
mod remotes;
mod restart;
mod security;
mod shmcache;
mod stalls;
mod tmpfile;
mod uname;
mod writebehind;
mod zerortt;
