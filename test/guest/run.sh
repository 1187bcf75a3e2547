#!/bin/bash
# run.sh SUITE runs a guest suite (smoke or full, see entry.sh) on the
# daemon built by `make build`: it builds the e2e test binary, stages both
# with the files `make install` needs into a read-only share, boots the
# guest (boot.sh) and exits with the suite's status. The guest's logs land
# in $GUEST_OUT (default guest-out/ in the repository), the console in
# $GUEST_OUT/console.log and on stdout.
set -euo pipefail

suite=${1:?usage: run.sh smoke|full}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${GUEST_OUT:-$repo/guest-out}
bin=$repo/bin/cri-runtimed
[ -x "$bin" ] || {
	echo "run.sh: $bin missing; run make build first" >&2
	exit 2
}

share=$(mktemp -d /var/tmp/cri-guest-share.XXXXXX)
trap 'rm -rf "$share"' EXIT
mkdir -p "$share/src/bin"
cp "$bin" "$repo/bin/cri-runtimed-shim" "$share/src/bin/"
cp "$repo/Makefile" "$share/src/"
cp -r "$repo/deploy" "$share/src/"
cp "$here/entry.sh" "$share/entry"
echo "$suite" >"$share/suite"
echo "${GUEST_STAGES:-}" >"$share/stages"
echo "${GUEST_TESTS:-}" >"$share/tests"
t0=$(date +%s)
(cd "$repo" && go test -c -tags e2e -o "$share/e2e.test" ./test/e2e)
# want STAGE: whether GUEST_STAGES (none: all) runs STAGE, as entry.sh
# decides; the binaries only the kubelet, bench and checkpoint-crictl
# stages use are built for them alone (the kubelet suite's test binary
# takes minutes at load).
want() { [ -z "${GUEST_STAGES:-}" ] || [[ " $GUEST_STAGES " == *" $1 "* ]]; }
if [ "$suite" = full ] && { want bench || want checkpoint-crictl; }; then
	(cd "$repo" && go build -tags e2e -o "$share/pushimages" ./test/bench/pushimages)
fi
if [ "$suite" = full ] && want bench; then
	cp "$here/bench.sh" "$share/bench"
	(cd "$repo" && go build -o "$share/cri-bench" ./cmd/cri-bench)
fi
if [ "$suite" = full ] && want checkpoint-crictl; then
	cp "$here/checkpoint.sh" "$share/checkpoint"
	# crictl for the checkpoint-crictl stage (cri-tools are not part of
	# this repository: an operator's build, e.g. /opt/critools/crictl).
	if [ -n "${GUEST_CRICTL:-}" ]; then
		cp "$GUEST_CRICTL" "$share/crictl"
	fi
	# checkpointctl (checkpoint-restore/checkpointctl, built outside the
	# repository like crictl): the stage has it read the archive.
	if [ -n "${GUEST_CHECKPOINTCTL:-}" ]; then
		cp "$GUEST_CHECKPOINTCTL" "$share/checkpointctl"
	fi
fi
if [ "$suite" = full ] && want kubelet; then
	# The kubelet of the kubelet suite: `make test-guest` builds v1.37
	# (cgroup v2 only) and passes it here.
	if [ -n "${GUEST_KUBELET:-}" ]; then
		cp "$GUEST_KUBELET" "$share/kubelet"
	fi
	(cd "$repo" && go test -c -tags e2e,kubelet -o "$share/kubelet.test" ./test/e2e/kubelet &&
		CGO_ENABLED=0 go build -o "$share/grpchealth" ./test/e2e/kubelet/grpchealth)
fi
echo "run.sh: test binaries built in $(($(date +%s) - t0)) s" >&2

rm -rf "$out"
mkdir -p "$out"
rc=0
"$here/boot.sh" "$share" "$out" 2>&1 | tee "$out/console.log" || rc=${PIPESTATUS[0]}
exit "$rc"
