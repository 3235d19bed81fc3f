#!/usr/bin/env bash
# Bulk-transfer throughput of rscq's QUIC link against plain TCP on the same link.
#
#   sudo benches/quicspeed.sh [--rtts "lo 0 20 100"] [--mb 50] [--reps 3] [--no-pure]
#                             [--rscq-dir target/release] [--tag LABEL]
#
# For each site (`lo`: one namespace, loopback, no delay line; a number: two namespaces
# joined by netem/link.sh at that RTT in ms, no rate cap) it starts rscq-server and
# `python3 -m http.server` in the server's namespace, then runs in the client's namespace,
# REPS times each:
#   tcp       curl of the file straight from the web server (plain TCP, the reference)
#   net       rscq --net -- curl of the same URL (the TCP connection is the server's;
#             the bytes cross the link inside QUIC)
#   cat       rscq --mount /r=/ -- cat /r/FILE            (default: bulk read-ahead on)
#   cat-pure  rscq --pure --mount /r=/ -- cat /r/FILE     (stop and wait per read)
#   true      rscq --mount /r=/ -- true                   (set-up cost, subtracted below)
# Each row prints the median MB/s (10^6 bytes/s) over the whole command, the median MB/s
# once rscq's set-up (the `true` row's median) is subtracted, and the CPU seconds each
# process spent per run: the client side (rscq and its program, /usr/bin/time), rscq-server
# and the delay line (utime+stime from /proc/PID/stat before and after; a process that uses
# about as many CPU seconds as the run took wall seconds is CPU-bound), and the UDP datagrams
# each namespace's kernel (client/server) dropped because a socket's receive buffer was full (each one is
# a loss to QUIC's congestion control).
# Binaries come from --rscq-dir (default target/release: build with
# `cargo build --release --features delayline --bins`). Needs root, iproute2, curl, python3.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rtts="lo 0 20 100" mb=50 reps=3 pure=1 bin_dir=$repo/target/release tag=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --rtts) rtts=$2; shift 2 ;;
    --mb) mb=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --no-pure) pure=0; shift ;;
    --rscq-dir) bin_dir=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "quicspeed.sh: needs root" >&2; exit 1; }
rscq=$bin_dir/rscq server=$bin_dir/rscq-server
export RSCQ_DELAYLINE=$bin_dir/rscq-delayline
for b in "$rscq" "$server" "$RSCQ_DELAYLINE"; do
    [[ -x $b ]] || { echo "quicspeed.sh: no $b (cargo build --release --features delayline --bins)" >&2; exit 1; }
done
# pyenv's shim is a bash script that execs several times: take the interpreter itself.
python=$(python3 -c 'import sys; print(sys.executable)')
hz=$(getconf CLK_TCK)

lab=$(mktemp -d /tmp/rscq-quicspeed.XXXXXX)
ns_a="" ns_b="" link_up=0 server_pid="" http_pid=""
cleanup() {
    [[ -z $http_pid ]] || kill "$http_pid" 2>/dev/null || true
    [[ -z $server_pid ]] || kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    if [[ $link_up == 1 ]]; then
        "$repo/netem/link.sh" down "$ns_a" "$ns_b" || true
    elif [[ -n $ns_a ]]; then
        ip netns del "$ns_a" 2>/dev/null || true
    fi
    ns_a="" ns_b="" link_up=0 server_pid="" http_pid=""
}
trap 'cleanup; rm -rf "$lab"' EXIT

mkdir -p "$lab/root" "$lab/home"
head -c $((mb * 1000000)) /dev/urandom >"$lab/root/big.bin"
bytes=$(stat -c %s "$lab/root/big.bin")
"$server" --gen-cert "$lab/server" >/dev/null
fp=$("$rscq" keygen --dir "$lab/client" | tail -1)
echo "$fp" >"$lab/authorized"

