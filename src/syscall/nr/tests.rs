//! The table's invariants, on plain values: nothing trapped goes
//! unplanned or unnamed, nothing planned goes untrapped, nothing is listed
//! twice, and the rule lists are exactly what the table says.

use std::collections::{BTreeSet, HashSet};

use super::*;
use crate::syscall::paths::{MountPoint, MountTable};

const FILTERS: [Filter; 4] = [Filter::Program, Filter::Fd, Filter::Map, Filter::Sockets];

/// Every mode the tracer can be in, as far as the filters care.
pub(crate) fn modes() -> Vec<Forwarding> {
    let mut modes = Vec::new();
    for mounts in [false, true] {
        for uname in [false, true] {
            for net in [false, true] {
                for pure_net in [false, true] {
                    modes.push(Forwarding {
                        mounts: if mounts {
                            MountTable::new(vec![MountPoint {
                                local: b"/r".to_vec(),
                                remote: b"/".to_vec(),
                            }])
                        } else {
                            MountTable::default()
                        },
                        uname,
                        net,
                        pure_net: net && pure_net,
                        ..Forwarding::default()
                    });
                }
            }
        }
    }
    modes
}

/// rsc.config `REMOTE` sets: none, some names, and an empty one.
pub(crate) fn remote_sets() -> Vec<Option<BTreeSet<String>>> {
    vec![
        None,
        Some(
            ["open", "lstat", "read", "uname"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        Some(BTreeSet::new()),
    ]
}

#[test]
fn thesis_names_cover_modern_variants() {
    let set: std::collections::BTreeSet<String> = ["open", "lstat", "getdents"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(listed(&set, "openat"));
    assert!(listed(&set, "newfstatat"));
    assert!(listed(&set, "getdents64"));
    assert!(!listed(&set, "unlinkat"));
}

#[test]
fn every_trapped_call_has_a_name() {
    for call in TABLE {
        assert!(!call.name.is_empty(), "{}", call.nr);
        assert_eq!(name(call.nr), call.name);
    }
    assert_eq!(name(libc::SYS_getpid), "syscall");
}

#[test]
fn no_number_or_name_is_listed_twice() {
    let mut numbers = HashSet::new();
    let mut names = HashSet::new();
    for call in TABLE {
        assert!(numbers.insert(call.nr), "{} twice", call.name);
        assert!(names.insert(call.name), "{} twice", call.name);
    }
}

#[test]
fn every_call_is_trapped_and_every_trapped_call_is_planned_or_refused() {
    for call in TABLE {
        assert!(!call.traps.is_empty(), "{} is never trapped", call.name);
        for trap in call.traps {
            match trap.action {
                Action::Errno(_) => assert!(call.families.is_empty(), "{}", call.name),
                _ => assert!(!call.families.is_empty(), "{} has no planner", call.name),
            }
        }
    }
}

#[test]
fn every_planned_call_is_trapped_in_some_mode() {
    for call in TABLE.iter().filter(|c| !c.families.is_empty()) {
        let trapped = modes()
            .iter()
            .any(|fwd| FILTERS.iter().any(|&f| call.action(f, fwd, None).is_some()));
        assert!(trapped, "{} is planned but no filter stops it", call.name);
    }
}

#[test]
fn a_trapped_call_always_has_a_planner_offered() {
    for fwd in modes() {
        for call in TABLE {
            for filter in FILTERS {
                match call.action(filter, &fwd, None) {
                    None | Some(Action::Errno(_)) => {}
                    Some(_) => assert!(
                        call.families.iter().any(|f| f.offered(&fwd)),
                        "{} stops in {fwd:?} with no planner to take it",
                        call.name
                    ),
                }
            }
        }
    }
}

#[test]
fn families_are_listed_in_the_order_they_are_asked() {
    for call in TABLE {
        assert!(
            call.families.windows(2).all(|w| w[0] < w[1]),
            "{}: {:?}",
            call.name,
            call.families
        );
        assert_eq!(families(call.nr), call.families);
    }
    assert!(families(libc::SYS_getpid).is_empty());
}

#[test]
fn every_family_plans_some_call() {
    use Family::*;
    for family in [
        Udp,
        PureSocket,
        UnixSocket,
        SocketCreate,
        Net,
        Uname,
        Mmap,
        SharedSync,
        Close,
        Fd,
        Path,
    ] {
        assert!(
            TABLE.iter().any(|c| c.families.contains(&family)),
            "{family:?}"
        );
    }
}

#[test]
fn rules_are_exactly_the_tables_traps_once_each() {
    for fwd in modes() {
        for only in remote_sets() {
            for filter in FILTERS {
                let rules = rules(filter, &fwd, only.as_ref());
                let numbers: HashSet<i64> = rules.iter().map(|&(nr, _)| nr).collect();
                assert_eq!(numbers.len(), rules.len(), "a number twice in {filter:?}");
                for call in TABLE {
                    let expected = call.traps.iter().find(|t| {
                        t.filter == filter
                            && t.when.holds(&fwd)
                            && (!t.if_listed
                                || only.as_ref().is_none_or(|set| listed(set, call.name)))
                    });
                    let got = rules.iter().find(|&&(nr, _)| nr == call.nr);
                    assert_eq!(got.map(|&(_, a)| a), expected.map(|t| t.action));
                }
                assert!(
                    rules.iter().all(|&(nr, _)| lookup(nr).is_some()),
                    "a rule for a number outside the table"
                );
            }
        }
    }
}

#[test]
fn without_a_mount_no_fd_or_map_filter() {
    for fwd in modes().into_iter().filter(|f| f.mounts.is_empty()) {
        assert!(rules(Filter::Fd, &fwd, None).is_empty());
        assert!(rules(Filter::Map, &fwd, None).is_empty());
    }
}

#[test]
fn the_socket_filter_traps_close_with_net_only() {
    for fwd in modes() {
        let numbers: Vec<i64> = rules(Filter::Sockets, &fwd, None)
            .iter()
            .map(|&(n, _)| n)
            .collect();
        if fwd.net {
            assert_eq!(numbers, [libc::SYS_close], "{fwd:?}");
        } else {
            assert!(numbers.is_empty(), "{fwd:?}");
        }
    }
}

#[test]
fn the_remote_set_leaves_out_only_listed_traps() {
    let fwd = modes()
        .into_iter()
        .find(|f| !f.mounts.is_empty() && f.uname && !f.net)
        .unwrap();
    let none = BTreeSet::new();
    let program = rules(Filter::Program, &fwd, Some(&none));
    let has = |nr| program.iter().any(|&(n, _)| n == nr);
    // The cwd stays consistent, and refused calls stay refused.
    for nr in [
        libc::SYS_chdir,
        libc::SYS_getcwd,
        libc::SYS_fchdir,
        libc::SYS_clone3,
    ] {
        assert!(has(nr), "{nr}");
    }
    for nr in [libc::SYS_openat, libc::SYS_uname, libc::SYS_statx] {
        assert!(!has(nr), "{nr}");
    }
    let fd = rules(Filter::Fd, &fwd, Some(&none));
    let fd_numbers: Vec<i64> = fd.iter().map(|&(n, _)| n).collect();
    // A remote fd must not be watched by epoll, whatever the set says.
    assert_eq!(
        fd_numbers,
        [libc::SYS_epoll_ctl, libc::SYS_close, libc::SYS_mmap]
    );
}

#[test]
fn the_calls_a_thread_waits_for_input_in() {
    for nr in [
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_recvmmsg,
        libc::SYS_poll,
        libc::SYS_ppoll,
        libc::SYS_select,
        libc::SYS_pselect6,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
    ] {
        assert!(waits_for_input(nr), "{nr}");
    }
    assert_eq!(TABLE.iter().filter(|c| c.waits_for_input).count(), 12);
    for nr in [libc::SYS_write, libc::SYS_sendto, libc::SYS_getpid] {
        assert!(!waits_for_input(nr), "{nr}");
    }
}
