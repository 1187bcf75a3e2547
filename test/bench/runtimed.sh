# runtimed.sh — sourced by the benchmark scripts (podstart.sh): a
# cri-runtimed of the benchmark's own, beside the containerd peer.
#
# The caller sets ROOT, STATE, BRIDGE, SUBNET, CGROUP_PARENT, CRI_RUNTIMED_BIN
# and DAEMON_FLAGS (may be empty), and may set SANDBOX_START (runtime.
# sandbox_start: shim, the default, or runc), then calls
#   runtimed_start REGISTRY_URL   config in $ROOT (its own certs.d pointing
#                                 at the registry, its own CNI network on
#                                 $BRIDGE/$SUBNET, not a gateway, no
#                                 masquerade: nothing leaves the host), the
#                                 daemon's log in $STATE/daemon.log; sets
#                                 SOCK and DAEMON_PID
#   runtimed_stop [EXTRA_CGROUP]  stops the daemon, kills and unmounts what
#                                 it left, removes the directories, the
#                                 bridge and the pod cgroups ($CGROUP_PARENT
#                                 and EXTRA_CGROUP under every hierarchy);
#                                 the daemon's log goes to $RESULTS if set

DAEMON_PID=

runtimed_unmount_under() {
	local m
	for _ in 1 2 3; do
		mapfile -t mounts < <(awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print length($5) " " $5 }' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-)
		((${#mounts[@]})) || return 0
		for m in "${mounts[@]}"; do
			umount -l "$(printf '%b' "$m")" 2>/dev/null
		done
	done
}

runtimed_start() {
	local registry=$1
	SOCK=$STATE/cri-runtimed.sock
	mkdir -p "$ROOT/certs.d/docker.io" "$ROOT/net.d" "$ROOT/ipam" "$STATE"
	cat >"$ROOT/certs.d/docker.io/hosts.toml" <<EOF
server = "$registry"

[host."$registry"]
  capabilities = ["pull", "resolve"]
EOF
	cat >"$ROOT/net.d/10-$BRIDGE.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$BRIDGE",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false,
     "ipam": {"type": "host-local", "dataDir": "$ROOT/ipam", "ranges": [[{"subnet": "$SUBNET"}]]}}
  ]
}
EOF
	cat >"$ROOT/config.toml" <<EOF
root = '$ROOT/root'
state = '$STATE'

[grpc]
  address = '$SOCK'

[image]
  registry_config_path = '$ROOT/certs.d'

[runtime]
  default_cgroup_parent = '$CGROUP_PARENT'
  cgroup_driver = 'cgroupfs'
  sandbox_start = '${SANDBOX_START:-shim}'

[cni]
  conf_dir = '$ROOT/net.d'
EOF
	# shellcheck disable=SC2086 # DAEMON_FLAGS is a list of flags
	setsid "$CRI_RUNTIMED_BIN" --config "$ROOT/config.toml" $DAEMON_FLAGS >"$STATE/daemon.log" 2>&1 </dev/null &
	DAEMON_PID=$!
	for _ in $(seq 300); do
		[[ -S $SOCK ]] && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || { echo "daemon exited: $(tail -20 "$STATE/daemon.log")" >&2; return 1; }
		sleep 0.1
	done
	echo "daemon socket $SOCK did not appear" >&2
	return 1
}

runtimed_stop() {
	if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID"
		for _ in $(seq 200); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$DAEMON_PID" 2>/dev/null
		wait "$DAEMON_PID" 2>/dev/null
	fi
	# Shims the daemon left (pods the benchmark could not remove): found by
	# their state directory, then the containers through runc's root.
	local p r id
	for p in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "--state-dir $STATE/" && kill -9 "${p#/proc/}" 2>/dev/null
	done
	for r in "$STATE"/runtime/*/; do
		[[ -d $r ]] || continue
		for id in $(runc --root "$r" list -q 2>/dev/null); do
			runc --root "$r" delete -f "$id" >/dev/null 2>&1
		done
	done
	for r in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
		for p in "${r%/}$CGROUP_PARENT" ${1:+"${r%/}$1"}; do
			[[ -d $p ]] && find "$p" -depth -type d -exec rmdir {} \; 2>/dev/null
		done
	done
	runtimed_unmount_under "$STATE"
	runtimed_unmount_under "$ROOT"
	ip link del "$BRIDGE" 2>/dev/null
	[[ -n ${RESULTS:-} && -f $STATE/daemon.log ]] && cp "$STATE/daemon.log" "$RESULTS/"
	rm -rf "$STATE" "$ROOT"
}
