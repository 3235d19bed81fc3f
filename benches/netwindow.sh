#!/usr/bin/env bash
# Bulk TCP throughput through rscq's `--net` pump, both ways, against plain TCP on the same
# link: the measurement behind `--net-send-window`'s default.
#
#   sudo benches/netwindow.sh [--rtts "lo 20"] [--mb 50] [--reps 3] [--rscq-dir target/release]
#                             [--tag LABEL] [-- RSCQ_FLAGS...]
#
# For each site (`lo`: one namespace, loopback; a number: two namespaces joined by
# netem/link.sh at that RTT in ms, no rate cap) it starts rscq-server and a python peer in
# the server's namespace, then runs in the client's namespace, REPS times each:
#   up-tcp    python sends MB megabytes straight to the peer, which reads them all and
#             answers once it has (plain TCP, the reference)
#   up-net    the same under rscq --net RSCQ_FLAGS (through the pump's send window)
#   down-tcp  python reads MB megabytes the peer sends
#   down-net  the same under rscq --net RSCQ_FLAGS (through the read-ahead window)
# Each row prints the median MB/s (10^6 bytes/s) over the whole command and its wall time.
# Binaries come from --rscq-dir (default target/release; the delay line from
# `cargo build --release --features delayline --bins`). Needs root, iproute2, python3.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rtts="lo 20" mb=50 reps=3 bin_dir=$repo/target/release tag="" flags=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --rtts) rtts=$2; shift 2 ;;
    --mb) mb=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --rscq-dir) bin_dir=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --) shift; flags=("$@"); break ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "netwindow.sh: needs root" >&2; exit 1; }
rscq=$bin_dir/rscq server=$bin_dir/rscq-server
export RSCQ_DELAYLINE=${RSCQ_DELAYLINE:-$bin_dir/rscq-delayline}
for b in "$rscq" "$server"; do
    [[ -x $b ]] || { echo "netwindow.sh: no $b" >&2; exit 1; }
done
python=$(python3 -c 'import sys; print(sys.executable)')

lab=$(mktemp -d /tmp/rscq-netwindow.XXXXXX)
ns_a="" ns_b="" link_up=0 server_pid="" peer_pid=""
cleanup() {
    [[ -z $peer_pid ]] || kill "$peer_pid" 2>/dev/null || true
    [[ -z $server_pid ]] || kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    if [[ $link_up == 1 ]]; then
        "$repo/netem/link.sh" down "$ns_a" "$ns_b" || true
    elif [[ -n $ns_a ]]; then
        ip netns del "$ns_a" 2>/dev/null || true
    fi
    ns_a="" ns_b="" link_up=0 server_pid="" peer_pid=""
}
trap 'cleanup; rm -rf "$lab"' EXIT

cat >"$lab/peer.py" <<'EOF'
import socket, sys, threading
host, n = sys.argv[1], int(sys.argv[2])
block = bytes(range(256)) * 256
def sink(c):
    got = 0
    while got < n:
        b = c.recv(1 << 16)
        if not b:
            break
        got += len(b)
    c.sendall(b"%d\n" % got)
    c.close()
def source(c):
    left = n
    while left > 0:
        left -= c.send(block[: min(left, len(block))])
    c.close()
def serve(port, handler):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(8)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()
threading.Thread(target=serve, args=(9001, sink), daemon=True).start()
print("READY", flush=True)
serve(9002, source)
EOF
cat >"$lab/client.py" <<'EOF'
import socket, sys
what, host, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
block = bytes(range(256)) * 256
if what == "up":
    s = socket.create_connection((host, 9001))
    left = n
    while left > 0:
        s.sendall(block[: min(left, len(block))])
        left -= min(left, len(block))
    s.shutdown(socket.SHUT_WR)
    answer = s.makefile().readline().strip()
    assert answer == str(n), answer
else:
    s = socket.create_connection((host, 9002))
    got = 0
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        got += len(b)
    assert got == n, got
EOF
bytes=$((mb * 1000000))
"$server" --gen-cert "$lab/server" >/dev/null
fp=$("$rscq" keygen --dir "$lab/client" | tail -1)
echo "$fp" >"$lab/authorized"

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run NAME CMD...: one timed run in the client namespace; appends "NAME wall" to $lab/runs.
run() {
    local name=$1 t0 t1
    shift
    t0=$(date +%s%N)
    ip netns exec "$ns_a" "$@" >/dev/null 2>"$lab/err" ||
        { echo "netwindow.sh: $name failed:" >&2; cat "$lab/err" >&2; exit 1; }
    t1=$(date +%s%N)
    echo "$name $(((t1 - t0) / 1000))" >>"$lab/runs"
}

site() {
    local rtt=$1 listen
    ns_a=nw$$a ns_b=nw$$b
    if [[ $rtt == lo ]]; then
        ns_b=$ns_a
        ip netns add "$ns_a"
        ip -n "$ns_a" link set lo up
        listen=127.0.0.1
    else
        link_up=1
        "$repo/netem/link.sh" up "$ns_a" "$ns_b" --rtt "$rtt" >/dev/null
        listen=10.77.0.2
    fi
    ip netns exec "$ns_b" "$server" --cert "$lab/server/cert.pem" --key "$lab/server/key.pem" \
        --listen "$listen:0" --root "$lab/client" --authorized-clients "$lab/authorized" \
        2>"$lab/server.log" &
    server_pid=$!
    local port=""
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$lab/server.log" | head -1)
        [[ -z $port ]] || break
        sleep 0.05
    done
    [[ -n $port ]] || { cat "$lab/server.log" >&2; exit 1; }
    ip netns exec "$ns_b" "$python" "$lab/peer.py" "$listen" "$bytes" >"$lab/peer.out" 2>&1 &
    peer_pid=$!
    for _ in $(seq 100); do
        grep -q READY "$lab/peer.out" && break
        sleep 0.05
    done
    local conn=(--remote "$listen:$port" --server-cert "$lab/server/cert.pem"
        --identity "$lab/client" --known-servers "$lab/known_servers" --net "${flags[@]}")
    export HOME=$lab/home XDG_CONFIG_HOME=$lab/xdg
    : >"$lab/runs"
    for _ in $(seq "$reps"); do
        run up-tcp "$python" "$lab/client.py" up "$listen" "$bytes"
        run up-net "$rscq" "${conn[@]}" -- "$python" "$lab/client.py" up "$listen" "$bytes"
        run down-tcp "$python" "$lab/client.py" down "$listen" "$bytes"
        run down-net "$rscq" "${conn[@]}" -- "$python" "$lab/client.py" down "$listen" "$bytes"
    done
    for name in up-tcp up-net down-tcp down-net; do
        local wall
        wall=$(awk -v n="$name" '$1 == n { print $2 / 1e6 }' "$lab/runs" | median)
        awk -v tag="$tag" -v r="$rtt" -v n="$name" -v b="$bytes" -v w="$wall" \
            -v load="$(cut -d' ' -f1 /proc/loadavg)" \
            'BEGIN { printf "| %s | %s | %s | %.1f | %.2f | %s |\n", tag, r, n, b / w / 1e6, w, load }'
    done
    echo "<!-- raw: $(tr '\n' ';' <"$lab/runs") -->"
    cleanup
}

echo "| build | RTT ms | what | MB/s | wall s | load |"
echo "|---|---|---|---|---|---|"
for rtt in $rtts; do
    site "$rtt"
done
