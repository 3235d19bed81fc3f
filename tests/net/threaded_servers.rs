//! Multithreaded servers under rscq --net: a Go net/http server (many OS
//! threads, edge-triggered epoll, non-blocking accept4) and a C server whose
//! threads all block in accept() on one listener. Clients in `web` fetch
//! from remote's addresses in parallel; each server runs directly in
//! `remote` and under rscq in every mode, with the same results.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::harness::{
    MODES, Output, Running, TIMEOUT, compile_c, p, pattern, run, sha256, sha256_file,
};
use crate::netns::{Lab, Ns};

/// How many clients fetch at once.
const PARALLEL: usize = 8;
const FILE_SIZE: usize = 2 * 1024 * 1024;

/// The native run and then one run per mode: (label, `None` for native).
fn runs() -> [(&'static str, Option<&'static [&'static str]>); 3] {
    [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ]
}

/// Writes `count` files `f0`, `f1`, ... of distinct pseudo-random bytes
/// into a new lab directory; returns it and the files' sha256s.
fn served_files(lab: &Lab, count: usize) -> (PathBuf, Vec<String>) {
    let dir = lab.mkdir("served");
    let sums = (0..count)
        .map(|i| {
            let data = pattern(FILE_SIZE + i, 0x7e + u64::try_from(i).expect("fits"));
            fs::write(dir.join(format!("f{i}")), &data).expect("write");
            sha256(&data)
        })
        .collect();
    (dir, sums)
}

/// `curl URL -o FILE` for every pair at once from `web`; each must succeed.
#[track_caller]
fn fetch_in_parallel(lab: &Lab, fetches: &[(String, PathBuf)]) -> Vec<Output> {
    let running: Vec<Running> = fetches
        .iter()
        .map(|(url, file)| {
            Running::spawn(lab.exec(
                Ns::Web,
                &[
                    "curl",
                    "-g",
                    "-sS",
                    "--fail",
                    "--max-time",
                    "100",
                    "-o",
                    p(file),
                    url.as_str(),
                ],
            ))
        })
        .collect();
    running.into_iter().map(|r| r.finish(TIMEOUT * 2)).collect()
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `DIR GATE ADDR...`: serves DIR under `/files/` and the client's address
/// under `/whoami` on every ADDR. A file request waits until GATE file
/// requests of its batch have arrived, so a server that took connections
/// one at a time would never answer (the clients' timeout fails the test).
const SERVE_GO: &str = r#"
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	dir := os.Args[1]
	gate, _ := strconv.Atoi(os.Args[2])
	var mu sync.Mutex
	arrived := 0
	files := http.StripPrefix("/files/", http.FileServer(http.Dir(dir)))
	mux := http.NewServeMux()
	mux.HandleFunc("/files/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived++
		batchEnd := (arrived + gate - 1) / gate * gate
		deadline := time.Now().Add(60 * time.Second)
		for arrived < batchEnd && time.Now().Before(deadline) {
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
		}
		complete := arrived >= batchEnd
		mu.Unlock()
		if !complete {
			http.Error(w, "the batch never completed", http.StatusServiceUnavailable)
			return
		}
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintln(w, host)
	})
	var wg sync.WaitGroup
	for _, addr := range os.Args[3:] {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("listen", err)
			os.Exit(1)
		}
		fmt.Println("listening", addr)
		wg.Add(1)
		go func(l net.Listener) {
			defer wg.Done()
			fmt.Println("serve", http.Serve(l, mux))
		}(l)
	}
	fmt.Println("READY")
	wg.Wait()
}
"#;

