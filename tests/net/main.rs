//! End-to-end tests of `rscq --net` over a real three-namespace topology:
//!
//! ```text
//!  ns local ──veth── ns remote ──veth── ns web
//!  program under      rscq-server        servers the program talks to
//!  rscq               (QUIC, mTLS)       (reachable only from remote)
//! ```
//!
//! Every test builds its own namespaces (unique names, torn down by a Drop
//! guard), starts a real `rscq-server` in `remote`, and runs real programs
//! (curl, wget, w3m, busybox, python3, getent) under the real `rscq` in
//! `local`. Answers are compared with the real thing: the same program run
//! directly in `remote`, or the bytes that were served.
//!
//! Needs root (`ip netns`). Without root the tests print a notice and pass,
//! unless `RSCQ_REQUIRE_ROOT_TESTS=1`, which makes them fail; a missing tool
//! is handled the same way.
//!
//! Run with `cargo test --release --test net`.

#[path = "../common/hang_report.rs"]
mod hang_report;
mod harness;
mod netns;

mod abortive_close;
mod backpressure;
mod bind_connect;
mod blocked_send;
mod close_release;
mod coalesce;
mod cpython;
mod failed_connect;
mod golang;
mod half_closed_peer;
mod incoming;
mod ipv6;
mod listeners;
mod outgoing;
mod ping;
mod pure_sockets;
mod remotes;
mod scale;
mod signals;
mod slow_connect;
mod sockopts;
mod stalls;
mod tcp_calls;
mod tcp_options;
mod threaded_servers;
mod udp;
mod udp_options;
mod urgent;
