#!/usr/bin/env bash
# scale.sh — cri-runtimed and containerd on a full node, measured in one run.
#
#   sudo test/bench/scale.sh [cri-bench flags...]
#
# e.g. `test/bench/scale.sh --start` (running instead of created
# containers) or `--host-network=false` (pods on a CNI bridge). It
#   1. builds bin/cri-runtimed (make build) and bin/cri-bench unless
#      CRI_RUNTIMED_BIN / CRI_BENCH_BIN name them;
#   2. starts the local registry (local-registry.sh) with SCALE_IMAGES
#      distinct images library/scale:000... that share their layers;
#   3. starts the containerd peer (containerd-peer.sh) and a cri-runtimed
#      of its own: root /var/lib/cri-bench-runtimed, state
#      /run/cri-bench-runtimed, its own certs.d pointing at the registry and
#      its own CNI config (bridge crdbench0, host-local 10.98.0.0/16, not a
#      gateway, no masquerade: nothing leaves the host);
#   4. runs `cri-bench --scale` RUNS times against both endpoints at once
#      (every sample of every call on each runtime in turn), JSON and
#      tables in RESULTS;
#   5. on exit, even on failure or Ctrl-C: stops the daemon, kills and
#      unmounts whatever it left, removes its directories, the bridge and
#      the pod cgroups, and stops containerd and the registry
#      (containerd-peer-stop.sh) unless they were running before the run.
#
# Environment:
#   PODS (25), CONTAINERS (20), SCALE_IMAGES (500), SAMPLES (100), BURST (20),
#   PARALLEL (4, workers creating and removing pods), RUNS (1),
#   RESULTS (a new /tmp/cri-bench-scale-XXXX), CRI_RUNTIMED_BIN, CRI_BENCH_BIN,
#   CONTAINERD (1; 0 measures cri-runtimed alone), DAEMON_FLAGS (extra
#   cri-runtimed flags, e.g. -v=3 for its phase timings in daemon.log).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOT=/var/lib/cri-bench-runtimed
STATE=/run/cri-bench-runtimed
SOCK=$STATE/cri-runtimed.sock
BRIDGE=crdbench0
SUBNET=10.98.0.0/16
CGROUP_PARENT=/cri-bench-runtimed
POD_CGROUPS=/cri-bench-scale
PODS=${PODS:-25}
CONTAINERS=${CONTAINERS:-20}
SCALE_IMAGES=${SCALE_IMAGES:-500}
SAMPLES=${SAMPLES:-100}
BURST=${BURST:-20}
PARALLEL=${PARALLEL:-4}
RUNS=${RUNS:-1}
CONTAINERD=${CONTAINERD:-1}
DAEMON_FLAGS=${DAEMON_FLAGS:-}
DAEMON_PID=
# Until known otherwise, the peer and the registry are someone else's.
PEER_WAS_RUNNING=1 REGISTRY_WAS_RUNNING=1

die() { echo "scale.sh: $*" >&2; exit 1; }
log() { echo "scale.sh: $*" >&2; }

[[ $(id -u) == 0 ]] || die "run as root"
[[ -e $ROOT || -e $STATE ]] && die "$ROOT or $STATE exists: another run in progress, or a leftover (remove it)"

RESULTS=${RESULTS:-$(mktemp -d /tmp/cri-bench-scale-XXXX)}
mkdir -p "$RESULTS"

if [[ -z ${CRI_RUNTIMED_BIN:-} ]]; then
	make -C "$REPO" build >&2 || die "make build failed"
	CRI_RUNTIMED_BIN=$REPO/bin/cri-runtimed
fi
if [[ -z ${CRI_BENCH_BIN:-} ]]; then
	(cd "$REPO" && go build -o bin/cri-bench ./cmd/cri-bench) || die "building cri-bench failed"
	CRI_BENCH_BIN=$REPO/bin/cri-bench
fi