/// A Go net/http server under rscq in `local`, listening on remote's IPv4
/// address and on a dual-stack wildcard: eight parallel curl fetches from
/// web on each (the second batch half over IPv4, half over IPv6) get the
/// served bytes, and the server sees web's addresses. As directly in
/// remote.
#[test]
fn go_http_server_serves_parallel_clients() {
    let Some(lab) = Lab::new(
        "go_http_server_serves_parallel_clients",
        &["go", "file", "curl"],
    ) else {
        return;
    };
    let binary = crate::golang::build(&lab, "serve", SERVE_GO);
    let (dir, sums) = served_files(&lab, PARALLEL);
    let outdir = lab.mkdir("downloads");
    let (remote4, remote6) = (lab.net.remote_web_ip, lab.net.remote_web_ip6);
    let gate = PARALLEL.to_string();
    let mut reference: Option<String> = None;
    for (i, (what, mode)) in runs().into_iter().enumerate() {
        // Ports of their own per run: nothing of the run before is in the way.
        let offset = u16::try_from(i * 2).expect("fits");
        let (v4_port, dual_port) = (8600 + offset, 8601 + offset);
        let v4_listen = format!("{remote4}:{v4_port}");
        let dual_listen = format!(":{dual_port}");
        let argv = [
            p(&binary),
            p(&dir),
            gate.as_str(),
            v4_listen.as_str(),
            dual_listen.as_str(),
        ];
        let c = match mode {
            None => lab.exec(Ns::Remote, &argv),
            Some(mode) => lab.rscq(mode, &argv),
        };
        let mut srv = Running::spawn(c);
        srv.wait_stdout("READY", Duration::from_secs(30));
        let context = |srv: &Running| {
            format!(
                "({what})\n--- server ---\n{}\n--- rscq-server ---\n{}",
                srv.snapshot().dump(),
                lab.server_log()
            )
        };

        for batch in 0..2 {
            let fetches: Vec<(String, PathBuf)> = (0..PARALLEL)
                .map(|f| {
                    let (ip, port): (IpAddr, u16) = match (batch, f % 2) {
                        (0, _) => (remote4.into(), v4_port),
                        (_, 0) => (remote4.into(), dual_port),
                        _ => (remote6.into(), dual_port),
                    };
                    let url = format!("http://{}:{port}/files/f{f}", url_host(ip));
                    let file = outdir.join(format!("{what}-{batch}-{f}"));
                    (url, file)
                })
                .collect();
            let outs = fetch_in_parallel(&lab, &fetches);
            for (((url, file), out), want) in fetches.iter().zip(&outs).zip(&sums) {
                assert!(
                    out.status.success(),
                    "{url}\n{}\n{}",
                    out.dump(),
                    context(&srv)
                );
                assert_eq!(
                    &sha256_file(file),
                    want,
                    "{url}: wrong bytes\n{}",
                    context(&srv)
                );
            }
        }
        let mut seen = Vec::new();
        for (ip, port) in [
            (IpAddr::from(remote4), v4_port),
            (remote4.into(), dual_port),
            (remote6.into(), dual_port),
        ] {
            let url = format!("http://{}:{port}/whoami", url_host(ip));
            let out = run(lab.exec(Ns::Web, &["curl", "-g", "-sS", "--max-time", "30", &url]));
            assert!(out.status.success(), "{}\n{}", out.dump(), context(&srv));
            seen.push(out.out());
        }
        assert_eq!(
            seen,
            [
                format!("{}\n", lab.net.web_ip),
                format!("{}\n", lab.net.web_ip),
                format!("{}\n", lab.net.web_ip6),
            ],
            "{}",
            context(&srv)
        );
        let ctx = context(&srv);
        // The run's own ports are normalised out of what the server printed.
        let printed = srv
            .snapshot()
            .out()
            .replace(&v4_listen, "V4")
            .replace(&dual_listen, "DUAL");
        drop(srv);
        match &reference {
            None => {
                assert_eq!(printed, "listening V4\nlistening DUAL\nREADY\n", "{ctx}");
                reference = Some(printed);
            }
            Some(native) => assert_eq!(&printed, native, "{ctx}"),
        }
    }
}

/// `ADDR PORT FILE THREADS`: THREADS threads block in accept() on one
/// listener; each serves one HTTP request with FILE once all of them have
/// accepted (a barrier), then main prints what each thread saw, in order
/// of the path requested.
const ACCEPT_THREADS_C: &str = r#"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listener;
static pthread_barrier_t all_accepted;
static char *body;
static long body_len;

struct result {
    char peer[INET6_ADDRSTRLEN];
    char path[64];
    long sent;
};

static int cmp(const void *a, const void *b) {
    return strcmp(((const struct result *)a)->path, ((const struct result *)b)->path);
}

