//! rscq's hand-written `/proc` parsers against the `procfs` crate's
//! (`procfs-core`, the same parsers without the file I/O) on the same
//! text, to decide whether the crate replaces them (issue 15: "unless a
//! benchmark shows the crate is slower on a hot path").
//!
//! * `tcp_table_listeners`: the inodes of the listening sockets in a
//!   `/proc/net/tcp` text of 200 rows (`client::listeners`, the fallback
//!   when sock_diag is missing; `client::hold` reads the same columns, and
//!   `client::udp` the inode column of `/proc/net/udp` the same way).
//! * `syscall_line`: whether a `/proc/PID/task/TID/syscall` line is a wait
//!   for input (`client::coalesce`, on the `--net` upstream path: each
//!   time a write is held, and every few ms while held).
//!
//! `/proc/PID/fdinfo` of an epoll fd (`tracer::view`) has no counterpart
//! in the crate (it does not parse the `tfd:` lines), so it is not here.
//!
//! Each pair is checked to give the same answer before it is timed. Figures
//! and the decision: `benches/REPORT-notes.md`, ARCHITECTURE.md.
//! Run: `cargo bench --bench procparse`.

use std::collections::HashSet;
use std::hint::black_box;

use criterion::Criterion;
use procfs_core::net::{TcpNetEntries, TcpState};
use procfs_core::process::Syscall;
use procfs_core::{ExplicitSystemInfo, FromBufReadSI, FromRead};

use rscq::client::coalesce::waits_for_input;
use rscq::client::listeners::listening_inodes;

/// A `/proc/net/tcp` text: 200 sockets, one in ten listening.
fn tcp_table() -> String {
    let mut text = String::from(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
    );
    for i in 0..200u32 {
        let (state, remote) = if i % 10 == 0 {
            ("0A", "00000000:0000".to_string())
        } else {
            ("01", format!("0100007F:{:04X}", 40000 + i))
        };
        text.push_str(&format!(
            "{i:4}: 0100007F:{:04X} {remote} {state} 00000000:00000000 00:00000000 00000000     0        0 {} 1 0000000000000000 20 4 30 10 -1\n",
            8000 + i,
            100_000 + i
        ));
    }
    text
}

fn system_info() -> ExplicitSystemInfo {
    ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    }
}

fn crate_listening_inodes(text: &str, info: &ExplicitSystemInfo) -> HashSet<u64> {
    TcpNetEntries::from_buf_read(text.as_bytes(), info)
        .map(|entries| {
            entries
                .0
                .into_iter()
                .filter(|e| e.state == TcpState::Listen)
                .map(|e| e.inode)
                .collect()
        })
        .unwrap_or_default()
}

fn crate_waits_for_input(line: &str) -> bool {
    match Syscall::from_read(line.as_bytes()) {
        Ok(Syscall::Blocked { syscall_number, .. }) => {
            rscq::syscall::nr::waits_for_input(syscall_number)
        }
        _ => false,
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();

    let table = tcp_table();
    let info = system_info();
    let ours = listening_inodes(&table);
    assert_eq!(ours.len(), 20);
    assert_eq!(ours, crate_listening_inodes(&table, &info));
    let mut group = c.benchmark_group("tcp_table_listeners");
    group.bench_function("rscq", |b| b.iter(|| listening_inodes(black_box(&table))));
    group.bench_function("procfs", |b| {
        b.iter(|| crate_listening_inodes(black_box(&table), &info))
    });
    group.finish();

    // A thread blocked in read(2), and one running.
    let lines = [
        "0 0x3 0x7ffd5c0a1000 0x1000 0x0 0x0 0x0 0x7ffd5c0a0fb8 0x7f12a4b1c7e2\n",
        "running\n",
    ];
    for line in lines {
        assert_eq!(waits_for_input(line), crate_waits_for_input(line), "{line}");
    }
    let mut group = c.benchmark_group("syscall_line");
    group.bench_function("rscq", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| waits_for_input(black_box(l)))
                .count()
        })
    });
    group.bench_function("procfs", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| crate_waits_for_input(black_box(l)))
                .count()
        })
    });
    group.finish();

    c.final_summary();
}
