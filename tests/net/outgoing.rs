//! Outgoing connections: the program in `local` reaches servers in `web`
//! only through rscq-server in `remote`.

use std::fs;
use std::path::Path;

use crate::harness::{MODES, Output, Running, p, pattern, python, run, sha256, sha256_file};
use crate::netns::{Lab, Ns};

const BIG: usize = 20 * 1024 * 1024;
const HTTP_PORT: u16 = 8000;

/// A directory in the lab with `big.bin` (20 MiB of pseudo-random bytes)
/// and `hello.txt`; returns (dir, sha256 of big.bin).
fn web_files(lab: &Lab) -> (std::path::PathBuf, String) {
    let dir = lab.mkdir("www");
    let big = pattern(BIG, 0x5eed);
    fs::write(dir.join("big.bin"), &big).expect("write big.bin");
    fs::write(dir.join("hello.txt"), b"hello from web\n").expect("write hello.txt");
    (dir, sha256(&big))
}

fn mode_name(mode: &[&str]) -> String {
    if mode.is_empty() {
        "default".into()
    } else {
        mode.join(" ")
    }
}

#[track_caller]
fn assert_download(out: &Output, file: &Path, want: &str, what: &str) {
    let got = sha256_file(file);
    assert_eq!(
        got,
        want,
        "{what}: downloaded {} bytes with a different sha256\n{}",
        fs::metadata(file).map(|m| m.len()).unwrap_or(0),
        out.dump()
    );
}

/// 1. Without rscq, `local` cannot reach `web` at all, so every success
///    under rscq went through `remote`.
#[test]
fn topology_web_unreachable_from_local() {
    let Some(lab) = Lab::new("topology_web_unreachable_from_local", &["curl"]) else {
        return;
    };
    let (dir, _) = web_files(&lab);
    let _web = lab.web_http(&dir, HTTP_PORT);
    let url = format!("http://{}:{HTTP_PORT}/hello.txt", lab.net.web_ip);

    // Positive control: the server answers from remote.
    let out = lab.run_ok(lab.exec(Ns::Remote, &["curl", "-sS", "--max-time", "20", &url]));
    assert_eq!(out.out(), "hello from web\n", "{}", out.dump());

    // From local: no route.
    let out = run(lab.exec(Ns::Local, &["curl", "-sS", "--max-time", "20", &url])).failure();
    assert_eq!(
        out.code(),
        7,
        "curl from local should fail to connect\n{}",
        out.dump()
    );
    let web_ip = lab.net.web_ip.to_string();
    let out = run(lab.exec(Ns::Local, &["ip", "route", "get", &web_ip])).failure();
    assert!(
        out.err().contains("Network is unreachable"),
        "{}",
        out.dump()
    );
    // And remote does not forward.
    let out = lab.run_ok(lab.exec(Ns::Remote, &["cat", "/proc/sys/net/ipv4/ip_forward"]));
    assert_eq!(out.out().trim(), "0", "{}", out.dump());
}

/// 2 + 11. curl, wget and w3m download 20 MiB from web under rscq --net,
///    in every mode; the bytes are the served ones.
#[test]
fn download_curl_wget_w3m() {
    let Some(lab) = Lab::new("download_curl_wget_w3m", &["curl", "wget", "w3m"]) else {
        return;
    };
    let (dir, want) = web_files(&lab);
    let _web = lab.web_http(&dir, HTTP_PORT);
    let url = format!("http://{}:{HTTP_PORT}/big.bin", lab.net.web_ip);
    let outdir = lab.mkdir("downloads");
    for mode in MODES {
        let m = mode_name(mode);
        let tag = m.replace(' ', "");

        let file = outdir.join(format!("curl{tag}.bin"));
        let out = lab.run_ok(lab.rscq(mode, &["curl", "-sS", "--fail", "-o", p(&file), &url]));
        assert_download(&out, &file, &want, &format!("curl ({m})"));

        let file = outdir.join(format!("wget{tag}.bin"));
        let out = lab.run_ok(lab.rscq(mode, &["wget", "-q", "-O", p(&file), &url]));
        assert_download(&out, &file, &want, &format!("wget ({m})"));

        // w3m -dump_source writes the body byte for byte to stdout.
        let out = lab.run_ok(lab.rscq(mode, &["w3m", "-dump_source", &url]));
        assert_eq!(
            out.stdout.len(),
            BIG,
            "w3m ({m}): wrong length\n{}",
            out.dump()
        );
        assert_eq!(sha256(&out.stdout), want, "w3m ({m}): wrong bytes");
    }
}

