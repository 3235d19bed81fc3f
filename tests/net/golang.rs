//! A static Go program (pure-Go resolver, raw syscalls from many threads,
//! edge-triggered epoll) resolves a name only the server's /etc/hosts knows
//! and fetches from web over several connections at once, under rscq as
//! directly in `remote`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::{MODES, RSCQ, cmd, p, pattern, run, sha256};
use crate::netns::{Lab, Ns};

const FETCH_GO: &str = r#"
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
)

func main() {
	name, url := os.Args[1], os.Args[2]
	addrs, err := net.LookupHost(name)
	fmt.Println("lookup", addrs, err)
	results := make([]string, 4)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := http.Get(url)
			if err != nil {
				results[i] = "error " + err.Error()
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			results[i] = fmt.Sprintf("%d %d %x %v", resp.StatusCode, len(body), sha256.Sum256(body), err)
		}(i)
	}
	wg.Wait()
	for i, r := range results {
		fmt.Println("fetch", i, r)
	}
}
"#;

/// Builds the Go program `source` as `name` in the lab's directory,
/// statically with the pure-Go resolver; the Go build cache lives next to
/// rscq's binaries, so a rebuild is quick.
pub fn build(lab: &Lab, name: &str, source: &str) -> PathBuf {
    let target = Path::new(RSCQ).parent().expect("target dir");
    let source = lab.write(&format!("{name}.go"), source.as_bytes());
    let binary = lab.dir.join(name);
    let mut c = cmd(&[
        "go",
        "build",
        "-tags",
        "netgo,osusergo",
        "-ldflags",
        "-extldflags=-static",
        "-o",
        p(&binary),
        p(&source),
    ]);
    c.env("CGO_ENABLED", "0")
        .env("GOCACHE", target.join("gocache"))
        .env("GOPATH", target.join("gopath"))
        .env("GO111MODULE", "off")
        .env("HOME", &lab.dir)
        .current_dir(&lab.dir);
    let out = run(c);
    assert!(out.status.success(), "go build\n{}", out.dump());
    let file = run(cmd(&["file", p(&binary)])).success();
    assert!(file.out().contains("statically linked"), "{}", file.dump());
    binary
}

#[test]
fn go_program_resolves_and_fetches() {
    let Some(mut lab) = Lab::prepare("go_program_resolves_and_fetches", &["go", "mount", "file"])
    else {
        return;
    };
    let hosts = lab.write(
        "server-hosts",
        format!("127.0.0.1 localhost\n{} gohost.rscq.test\n", lab.net.web_ip).as_bytes(),
    );
    lab.start_server(Some(&hosts));
    let dir = lab.mkdir("www");
    let data = pattern(3 * 1024 * 1024 + 5, 0x90);
    fs::write(dir.join("data"), &data).expect("write");
    let _web = lab.web_http(&dir, 8000);
    let binary = build(&lab, "fetch", FETCH_GO);
    let url = "http://gohost.rscq.test:8000/data";
    let argv = [p(&binary), "gohost.rscq.test", url];

    let mut native = vec![
        "unshare",
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
        p(&hosts),
    ];
    native.extend_from_slice(&argv);
    let reference = lab.run_ok(lab.exec(Ns::Remote, &native));
    let want = format!("200 {} {} <nil>", data.len(), sha256(&data));
    assert_eq!(
        reference.out().matches(&want).count(),
        4,
        "the native run fetches the file four times\n{}",
        reference.dump()
    );
    assert!(
        reference
            .out()
            .contains(&format!("lookup [{}] <nil>", lab.net.web_ip)),
        "{}",
        reference.dump()
    );

    for mode in MODES {
        let out = lab.run_ok(lab.rscq(mode, &argv));
        assert_eq!(
            out.out(),
            reference.out(),
            "({mode:?}) Go program under rscq\n{}",
            out.dump()
        );
    }
}
