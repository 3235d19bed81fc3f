//! The seccomp-BPF programs: only the calls rscq may forward stop the
//! program; everything else runs at native speed.
//!
//! This module turns rule lists into BPF and lays a program out for
//! injection. Which calls each filter traps, in which mode, is not decided
//! here: it is read from the one table in [`crate::syscall::nr`].

use super::TracerConfig;
use crate::sys::tracer::SockFilter;
pub use crate::syscall::nr::Action;
use crate::syscall::nr::{self, Filter};

/// `SECCOMP_RET_DATA` tag on rscq's own traps, so a `RET_TRACE` from a
/// filter the program installed itself is told apart.
pub const TRAP_TAG: u32 = 0x5c51;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_ERRNO: u32 = 0x0005_0000;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// `instruction_pointer`, low and high word.
const OFF_IP_LO: u32 = 8;
const OFF_IP_HI: u32 = 12;
/// `args[0]`; x86_64 is little-endian, so this is each argument's low word.
const OFF_ARGS: u32 = 16;

/// The low and high words of a 64-bit value, as BPF loads them.
fn words(v: u64) -> (u32, u32) {
    let b = v.to_le_bytes();
    (
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    )
}

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// The rules of the program's own filter, in from its start (path calls
/// with a mount, sockets with `--net`, `uname`, the refused calls), read
/// from the one table ([`crate::syscall::nr`]) for the tracer's mode.
pub fn filter_rules(config: &TracerConfig) -> Vec<(i64, Action)> {
    rules(Filter::Program, config)
}

/// The calls on fds that stop a process once it holds a remote file: a
/// second filter with these rules goes into a process when its first
/// placeholder is installed, so programs that never open a remote file
/// (and processes of a program that do not) run their reads and writes at
/// native speed. Empty without a mount.
pub fn fd_filter_rules(config: &TracerConfig) -> Vec<(i64, Action)> {
    rules(Filter::Fd, config)
}

/// The calls that stop a process once it maps a remote file shared (a
/// third filter, put in at its first such mapping): what the mappings
/// wrote goes to the server at `munmap` and `msync` (the call runs
/// natively at once when the range maps no shadow). Empty without a mount.
pub fn map_filter_rules(config: &TracerConfig) -> Vec<(i64, Action)> {
    rules(Filter::Map, config)
}

/// The calls that stop a process once it holds a socket bound or
/// listening on the server (a fourth filter, put in at its first such
/// `bind` or `listen`): `close`, so the server's socket is released at the
/// program's last close of its own. Empty without `--net`.
pub fn socket_filter_rules(config: &TracerConfig) -> Vec<(i64, Action)> {
    rules(Filter::Sockets, config)
}

fn rules(filter: Filter, config: &TracerConfig) -> Vec<(i64, Action)> {
    nr::rules(filter, &config.forwarding, config.only.as_ref())
}

/// A filter laid out as the kernel reads it from a process's memory at
/// `base` (16-byte aligned): the instructions, then the `struct sock_fprog`
/// pointing at them. Returns the bytes and the address of the `sock_fprog`.
pub fn image(prog: &[SockFilter], base: u64) -> Option<(Vec<u8>, u64)> {
    let len = u16::try_from(prog.len()).ok()?;
    let mut bytes = Vec::with_capacity(prog.len() * 8 + 16);
    for ins in prog {
        bytes.extend_from_slice(&ins.code.to_le_bytes());
        bytes.push(ins.jt);
        bytes.push(ins.jf);
        bytes.extend_from_slice(&ins.k.to_le_bytes());
    }
    let fprog = base.checked_add(u64::try_from(bytes.len()).ok()?)?;
    // struct sock_fprog { unsigned short len; /* pad */ struct sock_filter *filter; }
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&[0; 6]);
    bytes.extend_from_slice(&base.to_le_bytes());
    Some((bytes, fprog))
}