static void *serve(void *arg) {
    struct result *r = arg;
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    int c = accept(listener, (struct sockaddr *)&peer, &len);
    if (c < 0) {
        snprintf(r->peer, sizeof r->peer, "accept:%s", strerror(errno));
        pthread_barrier_wait(&all_accepted);
        return NULL;
    }
    inet_ntop(AF_INET, &peer.sin_addr, r->peer, sizeof r->peer);
    pthread_barrier_wait(&all_accepted);
    char req[2048];
    size_t n = 0;
    while (n < sizeof req - 1) {
        ssize_t got = read(c, req + n, sizeof req - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[n] = 0;
    sscanf(req, "GET %63s", r->path);
    char head[128];
    int h = snprintf(head, sizeof head,
                     "HTTP/1.0 200 OK\r\nContent-Length: %ld\r\nConnection: close\r\n\r\n", body_len);
    if (write(c, head, h) == h) {
        while (r->sent < body_len) {
            ssize_t w = write(c, body + r->sent, body_len - r->sent);
            if (w <= 0)
                break;
            r->sent += w;
        }
    }
    close(c);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = atoi(argv[4]);
    FILE *f = fopen(argv[3], "rb");
    fseek(f, 0, SEEK_END);
    body_len = ftell(f);
    rewind(f);
    body = malloc(body_len);
    if (fread(body, 1, body_len, f) != (size_t)body_len)
        return 1;
    fclose(f);
    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    if (bind(listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(listener, 16) != 0) {
        perror("bind/listen");
        return 1;
    }
    pthread_barrier_init(&all_accepted, NULL, threads);
    struct result *results = calloc(threads, sizeof *results);
    pthread_t *ids = calloc(threads, sizeof *ids);
    for (int i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, serve, &results[i]);
    printf("READY\n");
    fflush(stdout);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    qsort(results, threads, sizeof *results, cmp);
    for (int i = 0; i < threads; i++)
        printf("%s from %s sent %ld\n", results[i].path, results[i].peer, results[i].sent);
    return 0;
}
"#;

/// A C server whose threads all block in accept() on one listener on
/// remote's address: each thread takes one of the parallel clients from
/// web, and none answers before all have accepted. Under rscq as directly
/// in remote.
#[test]
fn threads_blocked_in_accept_share_a_listener() {
    let Some(lab) = Lab::new(
        "threads_blocked_in_accept_share_a_listener",
        &["gcc", "curl"],
    ) else {
        return;
    };
    let threads = 4;
    let server = compile_c(&lab.dir, "accept_threads", ACCEPT_THREADS_C, &["-pthread"]);
    let data = pattern(FILE_SIZE, 0xacc);
    let file = lab.write("body.bin", &data);
    let want_sum = sha256(&data);
    let outdir = lab.mkdir("downloads");
    let remote4 = lab.net.remote_web_ip.to_string();
    let threads_s = threads.to_string();
    let expected: String = (0..threads)
        .map(|t| format!("/t{t} from {} sent {}\n", lab.net.web_ip, data.len()))
        .collect();
    for (i, (what, mode)) in runs().into_iter().enumerate() {
        let port = (8700 + i).to_string();
        let argv = [
            p(&server),
            remote4.as_str(),
            port.as_str(),
            p(&file),
            threads_s.as_str(),
        ];
        let c = match mode {
            None => lab.exec(Ns::Remote, &argv),
            Some(mode) => lab.rscq(mode, &argv),
        };
        let mut srv = Running::spawn(c);
        srv.wait_stdout("READY", Duration::from_secs(30));
        let fetches: Vec<(String, PathBuf)> = (0..threads)
            .map(|t| {
                (
                    format!("http://{remote4}:{port}/t{t}"),
                    outdir.join(format!("{what}-{t}")),
                )
            })
            .collect();
        let outs = fetch_in_parallel(&lab, &fetches);
        let out = srv.finish(TIMEOUT);
        let context = format!(
            "({what})\n--- server ---\n{}\n--- rscq-server ---\n{}",
            out.dump(),
            lab.server_log()
        );
        for ((url, saved), fetched) in fetches.iter().zip(&outs) {
            assert!(
                fetched.status.success(),
                "{url}\n{}\n{context}",
                fetched.dump()
            );
            assert_eq!(
                sha256_file(saved),
                want_sum,
                "{url}: wrong bytes\n{context}"
            );
        }
        assert!(out.status.success(), "{context}");
        assert_eq!(out.out(), format!("READY\n{expected}"), "{context}");
    }
}