/// 3 + 11. "What is my IP": web sees remote's address on the remote↔web
///    link, exactly as for a client run in remote itself.
#[test]
fn web_sees_remote_address() {
    let Some(lab) = Lab::new("web_sees_remote_address", &["curl"]) else {
        return;
    };
    let _web = lab.web_whoami(8080);
    let url = format!("http://{}:8080/", lab.net.web_ip);
    let reference = lab.run_ok(lab.exec(Ns::Remote, &["curl", "-sS", "--max-time", "20", &url]));
    assert_eq!(reference.out(), format!("{}\n", lab.net.remote_web_ip));
    for mode in MODES {
        let out = lab.run_ok(lab.rscq(mode, &["curl", "-sS", "--max-time", "30", &url]));
        assert_eq!(
            out.out(),
            reference.out(),
            "({}) web must see remote's address {}, never local's {}\n{}",
            mode_name(mode),
            lab.net.remote_web_ip,
            lab.net.local_ip,
            out.dump()
        );
    }
}

const SOCKNAME_PY: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
print("peer", s.getpeername())
name = s.getsockname()
print("sock", name[0])
print("sock port nonzero", name[1] != 0)
s.sendall(b"hi\n")
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print("reply", data)
"#;

/// 4 + 11. getpeername is web's address and port, getsockname is remote's
///    address, as when the same client runs in remote.
#[test]
fn getsockname_getpeername() {
    let Some(lab) = Lab::new("getsockname_getpeername", &[]) else {
        return;
    };
    let _echo = lab.web_echo(7000, "E");
    let script = lab.write("sockname.py", SOCKNAME_PY.as_bytes());
    let py = python();
    let web_ip = lab.net.web_ip.to_string();
    let argv = [py.as_str(), p(&script), &web_ip, "7000"];
    let reference = lab.run_ok(lab.exec(Ns::Remote, &argv));
    let expected = format!(
        "peer ('{}', 7000)\nsock {}\nsock port nonzero True\nreply b'E:hi\\n'\n",
        lab.net.web_ip, lab.net.remote_web_ip
    );
    assert_eq!(reference.out(), expected, "{}", reference.dump());
    for mode in MODES {
        let out = lab.run_ok(lab.rscq(mode, &argv));
        assert_eq!(
            out.out(),
            expected,
            "({}) under rscq\n{}",
            mode_name(mode),
            out.dump()
        );
    }
}

const NBCONNECT_PY: &str = r#"
import errno, select, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
def name(e):
    return errno.errorcode.get(e, str(e)) if e else "0"
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setblocking(False)
rc = s.connect_ex((host, port))
print("connect", name(rc))
if rc == errno.EINPROGRESS:
    ep = select.epoll()
    ep.register(s.fileno(), select.EPOLLOUT)
    events = ep.poll(30)
    mask = 0
    for _, m in events:
        mask |= m
    bits = [b for b in ("EPOLLIN", "EPOLLOUT", "EPOLLERR", "EPOLLHUP", "EPOLLRDHUP")
            if mask & getattr(select, b)]
    print("epoll", "|".join(bits) if bits else "timeout")
err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
print("so_error", name(err))
if err == 0 and rc in (0, errno.EINPROGRESS):
    s.setblocking(True)
    s.settimeout(30)
    s.sendall(b"ping\n")
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print("reply", data)
"#;