/// Builds the filter. Other ABIs (i386 via `int 0x80`) are allowed
/// untouched: their calls run locally (README, "What does not work yet").
pub fn build(rules: &[(i64, Action)]) -> Vec<SockFilter> {
    build_gated(rules, None)
}

/// [`build`], letting every call made from the syscall instruction that
/// ends at `gate` through untraced: the fast path's stub
/// ([`crate::fastpath::STUB_SYSCALL_IP`]), which only ever makes calls
/// the preload library judged local.
pub fn build_gated(rules: &[(i64, Action)], gate: Option<u64>) -> Vec<SockFilter> {
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, RET_ALLOW),
    ];
    if let Some(ip) = gate {
        let (lo, hi) = words(ip);
        prog.extend([
            stmt(BPF_LD_W_ABS, OFF_IP_LO),
            jump(BPF_JEQ_K, lo, 0, 3),
            stmt(BPF_LD_W_ABS, OFF_IP_HI),
            jump(BPF_JEQ_K, hi, 0, 1),
            stmt(BPF_RET_K, RET_ALLOW),
        ]);
    }
    prog.extend([
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, RET_ERRNO | libc::ENOSYS.unsigned_abs()),
    ]);
    for &(nr, action) in rules {
        let Ok(nr) = u32::try_from(nr) else { continue };
        let ret = match action {
            Action::Trace | Action::TraceUnlessArg { .. } | Action::TraceIfArg { .. } => {
                RET_TRACE | TRAP_TAG
            }
            Action::Errno(e) => RET_ERRNO | u32::from(e),
        };
        if let Action::TraceUnlessArg { arg, value } = action {
            // Only the matching path loads the argument, and it always
            // returns, so later rules still compare against nr.
            prog.push(jump(BPF_JEQ_K, nr, 0, 4));
            prog.push(stmt(BPF_LD_W_ABS, OFF_ARGS + 8 * u32::from(arg)));
            prog.push(jump(BPF_JEQ_K, value, 0, 1));
            prog.push(stmt(BPF_RET_K, RET_ALLOW));
            prog.push(stmt(BPF_RET_K, ret));
            continue;
        }
        if let Action::TraceIfArg { arg, values } = action {
            // Each compare jumps over the ones after it and the allow.
            let Ok(count) = u8::try_from(values.len()) else {
                continue;
            };
            prog.push(jump(BPF_JEQ_K, nr, 0, count + 3));
            prog.push(stmt(BPF_LD_W_ABS, OFF_ARGS + 8 * u32::from(arg)));
            for (i, value) in (0..count).zip(values) {
                prog.push(jump(BPF_JEQ_K, *value, count - i, 0));
            }
            prog.push(stmt(BPF_RET_K, RET_ALLOW));
            prog.push(stmt(BPF_RET_K, ret));
            continue;
        }
        prog.push(jump(BPF_JEQ_K, nr, 0, 1));
        prog.push(stmt(BPF_RET_K, ret));
    }
    prog.push(stmt(BPF_RET_K, RET_ALLOW));
    prog
}

/// Runs `prog` on one `seccomp_data` the way the kernel would, for tests.
#[cfg(test)]
fn run(prog: &[SockFilter], arch: u32, nr: u32) -> u32 {
    run_with_args(prog, arch, nr, [0; 6])
}

#[cfg(test)]
fn run_with_args(prog: &[SockFilter], arch: u32, nr: u32, args: [u32; 6]) -> u32 {
    run_at(prog, arch, nr, args, 0x40_1000)
}

