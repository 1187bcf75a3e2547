#!/usr/bin/env bash
# podstart.sh — pod start and per-pod memory of cri-runtimed and
# containerd, measured in one run (issue 19).
#
#   sudo test/bench/podstart.sh [cri-bench flags...]
#
# It
#   1. builds bin/cri-runtimed (make build) and bin/cri-bench unless
#      CRI_RUNTIMED_BIN / CRI_BENCH_BIN name them;
#   2. starts the local registry, the containerd peer (containerd-peer.sh)
#      and a cri-runtimed of its own (runtimed.sh: root
#      /var/lib/cri-bench-podstart, state /run/cri-bench-podstart, bridge
#      crdpod0 on 10.97.0.0/16), with -v=3 so that daemon.log has each pod's
#      start phases ("Pod sandbox start phases", "Container start phases");
#   3. runs `cri-bench --pods PODS --parallel PARALLEL --settle SETTLE`
#      ROUNDS times on each runtime in turn (cri-runtimed, containerd,
#      cri-runtimed, ...), so that both see the machine's load alike;
#      the load average is logged before every round;
#   4. on exit, even on failure or Ctrl-C, removes everything it started
#      (KEEP_CONTAINERD=1 leaves the containerd peer and the registry up).
#
# Environment: PODS (20), PARALLEL (1,4), SETTLE (10s), ROUNDS (2),
# START_SETTLE (10: seconds between the daemon's start and round 1),
# RESULTS (a new /tmp/cri-bench-podstart-XXXX), CRI_RUNTIMED_BIN,
# CRI_BENCH_BIN, DAEMON_FLAGS (-v=3), SANDBOX_START (shim; runc: the
# pause by runc), CONTAINERD (1; 0 measures
# cri-runtimed alone).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=runtimed.sh
. "$HERE/runtimed.sh"
ROOT=/var/lib/cri-bench-podstart
STATE=/run/cri-bench-podstart
BRIDGE=crdpod0
SUBNET=10.97.0.0/16
CGROUP_PARENT=/cri-bench-podstart
PODS=${PODS:-20}
PARALLEL=${PARALLEL:-1,4}
SETTLE=${SETTLE:-10s}
ROUNDS=${ROUNDS:-2}
CONTAINERD=${CONTAINERD:-1}
DAEMON_FLAGS=${DAEMON_FLAGS:--v=3}

die() { echo "podstart.sh: $*" >&2; exit 1; }
log() { echo "podstart.sh: $*" >&2; }

[[ $(id -u) == 0 ]] || die "run as root"
[[ -e $ROOT || -e $STATE ]] && die "$ROOT or $STATE exists: another run in progress, or a leftover (remove it)"

RESULTS=${RESULTS:-$(mktemp -d /tmp/cri-bench-podstart-XXXX)}
mkdir -p "$RESULTS"

if [[ -z ${CRI_RUNTIMED_BIN:-} ]]; then
	make -C "$REPO" build >&2 || die "make build failed"
	CRI_RUNTIMED_BIN=$REPO/bin/cri-runtimed
fi
if [[ -z ${CRI_BENCH_BIN:-} ]]; then
	(cd "$REPO" && go build -o bin/cri-bench ./cmd/cri-bench) || die "building cri-bench failed"
	CRI_BENCH_BIN=$REPO/bin/cri-bench
fi

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	log "cleaning up"
	runtimed_stop
	if ((CONTAINERD)) && [[ ${KEEP_CONTAINERD:-0} != 1 ]]; then
		"$HERE/containerd-peer-stop.sh" >&2
	fi
	log "results in $RESULTS"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

registry=$("$HERE/local-registry.sh" start) || die "registry failed"
endpoints=(cri-runtimed)
if ((CONTAINERD)); then
	ctr_ep=$("$HERE/containerd-peer.sh") || die "containerd peer failed"
	endpoints+=(containerd)
fi
runtimed_start "$registry" || die "cri-runtimed did not start"
log "cri-runtimed pid $DAEMON_PID"
# Both daemons idle before the first round: containerd was started above
# (or kept), cri-runtimed just served. Its first "daemon, before" sample is
# then its idle RSS, not its start-up (it drops its binary's pages 5 s
# after serving).
sleep "${START_SETTLE:-10}"

for round in $(seq "$ROUNDS"); do
	for rt in "${endpoints[@]}"; do
		# Other sessions may run daemons of the same name: name ours by PID,
		# containerd by its socket's peer.
		flags=(--endpoint "unix://$SOCK" --daemon-pid "$DAEMON_PID")
		[[ $rt == containerd ]] && flags=(--endpoint "$ctr_ep")
		log "round $round, $rt, load $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "== round $round $rt load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/load.txt"
		"$CRI_BENCH_BIN" "${flags[@]}" --pods "$PODS" --parallel "$PARALLEL" \
			--settle "$SETTLE" --json "$RESULTS/$rt-$round.json" "$@" | tee "$RESULTS/$rt-$round.txt" ||
			die "cri-bench failed on $rt"
	done
done
echo "== end load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/load.txt"