/// 5 + 11. A non-blocking connect watched with epoll gives what Linux
///    gives natively in remote: refused for a closed port, connected (and
///    data flows) for an open one.
#[test]
fn nonblocking_connect_epoll() {
    let Some(lab) = Lab::new("nonblocking_connect_epoll", &[]) else {
        return;
    };
    let _echo = lab.web_echo(7000, "E");
    let script = lab.write("nbconnect.py", NBCONNECT_PY.as_bytes());
    let py = python();
    let web_ip = lab.net.web_ip.to_string();
    for (port, expect_refused) in [("7001", true), ("7000", false)] {
        let argv = [py.as_str(), p(&script), &web_ip, port];
        let reference = lab.run_ok(lab.exec(Ns::Remote, &argv));
        let text = reference.out();
        if expect_refused {
            assert!(
                text.contains("ECONNREFUSED"),
                "native run not refused?\n{}",
                reference.dump()
            );
        } else {
            assert!(
                text.contains("so_error 0\nreply b'E:ping\\n'\n"),
                "native run did not connect?\n{}",
                reference.dump()
            );
        }
        for mode in MODES {
            let out = lab.run_ok(lab.rscq(mode, &argv));
            assert_eq!(
                out.out(),
                text,
                "({}) port {port}: rscq differs from the native run in remote\n{}",
                mode_name(mode),
                out.dump()
            );
        }
    }
}

/// 6 + 11. A name only the server's /etc/hosts knows resolves under rscq
///    (getent, curl) and not without it.
#[test]
fn name_only_remote_knows() {
    let Some(mut lab) = Lab::prepare("name_only_remote_knows", &["curl", "getent", "mount"]) else {
        return;
    };
    let hosts = lab.write(
        "server-hosts",
        format!(
            "127.0.0.1 localhost\n{} webhost.rscq.test\n",
            lab.net.web_ip
        )
        .as_bytes(),
    );
    lab.start_server(Some(&hosts));
    let (dir, _) = web_files(&lab);
    let small = pattern(1024 * 1024 + 3, 0xd15);
    fs::write(dir.join("file"), &small).expect("write");
    let _web = lab.web_http(&dir, HTTP_PORT);

    // Reference: getent in remote with the same private /etc/hosts.
    let reference = lab.run_ok(lab.exec(
        Ns::Remote,
        &[
            "unshare",
            "-m",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
            p(&hosts),
            "getent",
            "hosts",
            "webhost.rscq.test",
        ],
    ));
    assert_eq!(
        reference.out().split_whitespace().collect::<Vec<_>>(),
        [lab.net.web_ip.to_string().as_str(), "webhost.rscq.test"],
        "{}",
        reference.dump()
    );

    // Without rscq the name is unknown.
    let out = run(lab.exec(Ns::Local, &["getent", "hosts", "webhost.rscq.test"])).failure();
    assert_eq!(out.code(), 2, "getent: not found\n{}", out.dump());
    assert_eq!(out.out(), "");
    let url = format!("http://webhost.rscq.test:{HTTP_PORT}/file");
    let out = run(lab.exec(Ns::Local, &["curl", "-sS", "--max-time", "20", &url])).failure();
    assert_eq!(out.code(), 6, "curl: could not resolve\n{}", out.dump());

    let outdir = lab.mkdir("downloads");
    for mode in MODES {
        let m = mode_name(mode);
        let out = lab.run_ok(lab.rscq(mode, &["getent", "hosts", "webhost.rscq.test"]));
        assert_eq!(out.out(), reference.out(), "getent ({m})\n{}", out.dump());

        let file = outdir.join(format!("file{}", m.replace(' ', "")));
        let out = lab.run_ok(lab.rscq(
            mode,
            &[
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                "50",
                "-o",
                p(&file),
                &url,
            ],
        ));
        assert_download(&out, &file, &sha256(&small), &format!("curl by name ({m})"));
    }
}

