#!/usr/bin/env bash
# sshfs as the peer rscq is measured against, on the same emulated link.
#
#   netem/sshfs.sh serve  STATE NS ADDR          sshd in namespace NS on ADDR:22 (sftp only)
#   netem/sshfs.sh mount  STATE NS ADDR DIR MNT  sshfs of ADDR:DIR at MNT, its traffic from NS
#   netem/sshfs.sh umount MNT
#   netem/sshfs.sh stop   STATE                  stops the sshd `serve` started
#
# STATE is a directory of this script's own (keys, sshd_config, pid file); `serve` creates
# it. Root only: sshd runs as root and logs in root with a throw-away key that only this
# STATE's sshd accepts. The mount is made in the caller's mount namespace (nsenter --net,
# not `ip netns exec`, which would hide the mount in a namespace of its own). Needs sshd
# (openssh-server), sshfs and nsenter; tests/run.sh installs them.
set -euo pipefail

die() { echo "sshfs.sh: $*" >&2; exit 1; }
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

ns_ok() { [[ $1 =~ ^[A-Za-z0-9_.-]{1,64}$ && -e /run/netns/$1 ]] || die "no such namespace: $1"; }
sshd_bin=${RSCQ_SSHD:-/usr/sbin/sshd}

serve() {
    local state=$1 ns=$2 addr=$3
    ns_ok "$ns"
    [[ -x $sshd_bin ]] || die "sshd not found at $sshd_bin (apt install openssh-server)"
    command -v ssh-keygen >/dev/null || die "ssh-keygen not found (apt install openssh-client)"
    mkdir -p "$state" /run/sshd
    chmod 700 "$state"
    [[ -f $state/host_key ]] || ssh-keygen -q -t ed25519 -N '' -f "$state/host_key"
    [[ -f $state/client_key ]] || ssh-keygen -q -t ed25519 -N '' -f "$state/client_key"
    cp "$state/client_key.pub" "$state/authorized_keys"
    cat >"$state/sshd_config" <<EOF
ListenAddress $addr:22
HostKey $state/host_key
PidFile $state/sshd.pid
AuthorizedKeysFile $state/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
AllowTcpForwarding no
Subsystem sftp internal-sftp
EOF
    # sshd binds its socket before it detaches, so it is listening on return.
    nsenter --net="/run/netns/$ns" "$sshd_bin" -f "$state/sshd_config" -E "$state/sshd.log" ||
        die "sshd did not start: $(tail -3 "$state/sshd.log" 2>/dev/null)"
}

mount_it() {
    local state=$1 ns=$2 addr=$3 dir=$4 mnt=$5
    ns_ok "$ns"
    command -v sshfs >/dev/null || die "sshfs not found (apt install sshfs)"
    [[ -f $state/client_key ]] || die "no client key in $state: run serve first"
    mkdir -p "$mnt"
    nsenter --net="/run/netns/$ns" sshfs "root@$addr:$dir" "$mnt" \
        -o "IdentityFile=$state/client_key,IdentitiesOnly=yes,BatchMode=yes" \
        -o StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,LogLevel=ERROR
}

stop() {
    local state=$1 pid
    [[ -f $state/sshd.pid ]] || return 0
    pid=$(cat "$state/sshd.pid")
    if grep -qa sshd "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$state/sshd.pid"
}

[[ $# -ge 1 ]] || usage
case $1 in
serve) [[ $# -eq 4 ]] || usage; serve "$2" "$3" "$4" ;;
mount) [[ $# -eq 6 ]] || usage; mount_it "$2" "$3" "$4" "$5" "$6" ;;
umount) [[ $# -eq 2 ]] || usage; umount "$2" 2>/dev/null || umount -l "$2" ;;
stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
*) usage ;;
esac