unmount_under() {
	local m
	for _ in 1 2 3; do
		mapfile -t mounts < <(awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print length($5) " " $5 }' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-)
		((${#mounts[@]})) || return 0
		for m in "${mounts[@]}"; do
			umount -l "$(printf '%b' "$m")" 2>/dev/null
		done
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	log "cleaning up"
	if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID"
		for _ in $(seq 200); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$DAEMON_PID" 2>/dev/null
		wait "$DAEMON_PID" 2>/dev/null
	fi
	# Shims the daemon left (pods cri-bench could not remove): found by
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
		for p in "${r%/}$CGROUP_PARENT" "${r%/}$POD_CGROUPS"; do
			[[ -d $p ]] && find "$p" -depth -type d -exec rmdir {} \; 2>/dev/null
		done
	done
	unmount_under "$STATE"
	unmount_under "$ROOT"
	ip link del "$BRIDGE" 2>/dev/null
	[[ -f $STATE/daemon.log ]] && cp "$STATE/daemon.log" "$RESULTS/"
	rm -rf "$STATE" "$ROOT"
	# The peer and the registry are left running when they were before
	# this run (another benchmark uses them).
	if ((CONTAINERD && !PEER_WAS_RUNNING)); then
		KEEP_REGISTRY=$REGISTRY_WAS_RUNNING "$HERE/containerd-peer-stop.sh" >&2
	elif ((!REGISTRY_WAS_RUNNING)); then
		"$HERE/local-registry.sh" stop
	fi
	log "results in $RESULTS"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export CRI_BENCH_SCALE_IMAGES=$SCALE_IMAGES
peer_pid=$(cat /run/cri-bench-containerd/containerd.pid 2>/dev/null) && kill -0 "$peer_pid" 2>/dev/null || PEER_WAS_RUNNING=0
"$HERE/local-registry.sh" status >/dev/null 2>&1 || REGISTRY_WAS_RUNNING=0
registry=$("$HERE/local-registry.sh" start) || die "registry failed"
endpoints=unix://$SOCK
if ((CONTAINERD)); then
	ctr_ep=$("$HERE/containerd-peer.sh") || die "containerd peer failed"
	endpoints+=,$ctr_ep
fi

mkdir -p "$ROOT/certs.d/docker.io" "$ROOT/net.d" "$ROOT/ipam" "$STATE"
cat >"$ROOT/certs.d/docker.io/hosts.toml" <<EOF
server = "$registry"

[host."$registry"]
  capabilities = ["pull", "resolve"]
EOF
cat >"$ROOT/net.d/10-crdbench.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "crdbench",
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

[cni]
  conf_dir = '$ROOT/net.d'
EOF
# shellcheck disable=SC2086 # DAEMON_FLAGS is a list of flags
setsid "$CRI_RUNTIMED_BIN" --config "$ROOT/config.toml" $DAEMON_FLAGS >"$STATE/daemon.log" 2>&1 </dev/null &
DAEMON_PID=$!
for _ in $(seq 300); do
	[[ -S $SOCK ]] && break
	kill -0 "$DAEMON_PID" 2>/dev/null || die "daemon exited: $(tail -20 "$STATE/daemon.log")"
	sleep 0.1
done
[[ -S $SOCK ]] || die "daemon socket $SOCK did not appear"
log "cri-runtimed pid $DAEMON_PID; endpoints $endpoints; load $(cut -d' ' -f1-3 /proc/loadavg)"

rc=0
for run in $(seq "$RUNS"); do
	log "run $run of $RUNS"
	"$CRI_BENCH_BIN" --scale --endpoint "$endpoints" --pods "$PODS" --containers "$CONTAINERS" \
		--images "$SCALE_IMAGES" --samples "$SAMPLES" --burst "$BURST" --parallel "$PARALLEL" \
		--pod-cgroup-prefix "$POD_CGROUPS" --host-network --json "$RESULTS/scale-$run.json" "$@" |
		tee "$RESULTS/scale-$run.txt"
	rc=${PIPESTATUS[0]}
	((rc == 0)) || break
done
exit "$rc"