#[cfg(test)]
fn run_at(prog: &[SockFilter], arch: u32, nr: u32, args: [u32; 6], ip: u64) -> u32 {
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let ins = prog[pc];
        pc += 1;
        match ins.code {
            BPF_LD_W_ABS => {
                acc = match ins.k {
                    OFF_ARCH => arch,
                    OFF_NR => nr,
                    OFF_IP_LO => words(ip).0,
                    OFF_IP_HI => words(ip).1,
                    k => args[usize::try_from((k - OFF_ARGS) / 8).unwrap()],
                }
            }
            BPF_JEQ_K => pc += usize::from(if acc == ins.k { ins.jt } else { ins.jf }),
            BPF_JGE_K => pc += usize::from(if acc >= ins.k { ins.jt } else { ins.jf }),
            BPF_RET_K => return ins.k,
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<(i64, Action)> {
        vec![
            (libc::SYS_openat, Action::Trace),
            (libc::SYS_read, Action::Trace),
            (libc::SYS_io_uring_setup, Action::Errno(38)),
        ]
    }

    #[test]
    fn the_gate_lets_only_its_own_instruction_through() {
        let gate = 0x7100_0002_u64;
        let p = build_gated(&rules(), Some(gate));
        let args = [0; 6];
        assert_eq!(run_at(&p, AUDIT_ARCH_X86_64, 257, args, gate), RET_ALLOW);
        assert_eq!(
            run_at(&p, AUDIT_ARCH_X86_64, 257, args, gate + 1),
            RET_TRACE | TRAP_TAG
        );
        // Same low word, other high word: a different address.
        assert_eq!(
            run_at(&p, AUDIT_ARCH_X86_64, 257, args, gate | (1 << 32)),
            RET_TRACE | TRAP_TAG
        );
        assert_eq!(run_at(&p, AUDIT_ARCH_X86_64, 39, args, 0x1234), RET_ALLOW);
        // Without a gate, the stub's address is nothing special.
        let plain = build(&rules());
        assert_eq!(
            run_at(&plain, AUDIT_ARCH_X86_64, 257, args, gate),
            RET_TRACE | TRAP_TAG
        );
    }

    #[test]
    fn traced_calls_trap_with_the_tag() {
        let p = build(&rules());
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 257), RET_TRACE | TRAP_TAG);
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 0), RET_TRACE | TRAP_TAG);
    }

    #[test]
    fn conditional_rule_checks_its_argument_and_later_rules_still_match() {
        let p = build(&[
            (
                libc::SYS_mmap,
                Action::TraceUnlessArg {
                    arg: 4,
                    value: u32::MAX,
                },
            ),
            (libc::SYS_openat, Action::Trace),
        ]);
        let anon = [0, 4096, 3, 0x22, u32::MAX, 0];
        let file = [0, 4096, 1, 2, 5, 0];
        assert_eq!(run_with_args(&p, AUDIT_ARCH_X86_64, 9, anon), RET_ALLOW);
        assert_eq!(
            run_with_args(&p, AUDIT_ARCH_X86_64, 9, file),
            RET_TRACE | TRAP_TAG
        );
        assert_eq!(
            run_with_args(&p, AUDIT_ARCH_X86_64, 257, file),
            RET_TRACE | TRAP_TAG
        );
        assert_eq!(run_with_args(&p, AUDIT_ARCH_X86_64, 39, file), RET_ALLOW);
    }

    #[test]
    fn trace_if_arg_stops_only_on_its_value() {
        const TRAPPED: &[u32] = &[
            libc::SO_ERROR.unsigned_abs(),
            libc::IPV6_V6ONLY.unsigned_abs(),
            libc::TCP_INFO.unsigned_abs(),
        ];
        let p = build(&[
            (
                libc::SYS_getsockopt,
                Action::TraceIfArg {
                    arg: 2,
                    values: TRAPPED,
                },
            ),
            (libc::SYS_openat, Action::Trace),
        ]);
        let nr = u32::try_from(libc::SYS_getsockopt).unwrap();
        let so_error = [3, 1, 4, 0, 0, 0];
        let v6only = [3, 41, 26, 0, 0, 0];
        let tcp_info = [3, 6, 11, 0, 0, 0];
        let so_rcvbuf = [3, 1, 8, 0, 0, 0];
        assert_eq!(
            run_with_args(&p, AUDIT_ARCH_X86_64, nr, tcp_info),
            RET_TRACE | TRAP_TAG
        );
        assert_eq!(
            run_with_args(&p, AUDIT_ARCH_X86_64, nr, so_error),
            RET_TRACE | TRAP_TAG
        );
        assert_eq!(
            run_with_args(&p, AUDIT_ARCH_X86_64, nr, v6only),
            RET_TRACE | TRAP_TAG
        );
        assert_eq!(
            run_with_args(&p, AUDIT_ARCH_X86_64, nr, so_rcvbuf),
            RET_ALLOW
        );
        assert_eq!(
            run_with_args(&p, AUDIT_ARCH_X86_64, 257, so_rcvbuf),
            RET_TRACE | TRAP_TAG
        );
    }

    #[test]
    fn other_calls_are_allowed() {
        let p = build(&rules());
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 39), RET_ALLOW);
    }

    #[test]
    fn refused_calls_get_enosys() {
        let p = build(&rules());
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 425), RET_ERRNO | 38);
    }

    #[test]
    fn x32_calls_get_enosys_and_other_arches_pass() {
        let p = build(&rules());
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 257),
            RET_ERRNO | 38
        );
        assert_eq!(run(&p, 0x4000_0003, 5), RET_ALLOW);
    }

    #[test]
    fn image_is_the_instructions_then_a_sock_fprog_pointing_at_them() {
        let p = build(&rules());
        let base = 0x7ffd_0000_1000;
        let (bytes, fprog) = image(&p, base).unwrap();
        assert_eq!(bytes.len(), p.len() * 8 + 16);
        assert_eq!(fprog, base + u64::try_from(p.len() * 8).unwrap());
        // The first instruction loads the arch: code 0x20, k = 4.
        assert_eq!(&bytes[..8], &[0x20, 0, 0, 0, 4, 0, 0, 0]);
        let tail = &bytes[p.len() * 8..];
        assert_eq!(
            u16::from_le_bytes([tail[0], tail[1]]),
            u16::try_from(p.len()).unwrap()
        );
        assert_eq!(&tail[2..8], &[0; 6]);
        assert_eq!(u64::from_le_bytes(tail[8..16].try_into().unwrap()), base);
    }
}

