//! Without `--remote`: rscq's embedded executor on loopback (README's
//! first example), and a few of the file cases against it.

use std::fs;

use crate::harness::{Backend, Pair, cmd, each_mode, run, sh_c};

fn rscq_embedded(args: &[&str]) -> crate::harness::Output {
    let mut c = cmd(&[crate::harness::RSCQ]);
    c.args(args);
    run(c)
}

#[test]
fn readme_example_etc() {
    let direct = run(cmd(&["ls", "-l", "--color=never", "/etc"])).success();
    for mode in crate::harness::MODES {
        let mut args = vec!["--mount", "/remote=/etc", "--stats"];
        args.extend_from_slice(mode);
        let mut a = args.clone();
        a.extend(["--", "ls", "-l", "--color=never", "/remote"]);
        let r = rscq_embedded(&a).success();
        assert_eq!(r.out(), direct.out(), "{}", r.dump());
        assert!(r.forwarded() > 0, "{}", r.dump());
        let mut a = args.clone();
        a.extend(["--", "cat", "/remote/passwd"]);
        let r = rscq_embedded(&a).success();
        assert_eq!(r.stdout, fs::read("/etc/passwd").unwrap(), "{}", r.dump());
        let mut a = args.clone();
        a.extend(["--", "cat", "/remote/does-not-exist"]);
        let r = rscq_embedded(&a);
        assert_eq!(r.code(), 1, "{}", r.dump());
        assert!(
            r.err()
                .contains("cat: /remote/does-not-exist: No such file or directory"),
            "{}",
            r.dump()
        );
    }
}

#[test]
fn embedded_ls_la_stat_cat() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Embedded, mode);
        let t = pair.t();
        pair.same(&["ls", "-la", "--color=never", &t]);
        pair.same(&["ls", "-laR", "--color=never", &format!("{t}/sub")]);
        pair.same(&[
            "stat",
            "-c",
            "%n|%F|%s|%a|%h|%Y|%N",
            &format!("{t}/a.txt"),
            &format!("{t}/link"),
            &format!("{t}/sub"),
        ]);
        pair.same(&["cat", &format!("{t}/big.dat"), &format!("{t}/link")]);
        pair.same_sorted(&["find", &t, "-printf", "%p %y %s %m\n"]);
    });
}

#[test]
fn embedded_writes() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Embedded, mode);
        let t = pair.t();
        pair.same_writes(&sh_c(&format!("echo hi > '{t}/f'; cat '{t}/f'")), &[]);
        pair.same_writes(
            &["cp", "-a", &format!("{t}/sub"), &format!("{t}/sub2")],
            &[],
        );
        pair.same_writes(
            &["mv", &format!("{t}/sub2"), &format!("{t}/emptydir/moved")],
            &[],
        );
        pair.same_writes(&["mkdir", "-p", &format!("{t}/x/y")], &[]);
        pair.same_writes(&["rm", "-r", &format!("{t}/sub")], &[]);
        pair.same(&["rmdir", &format!("{t}/emptydir")]);
    });
}

/// `--stats` with `--net` counts the bytes of TCP connections, which in
/// default mode cross no forwarded call: a row of their own.
#[test]
fn stats_count_net_stream_bytes() {
    let script = r#"
import socket, threading
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
port = srv.getsockname()[1]
got = []
def serve():
    c, _ = srv.accept()
    n = 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        n += len(b)
    c.sendall(b"y" * 50000)
    c.close()
    got.append(n)
t = threading.Thread(target=serve)
t.start()
c = socket.create_connection(("127.0.0.1", port))
c.sendall(b"x" * 100000)
c.shutdown(socket.SHUT_WR)
back = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    back += len(b)
t.join()
print(got[0], back)
"#;
    let r = rscq_embedded(&["--net", "--stats", "--", "python3", "-c", script]).success();
    assert_eq!(r.out(), "100000 50000\n", "{}", r.dump());
    let err = r.err();
    let row = err
        .lines()
        .find(|l| l.contains("tcp streams"))
        .unwrap_or_else(|| panic!("no tcp streams row:\n{err}"));
    let numbers: Vec<u64> = row
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // Both ends are the program's: each side's bytes go up and come down.
    assert_eq!(numbers, [150000, 150000], "{row}\n{err}");
}
