//! Stalls and path changes under `--net`: a server paused (SIGSTOP) for
//! 15 s, well inside the default idle timeout, and a client whose address
//! changes mid-transfer, end nothing. Downloads arrive byte-identical and a
//! remote listener still accepts.

use std::fs;
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{MODES, Running, p, pattern, python, sha256, sha256_file};
use crate::netns::{Lab, Ns};

const PAUSE: Duration = Duration::from_secs(15);
const BIG: usize = 20 << 20;

/// Accepts one connection on the remote, answers its line in upper case.
const ACCEPTOR: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
line = c.recv(100)
c.sendall(line.upper())
c.close()
print("answered", flush=True)
"#;

const CONNECTOR: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
c.sendall(b"ping\n")
print(c.recv(100).decode(), end="")
"#;

/// A rate-limited download of 20 MB through the remote, in both modes.
fn start_downloads(lab: &Lab, url: &str, outdir: &std::path::Path) -> Vec<Running> {
    MODES
        .iter()
        .enumerate()
        .map(|(i, mode)| {
            let out = outdir.join(format!("big{i}.bin"));
            Running::spawn(lab.rscq(
                mode,
                &[
                    "curl",
                    "-sS",
                    "--fail",
                    "--limit-rate",
                    "4M",
                    "--max-time",
                    "120",
                    "-o",
                    p(&out),
                    url,
                ],
            ))
        })
        .collect()
}

/// Each download of [`start_downloads`] ended well with `expected`'s bytes.
fn downloads_arrived(
    lab: &Lab,
    downloads: Vec<Running>,
    outdir: &std::path::Path,
    expected: &[u8],
) {
    for (i, d) in downloads.into_iter().enumerate() {
        let out = d.finish(Duration::from_secs(120));
        assert!(
            out.status.success(),
            "download {i}\n{}\n--- server ---\n{}",
            out.dump(),
            lab.server_log()
        );
        assert_eq!(
            sha256_file(&outdir.join(format!("big{i}.bin"))),
            sha256(expected),
            "download {i} differs"
        );
    }
}

#[test]
fn paused_server_during_download_and_idle_accept() {
    let Some(lab) = Lab::new("paused_server_during_download_and_idle_accept", &["curl"]) else {
        return;
    };
    let served = lab.mkdir("served");
    let big = pattern(BIG, 0x57a11);
    fs::write(served.join("big.bin"), &big).expect("write");
    let _web = lab.web_http(&served, 8080);
    let outdir = lab.mkdir("downloads");
    let url = format!("http://{}:8080/big.bin", lab.net.web_ip);
    let py = python();
    let acceptor = lab.write("acceptor.py", ACCEPTOR.as_bytes());
    let connector = lab.write("connector.py", CONNECTOR.as_bytes());

    let mut acceptors: Vec<(u16, Running)> = MODES
        .iter()
        .zip([9100u16, 9101])
        .map(|(mode, port)| {
            let mut r =
                Running::spawn(lab.rscq(mode, &[py.as_str(), p(&acceptor), &port.to_string()]));
            r.wait_stdout("listening", Duration::from_secs(30));
            (port, r)
        })
        .collect();
    let downloads = start_downloads(&lab, &url, &outdir);
    thread::sleep(Duration::from_millis(1500));

    lab.signal_server(Signal::SIGSTOP);
    thread::sleep(PAUSE);
    lab.signal_server(Signal::SIGCONT);

    downloads_arrived(&lab, downloads, &outdir, &big);
    for (port, acceptor) in acceptors.drain(..) {
        let answer = lab.run_ok(lab.exec(
            Ns::Web,
            &[
                py.as_str(),
                p(&connector),
                &lab.net.remote_web_ip.to_string(),
                &port.to_string(),
            ],
        ));
        assert_eq!(answer.out(), "PING\n", "port {port}\n{}", answer.dump());
        let out = acceptor.finish(Duration::from_secs(30));
        assert!(
            out.status.success() && out.out() == "listening\nanswered\n",
            "port {port}\n{}",
            out.dump()
        );
    }
}

/// The client's address changes mid-download (as when a laptop moves from
/// Wi-Fi to wired): QUIC moves the connection to the new path.
#[test]
fn client_address_change_during_download() {
    let Some(lab) = Lab::new("client_address_change_during_download", &["curl"]) else {
        return;
    };
    let served = lab.mkdir("served");
    let big = pattern(BIG, 0x3a11);
    fs::write(served.join("big.bin"), &big).expect("write");
    let _web = lab.web_http(&served, 8080);
    let outdir = lab.mkdir("downloads");
    let url = format!("http://{}:8080/big.bin", lab.net.web_ip);
    let downloads = start_downloads(&lab, &url, &outdir);
    thread::sleep(Duration::from_millis(1500));

    // A new address on local's link, then the old one removed (the new one
    // is promoted, so the link's route stays): from here on every packet
    // of the client leaves from the new address.
    let [a, b, c, _] = lab.net.local_ip.octets();
    let moved = format!("{a}.{b}.{c}.3/24");
    let local = lab.net.name(Ns::Local).to_owned();
    for argv in [
        vec![
            "ip",
            "netns",
            "exec",
            &local,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/conf/to-remote/promote_secondaries",
        ],
        vec![
            "ip",
            "-n",
            &local,
            "addr",
            "add",
            &moved,
            "dev",
            "to-remote",
        ],
    ] {
        lab.run_ok(crate::harness::cmd(&argv));
    }
    let old = format!("{}/24", lab.net.local_ip);
    lab.run_ok(crate::harness::cmd(&[
        "ip",
        "-n",
        &local,
        "addr",
        "del",
        &old,
        "dev",
        "to-remote",
    ]));

    downloads_arrived(&lab, downloads, &outdir, &big);
}