#[cfg(test)]
mod rule_tests {
    use super::*;
    use crate::syscall::plan::Forwarding;

    /// The calls whose UDP addresses hide inside `msghdr`.
    const UDP_MSG_CALLS: [i64; 4] = [
        libc::SYS_sendmsg,
        libc::SYS_recvmsg,
        libc::SYS_sendmmsg,
        libc::SYS_recvmmsg,
    ];

    #[test]
    fn pure_net_filter_traps_data_calls_and_waits() {
        let config = |pure_net| TracerConfig {
            forwarding: std::sync::Arc::new(Forwarding {
                net: true,
                pure_net,
                ..Forwarding::default()
            }),
            trace: false,
            only: None,
            fastpath: false,
        };
        let traced = |c: &TracerConfig, nr| {
            filter_rules(c)
                .iter()
                .any(|&(n, a)| n == nr && a == Action::Trace)
        };
        assert!(traced(&config(true), libc::SYS_recvfrom));
        assert!(traced(&config(true), libc::SYS_epoll_wait));
        assert!(!traced(&config(false), libc::SYS_recvfrom));
        assert!(!traced(&config(false), libc::SYS_read));
        // The resolver files are opened from the server even with no mount.
        assert!(traced(&config(false), libc::SYS_openat));
        // UDP: addresses inside msghdr are looked at in both modes.
        for nr in UDP_MSG_CALLS {
            assert!(traced(&config(false), nr));
            assert!(traced(&config(true), nr));
        }
    }