/// 7 + 11. Static busybox: `wget` downloads the 20 MiB file and `nc` talks
///    to an echo server.
#[test]
fn busybox_static_wget_nc() {
    let Some(lab) = Lab::new("busybox_static_wget_nc", &["busybox"]) else {
        return;
    };
    let (dir, want) = web_files(&lab);
    let _web = lab.web_http(&dir, HTTP_PORT);
    let _echo = lab.web_echo(7000, "-");
    let url = format!("http://{}:{HTTP_PORT}/big.bin", lab.net.web_ip);
    let mut input = b"hello over busybox nc\nsecond line\n".to_vec();
    input.extend_from_slice(&pattern(256 * 1024, 0xbb));
    input.extend_from_slice(b"\nlast line\n");
    let input_file = lab.write("nc-input", &input);
    let outdir = lab.mkdir("downloads");
    let web_ip = lab.net.web_ip.to_string();
    for mode in MODES {
        let m = mode_name(mode);
        let file = outdir.join(format!("bb{}.bin", m.replace(' ', "")));
        let out = lab.run_ok(lab.rscq(mode, &["busybox", "wget", "-q", "-O", p(&file), &url]));
        assert_download(&out, &file, &want, &format!("busybox wget ({m})"));

        // nc half-closes at the end of its input; the server echoes
        // everything and closes, which ends nc.
        let out = Running::spawn_stdin(
            lab.rscq(mode, &["busybox", "nc", &web_ip, "7000"]),
            Some(&input_file),
        )
        .finish(crate::harness::TIMEOUT)
        .success();
        assert_eq!(
            out.stdout.len(),
            input.len(),
            "busybox nc ({m}): echo length\n{}",
            out.dump()
        );
        assert!(
            out.stdout == input,
            "busybox nc ({m}): echo differs\n{}",
            out.dump()
        );
    }
}

const ASYNCIO_PY: &str = r#"
import asyncio, os, sys
host, pa, pb, rounds, burst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

async def main():
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    pipe_in = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(pipe_in), os.fdopen(r, "rb", 0))
    pipe_out, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(w, "wb", 0))
    ra, wa = await asyncio.open_connection(host, pa)
    rb, wb = await asyncio.open_connection(host, pb)
    sends = [
        lambda i: wa.write(f"a{i}\n".encode()),
        lambda i: wb.write(f"b{i}\n".encode()),
        lambda i: pipe_out.write(f"p{i}\n".encode()),
    ]
    for i in range(rounds):
        # Rotate the order, so each source is sometimes first.
        for k in range(3):
            sends[(i + k) % 3](i)
        await wa.drain()
        await wb.drain()
        la, lb, lp = await asyncio.gather(ra.readline(), rb.readline(), pipe_in.readline())
        print(i, la.decode().strip(), lb.decode().strip(), "pipe:" + lp.decode().strip())
    # A burst: everything written before anything is read.
    for i in range(burst):
        for k in range(3):
            sends[k](1000 + i)
    await wa.drain()
    await wb.drain()
    async def lines(reader, n):
        return [(await reader.readline()).decode().strip() for _ in range(n)]
    la, lb, lp = await asyncio.gather(lines(ra, burst), lines(rb, burst), lines(pipe_in, burst))
    print("burst A", la == [f"A:a{1000 + i}" for i in range(burst)])
    print("burst B", lb == [f"B:b{1000 + i}" for i in range(burst)])
    print("burst pipe", lp == [f"p{1000 + i}" for i in range(burst)])
    wa.write_eof()
    wb.write_eof()
    pipe_out.close()
    rest = await asyncio.gather(ra.read(), rb.read(), pipe_in.read())
    print("eof", [x.decode() for x in rest])
    wa.close()
    wb.close()
    await wa.wait_closed()
    await wb.wait_closed()
    print("done")

asyncio.run(main())
"#;

