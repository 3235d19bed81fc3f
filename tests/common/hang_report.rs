//! What a process group that overran its timeout was doing, read from
//! `/proc` before the group is killed, so a hang in CI says where it hung:
//! each thread's state (`t` is a ptrace stop, waiting for rscq), the
//! kernel function it sleeps in (`wchan`) and the system call it is in
//! (`/proc/TID/syscall`: number and arguments).
//!
//! Shared by the `it` and `net` suites (`#[path]`).

use std::fmt::Write as _;
use std::fs;

/// One line per thread of every process whose process group is `pgid`.
pub fn describe_group(pgid: i32) -> String {
    let mut report = format!("--- threads of process group {pgid} at the timeout ---\n");
    let Ok(procs) = fs::read_dir("/proc") else {
        return report + "(no /proc)\n";
    };
    let mut pids: Vec<i32> = procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Some(stat) = read_stat(&format!("/proc/{pid}/stat")) else {
            continue;
        };
        if stat.pgrp != pgid {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                let line = String::from_utf8_lossy(&b).replace('\0', " ");
                line.trim_end().chars().take(160).collect::<String>()
            })
            .unwrap_or_default();
        let _ = writeln!(report, "pid {pid} ppid {}: {cmdline}", stat.ppid);
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        let mut tids: Vec<i32> = tasks
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort_unstable();
        for tid in tids {
            let dir = format!("/proc/{pid}/task/{tid}");
            let Some(t) = read_stat(&format!("{dir}/stat")) else {
                continue;
            };
            let wchan = fs::read_to_string(format!("{dir}/wchan")).unwrap_or_default();
            let syscall = fs::read_to_string(format!("{dir}/syscall")).unwrap_or_default();
            let tracer = fs::read_to_string(format!("{dir}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("TracerPid:").map(|v| v.trim().to_owned()))
                })
                .unwrap_or_default();
            let _ = writeln!(
                report,
                "  tid {tid} {} state {} wchan {} syscall [{}] tracer {tracer}",
                t.comm,
                t.state,
                if wchan.is_empty() { "-" } else { wchan.trim() },
                syscall.trim(),
            );
        }
    }
    report
}

struct Stat {
    comm: String,
    state: char,
    ppid: i32,
    pgrp: i32,
}

/// `/proc/PID/stat`: `pid (comm) state ppid pgrp ...`; comm may hold
/// spaces and parentheses, so it ends at the last `)`.
fn read_stat(path: &str) -> Option<Stat> {
    let text = fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        ppid,
        pgrp,
    })
}
