#!/usr/bin/env bash
# Emulated link between two network namespaces created here.
#
#   netem/link.sh up   NAME_A NAME_B --rtt MS [--loss PCT] [--rate MBIT] [--queue PKTS]
#                      [--addr-a 10.77.0.1] [--addr-b 10.77.0.2]
#   netem/link.sh down NAME_A NAME_B
#   netem/link.sh status NAME_A NAME_B
#   netem/link.sh cut NAME_A NAME_B on|off    (every packet dropped while on)
#
# Side A gets 10.77.0.1/24 and side B 10.77.0.2/24 on device `rscq0` (sch_netem backend)
# or `rscq-dl` (delay line backend); `lo` is up in both. Backend: veth + `tc netem` if the
# kernel has sch_netem, else the user-space `rscq-delayline` (RSCQ_NETEM_BACKEND=netem or
# =delayline forces one). See netem/README.md.
set -euo pipefail

die() { echo "link.sh: $*" >&2; exit 1; }
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[[ $# -ge 3 ]] || usage
cmd=$1 ns_a=$2 ns_b=$3
shift 3
for ns in "$ns_a" "$ns_b"; do
    [[ $ns =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "bad namespace name: $ns"
done
[[ $ns_a != "$ns_b" ]] || die "the two namespaces must differ"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state_dir=${RSCQ_NETEM_STATE_DIR:-/run/rscq-netem}
if ! mkdir -p "$state_dir" 2>/dev/null || [[ ! -w $state_dir ]]; then
    state_dir=${TMPDIR:-/tmp}/rscq-netem
    mkdir -p "$state_dir"
fi
state="$state_dir/$ns_a--$ns_b.state"

# True if this kernel can run `tc qdisc ... netem`. Probed on a veth inside a scratch
# namespace so that nothing outside it is touched.
have_netem() {
    local probe="rscq-netem-probe-$$" ok=1
    ip netns add "$probe" 2>/dev/null || return 1
    if ip -n "$probe" link add p0 type veth peer name p1 2>/dev/null &&
        ip netns exec "$probe" tc qdisc add dev p0 root netem delay 1ms 2>/dev/null; then
        ok=0
    fi
    ip netns del "$probe" 2>/dev/null || true
    return $ok
}

down() {
    if [[ ! -f $state ]]; then
        return 0 # never up, or already down
    fi
    local MODE="" PID="" NS_A="" NS_B=""
    # shellcheck disable=SC1090
    source "$state"
    if [[ $MODE == delayline && -n $PID ]] && grep -qa rscq-delayline "/proc/$PID/cmdline" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -d /proc/$PID ]] || break
            sleep 0.1
        done
        [[ ! -d /proc/$PID ]] || kill -KILL "$PID" 2>/dev/null || true
    fi
    # Only namespaces this script created are recorded in the state file.
    for ns in $NS_A $NS_B; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -f "$state" "$state_dir/$ns_a--$ns_b".{out,log}
}

up() {
    local rtt="" loss=0 rate="" queue=1000 addr_a=10.77.0.1 addr_b=10.77.0.2
    while [[ $# -gt 0 ]]; do
        case $1 in
        --rtt) rtt=$2 ;;
        --loss) loss=$2 ;;
        --rate) rate=$2 ;;
        --queue) queue=$2 ;;
        --addr-a) addr_a=$2 ;;
        --addr-b) addr_b=$2 ;;
        *) usage ;;
        esac
        shift 2 || usage
    done
    [[ -n $rtt ]] || die "--rtt MS is required"
    local num='^[0-9]+([.][0-9]+)?$'
    [[ $rtt =~ $num && $loss =~ $num && $queue =~ ^[0-9]+$ ]] || die "bad --rtt/--loss/--queue"
    [[ -z $rate || $rate =~ $num ]] || die "bad --rate"
    [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces)"
    [[ ! -f $state ]] || die "$ns_a/$ns_b already up ($state); run: $0 down $ns_a $ns_b"
    for ns in "$ns_a" "$ns_b"; do
        [[ ! -e /run/netns/$ns ]] || die "namespace $ns already exists; refusing to reuse it"
    done

    local backend=${RSCQ_NETEM_BACKEND:-auto}
    if [[ $backend == auto ]]; then
        if have_netem; then backend=netem; else backend=delayline; fi
    fi

    ip netns add "$ns_a"
    printf 'NS_A=%q\n' "$ns_a" >"$state"
    ip netns add "$ns_b"
    printf 'NS_B=%q\n' "$ns_b" >>"$state"
    trap 'echo "link.sh: setup failed, tearing down" >&2; down' ERR
    ip -n "$ns_a" link set lo up
    ip -n "$ns_b" link set lo up

    case $backend in
    netem)
        # Created directly inside the namespaces: nothing ever appears in ours.
        ip link add rscq0 netns "$ns_a" type veth peer name rscq0 netns "$ns_b"
        local half
        half=$(awk -v r="$rtt" 'BEGIN { printf "%.3fms", r / 2 }')
        local ns addr
        for side in a b; do
            if [[ $side == a ]]; then ns=$ns_a addr=$addr_a; else ns=$ns_b addr=$addr_b; fi
            ip -n "$ns" link set rscq0 mtu 1500
            ip -n "$ns" addr add "$addr/24" dev rscq0
            ip -n "$ns" link set rscq0 up
            # netem's own rate and limit model the same link as the delay line does.
            # shellcheck disable=SC2046
            ip netns exec "$ns" tc qdisc add dev rscq0 root netem delay "$half" \
                loss "$loss%" limit "$queue" $([[ -n $rate ]] && echo rate "${rate}mbit")
        done
        printf 'MODE=netem\nHALF=%q\nLOSS=%q\nQUEUE=%q\nRATE=%q\n' "$half" "$loss" "$queue" "$rate" >>"$state"
        ;;
    delayline)
        local bin=${RSCQ_DELAYLINE:-$repo/target/release/rscq-delayline}
        [[ -x $bin ]] || die "no delay line at $bin (cargo build --release --features delayline --bin rscq-delayline, or set RSCQ_DELAYLINE)"
        local out="$state_dir/$ns_a--$ns_b.out" log="$state_dir/$ns_a--$ns_b.log"
        local args=(--ns-a "$ns_a" --ns-b "$ns_b" --rtt-ms "$rtt" --loss-pct "$loss"
            --queue-pkts "$queue" --addr-a "$addr_a" --addr-b "$addr_b")
        [[ -z $rate ]] || args+=(--rate-mbit "$rate")
        # setsid: the delay line must outlive this shell and its terminal.
        setsid "$bin" "${args[@]}" >"$out" 2>"$log" </dev/null &
        local pid=$!
        printf 'MODE=delayline\nPID=%s\n' "$pid" >>"$state"
        for _ in $(seq 200); do
            grep -qx ready "$out" 2>/dev/null && break
            if [[ ! -d /proc/$pid ]]; then
                cat "$log" >&2
                false # triggers the ERR trap
            fi
            sleep 0.05
        done
        grep -qx ready "$out" || { cat "$log" >&2; false; }
        ;;
    *) die "RSCQ_NETEM_BACKEND must be auto, netem or delayline" ;;
    esac
    trap - ERR
    echo "link.sh: $ns_a ($addr_a) <-> $ns_b ($addr_b): rtt ${rtt}ms loss ${loss}% rate ${rate:-unlimited}${rate:+mbit} queue ${queue}pkts via $backend"
}

