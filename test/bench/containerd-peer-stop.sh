#!/usr/bin/env bash
# containerd-peer-stop.sh — stop the benchmark's containerd and remove
# everything it created: its containers and shims, mounts (snapshots, netns
# pins, shm), the cribench0 bridge, the k8s.io cgroups, /var/lib/cni and
# /run/containerd if they were not there before, and its root and state
# directories. Also stops the local registry unless KEEP_REGISTRY=1.
# The installed Debian packages stay. Idempotent.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=/var/lib/cri-bench-containerd
STATE=/run/cri-bench-containerd
SOCK=$STATE/containerd.sock
PIDFILE=$STATE/containerd.pid
BRIDGE=cribench0

[[ $(id -u) == 0 ]] || { echo "containerd-peer-stop: run as root" >&2; exit 1; }

had_run_containerd=1 had_cgroup_k8s_io=1 had_var_lib_cni=1 ip_forward=
# shellcheck disable=SC1091
[[ -f $ROOT/before.env ]] && . "$ROOT/before.env"

wait_gone() { # pid seconds
	for _ in $(seq $(($2 * 10))); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# The daemon first, so that it does not restart anything meanwhile.
if [[ -f $PIDFILE ]]; then
	pid=$(cat "$PIDFILE")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		wait_gone "$pid" 10 || kill -9 "$pid"
	fi
fi

# Containers the benchmark did not remove: kill them through runc's own
# state (our runc root), then their shims, found by the containerd
# address on their command line.
for ns_root in "$STATE"/runc/*; do
	[[ -d $ns_root ]] || continue
	for id in $(runc --root "$ns_root" list -q 2>/dev/null); do
		runc --root "$ns_root" kill "$id" KILL 2>/dev/null
		runc --root "$ns_root" delete --force "$id" 2>/dev/null
	done
done
for p in /proc/[0-9]*; do
	comm=$(cat "$p/comm" 2>/dev/null) || continue
	[[ $comm == containerd-shim* ]] || continue
	if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "-address $SOCK "; then
		kill "${p#/proc/}" 2>/dev/null
		wait_gone "${p#/proc/}" 5 || kill -9 "${p#/proc/}" 2>/dev/null
	fi
done

# Mounts under our directories, deepest first; lazily if still busy.
for dir in "$STATE" "$ROOT"; do
	awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
done

ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"

# Pod cgroups are removed by runc; their empty parents stay behind.
if [[ $had_cgroup_k8s_io == 0 ]]; then
	for c in /sys/fs/cgroup/*/k8s.io; do
		[[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
	done
fi

# libcni's result cache: its entries go with each pod's teardown.
if [[ $had_var_lib_cni == 0 && -d /var/lib/cni ]]; then
	find /var/lib/cni -depth -type d -empty -delete 2>/dev/null
fi

if [[ -n $ip_forward && $(cat /proc/sys/net/ipv4/ip_forward) != "$ip_forward" ]]; then
	echo "$ip_forward" >/proc/sys/net/ipv4/ip_forward
fi

rm -rf "$STATE" "$ROOT"
if [[ $had_run_containerd == 0 ]]; then
	# Only shim sockets live there. With no shim left on the machine
	# none of them is live; otherwise remove only empty directories.
	if pgrep containerd-shim >/dev/null; then
		find /run/containerd -depth -type d -empty -delete 2>/dev/null
	else
		rm -rf /run/containerd
	fi
fi

[[ ${KEEP_REGISTRY:-0} == 1 ]] || "$HERE/local-registry.sh" stop
echo "containerd-peer-stop: done" >&2