/// 8 + 11. One asyncio event loop serves a local pipe and two remote
///    connections at once; the transcript is the expected one.
#[test]
fn asyncio_pipe_and_two_connections() {
    let Some(lab) = Lab::new("asyncio_pipe_and_two_connections", &[]) else {
        return;
    };
    let _a = lab.web_echo(7001, "A");
    let _b = lab.web_echo(7002, "B");
    let script = lab.write("asyncio_mix.py", ASYNCIO_PY.as_bytes());
    let (rounds, burst) = (20, 50);
    let mut expected = String::new();
    for i in 0..rounds {
        expected.push_str(&format!("{i} A:a{i} B:b{i} pipe:p{i}\n"));
    }
    expected.push_str("burst A True\nburst B True\nburst pipe True\neof ['', '', '']\ndone\n");
    let py = python();
    let web_ip = lab.net.web_ip.to_string();
    let (r, b) = (rounds.to_string(), burst.to_string());
    let argv = [py.as_str(), p(&script), &web_ip, "7001", "7002", &r, &b];
    let reference = lab.run_ok(lab.exec(Ns::Remote, &argv));
    assert_eq!(
        reference.out(),
        expected,
        "native run\n{}",
        reference.dump()
    );
    for mode in MODES {
        let out = lab.run_ok(lab.rscq(mode, &argv));
        assert_eq!(
            out.out(),
            expected,
            "({}) under rscq\n{}",
            mode_name(mode),
            out.dump()
        );
    }
}

/// `HOST PORT`: one connection at a time, read to its end; prints how
/// many bytes came and their sha256.
const SINK_PY: &str = r#"
import hashlib, socket, sys
ls = socket.socket()
ls.bind((sys.argv[1], int(sys.argv[2])))
ls.listen(4)
print("READY", flush=True)
while True:
    c, _ = ls.accept()
    h, n = hashlib.sha256(), 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        h.update(d)
        n += len(d)
    c.close()
    print("got", n, h.hexdigest(), flush=True)
"#;

/// `HOST PORT SIZE`: writes SIZE bytes and exits at once, leaving them to
/// the kernel (and, under rscq, to rscq) to deliver.
const WRITE_AND_EXIT_PY: &str = r#"
import os, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
size = int(sys.argv[3])
s.sendall(bytes(i * 31 % 251 for i in range(size)))
os._exit(0)
"#;

/// A program that writes a few MB to web and exits right away: web still
/// gets every byte, under rscq as natively.
#[test]
fn bytes_written_before_exit_reach_web() {
    let Some(lab) = Lab::new("bytes_written_before_exit_reach_web", &[]) else {
        return;
    };
    let py = python();
    let web_ip = lab.net.web_ip.to_string();
    let sink = lab.write("sink.py", SINK_PY.as_bytes());
    let mut srv = Running::spawn(lab.exec(Ns::Web, &[py.as_str(), p(&sink), &web_ip, "7300"]));
    srv.wait_stdout("READY", std::time::Duration::from_secs(30));
    let size = 6 * 1024 * 1024 + 11;
    let data: Vec<u8> = (0..size)
        .map(|i| u8::try_from(i * 31 % 251).expect("fits"))
        .collect();
    let want = format!("got {size} {}\n", sha256(&data));
    let writer = lab.write("write_and_exit.py", WRITE_AND_EXIT_PY.as_bytes());
    let size_s = size.to_string();
    let argv = [py.as_str(), p(&writer), &web_ip, "7300", &size_s];
    let runs: [(&str, Option<&[&str]>); 3] = [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ];
    let mut expected = String::from("READY\n");
    for (what, mode) in runs {
        let c = match mode {
            None => lab.exec(Ns::Remote, &argv),
            Some(mode) => lab.rscq(mode, &argv),
        };
        let out = lab.run_ok(c);
        expected.push_str(&want);
        let deadline = std::time::Instant::now() + crate::harness::TIMEOUT;
        while srv.stdout_now().len() < expected.len() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(
            srv.stdout_now(),
            expected,
            "({what}) what web received\n{}\n--- sink ---\n{}\n--- rscq-server ---\n{}",
            out.dump(),
            srv.snapshot().dump(),
            lab.server_log()
        );
    }
}