# CPU seconds (utime+stime) of PID so far, or 0 if it is gone.
cpu_of() {
    local f
    f=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    f=${f##*) }
    # shellcheck disable=SC2086
    set -- $f
    awk -v u="${12}" -v s="${13}" -v hz="$hz" 'BEGIN { printf "%.2f", (u + s) / hz }'
}

# UDP datagrams the kernel dropped for want of socket receive buffer in namespace $1 so far
# (RcvbufErrors of /proc/net/snmp, which is per namespace).
rcvbuf_drops() {
    ip netns exec "$1" awk '$1 == "Udp:" { if (h) { print $6; exit } h = 1 }' /proc/net/snmp
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run NAME CMD...: one timed run in the client namespace; appends
# "NAME wall client_cpu server_cpu line_cpu" to $lab/runs.
run() {
    local name=$1
    shift
    local s0 l0 t0 t1 s1 l1 cpu d0 d1 e0 e1
    d0=$(rcvbuf_drops "$ns_a") e0=$([[ $ns_b == "$ns_a" ]] && echo 0 || rcvbuf_drops "$ns_b")
    s0=$(cpu_of "$server_pid")
    l0=$([[ -n $line_pid ]] && cpu_of "$line_pid" || echo 0)
    t0=$(date +%s%N)
    ip netns exec "$ns_a" /usr/bin/time -f '%U %S' -o "$lab/time" "$@" >/dev/null 2>"$lab/err" ||
        { echo "quicspeed.sh: $name failed:" >&2; cat "$lab/err" >&2; exit 1; }
    t1=$(date +%s%N)
    s1=$(cpu_of "$server_pid")
    l1=$([[ -n $line_pid ]] && cpu_of "$line_pid" || echo 0)
    d1=$(rcvbuf_drops "$ns_a") e1=$([[ $ns_b == "$ns_a" ]] && echo 0 || rcvbuf_drops "$ns_b")
    cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$lab/time")
    awk -v n="$name" -v w="$(((t1 - t0) / 1000))" -v c="$cpu" -v s0="$s0" -v s1="$s1" \
        -v l0="$l0" -v l1="$l1" -v d="$((d1 - d0))" -v e="$((e1 - e0))" \
        'BEGIN { printf "%s %.3f %s %.2f %.2f %d %d\n", n, w / 1e6, c, s1 - s0, l1 - l0, d, e }' >>"$lab/runs"
}

site() {
    local rtt=$1 listen
    ns_a=qs$$a ns_b=qs$$b line_pid=""
    if [[ $rtt == lo ]]; then
        ns_b=$ns_a
        ip netns add "$ns_a"
        ip -n "$ns_a" link set lo up
        listen=127.0.0.1
    else
        link_up=1
        "$repo/netem/link.sh" up "$ns_a" "$ns_b" --rtt "$rtt" >/dev/null
        # shellcheck disable=SC1090
        line_pid=$(source <("$repo/netem/link.sh" status "$ns_a" "$ns_b"); echo "${PID:-}")
        listen=10.77.0.2
    fi
    ip netns exec "$ns_b" "$server" --cert "$lab/server/cert.pem" --key "$lab/server/key.pem" \
        --listen "$listen:0" --root "$lab/root" --authorized-clients "$lab/authorized" \
        2>"$lab/server.log" &
    server_pid=$!
    local port=""
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$lab/server.log" | head -1)
        [[ -z $port ]] || break
        sleep 0.05
    done
    [[ -n $port ]] || { cat "$lab/server.log" >&2; exit 1; }
    ip netns exec "$ns_b" "$python" -m http.server 8080 --bind "$listen" \
        --directory "$lab/root" >/dev/null 2>&1 &
    http_pid=$!
    for _ in $(seq 100); do
        ip netns exec "$ns_a" curl -s -o /dev/null "http://$listen:8080/" && break
        sleep 0.05
    done
    local conn=(--remote "$listen:$port" --server-cert "$lab/server/cert.pem"
        --identity "$lab/client" --known-servers "$lab/known_servers")
    local url=http://$listen:8080/big.bin
    export HOME=$lab/home XDG_CONFIG_HOME=$lab/xdg
    : >"$lab/runs"
    for _ in $(seq "$reps"); do
        run tcp curl -sS -o /dev/null "$url"
        run net "$rscq" "${conn[@]}" --net -- curl -sS -o /dev/null "$url"
        run cat "$rscq" "${conn[@]}" --mount /r=/ -- cat /r/big.bin
        [[ $pure == 0 ]] || run cat-pure "$rscq" "${conn[@]}" --pure --mount /r=/ -- cat /r/big.bin
        run true "$rscq" "${conn[@]}" --mount /r=/ -- true
    done
    local setup
    setup=$(awk '$1 == "true" { print $2 }' "$lab/runs" | median)
    for name in tcp net cat cat-pure; do
        grep -q "^$name " "$lab/runs" || continue
        local wall cpu scpu lcpu less drops
        wall=$(awk -v n="$name" '$1 == n { print $2 }' "$lab/runs" | median)
        cpu=$(awk -v n="$name" '$1 == n { print $3 }' "$lab/runs" | median)
        scpu=$(awk -v n="$name" '$1 == n { print $4 }' "$lab/runs" | median)
        lcpu=$(awk -v n="$name" '$1 == n { print $5 }' "$lab/runs" | median)
        drops=$(awk -v n="$name" '$1 == n { print $6 }' "$lab/runs" | median)/$(awk -v n="$name" '$1 == n { print $7 }' "$lab/runs" | median)
        less=$setup
        [[ $name != tcp ]] || less=0
        awk -v tag="$tag" -v r="$rtt" -v n="$name" -v b="$bytes" -v w="$wall" -v s="$less" \
            -v c="$cpu" -v sc="$scpu" -v lc="$lcpu" -v d="$drops" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
            'BEGIN { printf "| %s | %s | %s | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f | %s | %s |\n",
                tag, r, n, b / w / 1e6, (w > s ? b / (w - s) / 1e6 : 0), w, c, sc, lc, d, load }'
    done
    echo "<!-- raw: $(tr '\n' ';' <"$lab/runs") setup=$setup -->"
    cleanup
}

echo "| build | RTT ms | what | MB/s whole cmd | MB/s less set-up | wall s | client CPU s | server CPU s | delay line CPU s | UDP rcvbuf drops client/server | load |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for rtt in $rtts; do
    site "$rtt"
done