# Cuts the link (on: every packet dropped in both directions) or restores it (off).
cut() {
    [[ $# -eq 1 && ( $1 == on || $1 == off ) ]] || usage
    [[ -f $state ]] || die "$ns_a/$ns_b is not up"
    local MODE="" PID="" HALF="" LOSS="" QUEUE="" RATE=""
    # shellcheck disable=SC1090
    source "$state"
    case $MODE in
    delayline)
        grep -qa rscq-delayline "/proc/$PID/cmdline" 2>/dev/null || die "delay line $PID is gone"
        if [[ $1 == on ]]; then kill -USR1 "$PID"; else kill -USR2 "$PID"; fi
        ;;
    netem)
        local loss=$LOSS
        [[ $1 == off ]] || loss=100
        for ns in "$ns_a" "$ns_b"; do
            # shellcheck disable=SC2046
            ip netns exec "$ns" tc qdisc change dev rscq0 root netem delay "$HALF" \
                loss "$loss%" limit "$QUEUE" $([[ -n $RATE ]] && echo rate "${RATE}mbit")
        done
        ;;
    *) die "unknown link mode in $state" ;;
    esac
}

case $cmd in
up) up "$@" ;;
cut) cut "$@" ;;
down) down ;;
status)
    if [[ -f $state ]]; then cat "$state"; else echo "down"; fi
    ;;
*) usage ;;
esac