    #[test]
    fn fd_calls_are_trapped_only_by_the_second_filter() {
        let config = TracerConfig {
            forwarding: std::sync::Arc::new(Forwarding {
                mounts: crate::syscall::paths::MountTable::new(vec![
                    crate::syscall::paths::MountPoint {
                        local: b"/r".to_vec(),
                        remote: b"/".to_vec(),
                    },
                ]),
                ..Forwarding::default()
            }),
            trace: false,
            only: None,
            fastpath: false,
        };
        let first = filter_rules(&config);
        let second = fd_filter_rules(&config);
        let has = |rules: &[(i64, Action)], nr| rules.iter().any(|&(n, _)| n == nr);
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_fstat,
            libc::SYS_mmap,
        ] {
            assert!(!has(&first, nr) && has(&second, nr), "{nr}");
        }
        for nr in [libc::SYS_openat, libc::SYS_fchdir] {
            assert!(has(&first, nr) && !has(&second, nr), "{nr}");
        }
        // A stat of a path stops from the start; its `AT_EMPTY_PATH` form
        // (libc's fstat) only where a remote fd may be.
        let action =
            |rules: &[(i64, Action)], nr| rules.iter().find(|&&(n, _)| n == nr).map(|&(_, a)| a);
        for (nr, flags) in [(libc::SYS_newfstatat, 3), (libc::SYS_statx, 2)] {
            assert_eq!(
                action(&first, nr),
                Some(Action::TraceUnlessArg {
                    arg: flags,
                    value: 0x1000
                }),
                "{nr}"
            );
            assert_eq!(action(&second, nr), Some(Action::Trace), "{nr}");
        }
        let no_mount = TracerConfig {
            forwarding: std::sync::Arc::new(Forwarding::default()),
            trace: false,
            only: None,
            fastpath: false,
        };
        assert!(fd_filter_rules(&no_mount).is_empty());
        // munmap and msync stop only processes that map a remote file
        // shared: a third filter.
        let third = map_filter_rules(&config);
        for nr in [libc::SYS_munmap, libc::SYS_msync] {
            assert!(!has(&first, nr) && !has(&second, nr) && has(&third, nr));
        }
        assert!(map_filter_rules(&no_mount).is_empty());
    }

    /// The BPF programs built from the table's rules, run on every number
    /// the way the kernel would: exactly the table's calls stop, each as
    /// its rule says, in every mode.
    #[test]
    fn built_filters_trap_exactly_the_tables_calls() {
        for fwd in nr::tests::modes() {
            for only in nr::tests::remote_sets() {
                let config = TracerConfig {
                    forwarding: std::sync::Arc::new(fwd.clone()),
                    trace: false,
                    only,
                    fastpath: false,
                };
                for rules in [
                    filter_rules(&config),
                    fd_filter_rules(&config),
                    map_filter_rules(&config),
                ] {
                    let prog = build(&rules);
                    for nr in 0..512u32 {
                        let rule = rules.iter().find(|&&(n, _)| n == i64::from(nr));
                        check_one(&prog, nr, rule.map(|&(_, a)| a));
                    }
                }
            }
        }
    }

    /// `nr` runs through `prog` as `action` says (allowed for `None`).
    fn check_one(prog: &[SockFilter], nr: u32, action: Option<Action>) {
        let trace = RET_TRACE | TRAP_TAG;
        let at = |arg: u8, value: u32| {
            let mut args = [0; 6];
            args[usize::from(arg)] = value;
            run_with_args(prog, AUDIT_ARCH_X86_64, nr, args)
        };
        match action {
            None => assert_eq!(run(prog, AUDIT_ARCH_X86_64, nr), RET_ALLOW, "{nr}"),
            Some(Action::Trace) => assert_eq!(run(prog, AUDIT_ARCH_X86_64, nr), trace, "{nr}"),
            Some(Action::Errno(e)) => {
                assert_eq!(run(prog, AUDIT_ARCH_X86_64, nr), RET_ERRNO | u32::from(e));
            }
            Some(Action::TraceUnlessArg { arg, value }) => {
                assert_eq!(at(arg, value), RET_ALLOW, "{nr}");
                assert_eq!(at(arg, value ^ 1), trace, "{nr}");
            }
            Some(Action::TraceIfArg { arg, values }) => {
                for value in values {
                    assert_eq!(at(arg, *value), trace, "{nr}");
                }
                assert_eq!(at(arg, u32::MAX - 7), RET_ALLOW, "{nr}");
            }
        }
    }
}
