#!/usr/bin/env bash
# test/cluster/conformance.sh: Kubernetes' own node conformance specs
# (e2e.test, sig-node only: test/tools/kubernetes/<v>/conformance) against
# the kubeadm cluster of run.sh, on cri-runtimed or, with
# CLUSTER_RUNTIME=containerd, on the containerd peer set up the same way
# (make cluster-conformance).
#
# It brings the cluster up (run.sh up), pushes the images the specs use
# (what `e2e.test --list-images` names and test/cluster/pushimages has a
# recipe for: agnhost, busybox, kitten, nginx, nonewprivs, pause) to the
# cluster's registry,
# which stands in for registry.k8s.io, runs the specs with the ginkgo CLI
# in parallel, writes the counts to $OUT/summary.txt and the JUnit report
# next to it, and removes the cluster (run.sh down) unless CLUSTER_KEEP=1.
# It fails when a spec fails.
#
# Environment (and run.sh's):
#   CONFORMANCE_FOCUS   ginkgo focus (default '\[sig-node\].*\[Conformance\]')
#   CONFORMANCE_SKIP    ginkgo skip (default none)
#   CONFORMANCE_PROCS   parallel ginkgo processes (default 4; [Serial] specs run alone at the end)
#   CONFORMANCE_TIMEOUT the whole run (default 2h)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERSION=${CLUSTER_VERSION:-v1.37.2}
BIN_DIR=${CLUSTER_BIN_DIR:-/var/cache/cri-runtimed-test/cluster/$VERSION}
RUNTIME=${CLUSTER_RUNTIME:-cri-runtimed}
OUT=${CLUSTER_OUT:-$REPO/cluster-out}/conformance-$RUNTIME
FOCUS=${CONFORMANCE_FOCUS:-'\[sig-node\].*\[Conformance\]'}
SKIP=${CONFORMANCE_SKIP:-}
PROCS=${CONFORMANCE_PROCS:-4}
TIMEOUT=${CONFORMANCE_TIMEOUT:-2h}
REGISTRY=http://127.0.0.1:${CLUSTER_REGISTRY_PORT:-5057}
export KUBECONFIG=/etc/kubernetes/admin.conf
export PATH=$BIN_DIR:$PATH # specs run kubectl

log() { printf '%s [conformance] %s\n' "$(date -u +%T)" "$*"; }
die() { log "FAIL: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root"
for b in e2e.test ginkgo agnhost nnp; do
	[[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b missing: make conformance-bins"
done
rm -rf "$OUT"
mkdir -p "$OUT"

# The cluster's logs go next to the specs' results.
export CLUSTER_OUT=$OUT CLUSTER_RUNTIME=$RUNTIME
t0=$(date +%s)
"$REPO/test/cluster/run.sh" up
log "cluster on $RUNTIME up in $(($(date +%s) - t0)) s (load:$(cut -d' ' -f1-3 /proc/loadavg))"
down() {
	local rc=$?
	if [[ ${CLUSTER_KEEP:-} == 1 ]]; then
		log "cluster kept; remove it with test/cluster/run.sh down"
	else
		"$REPO/test/cluster/run.sh" down
	fi
	exit $rc
}
trap down EXIT
trap 'exit 143' TERM INT

# The specs' images: e2e.test prints its own list ("registry/name:tag"
# per line); those of registry.k8s.io with a recipe are built.
mapfile -t refs < <("$BIN_DIR/e2e.test" --list-images |
	grep -E '^registry\.k8s\.io/(e2e-test-images/(agnhost|busybox|kitten|nginx|nonewprivs)|pause):')
((${#refs[@]})) || die "e2e.test --list-images named none of agnhost, busybox, kitten, nginx, nonewprivs, pause"
# The kitten image's files are upstream's, from the module's source.
k8s_src=$(cd "$REPO/test/tools/kubernetes/$VERSION" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
(cd "$REPO" && go run -tags e2e ./test/cluster/pushimages --registry "$REGISTRY" --bin-dir "$BIN_DIR" \
	--kubernetes-src "$k8s_src" "${refs[@]}") \
	>"$OUT/pushimages-e2e.log" 2>&1 || die "pushing the specs' images failed: $(tail -5 "$OUT/pushimages-e2e.log")"
log "pushed ${refs[*]}"

t0=$(date +%s)
rc=0
# --report-dir: the framework's own files (and on failure, dumps).
"$BIN_DIR/ginkgo" --procs="$PROCS" --timeout="$TIMEOUT" --no-color --poll-progress-after=5m \
	--focus="$FOCUS" ${SKIP:+--skip="$SKIP"} \
	--junit-report="$OUT/junit.xml" --output-dir="$OUT" \
	"$BIN_DIR/e2e.test" -- --kubeconfig="$KUBECONFIG" --provider=skeleton --report-dir="$OUT" \
	>"$OUT/e2e.log" 2>&1 || rc=$?
took=$(($(date +%s) - t0))

# Counts from the JUnit report: one testcase per spec, with <failure>,
# <error> or <skipped> when it did not pass (skipped: outside the focus
# too). Ginkgo names the report of a precompiled suite junit_01.xml.
python3 - "$OUT"/junit*.xml >"$OUT/summary.txt" <<'PY'
import sys, xml.etree.ElementTree as ET
passed, failed, skipped = [], [], []
for tc in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    name = tc.get("name", "")
    if name.startswith("[SynchronizedBeforeSuite]") or name.startswith("[SynchronizedAfterSuite]") or name.startswith("[ReportAfterSuite]") or name.startswith("[ReportBeforeSuite]"):
        if tc.find("failure") is not None or tc.find("error") is not None:
            failed.append(name)
        continue
    if tc.find("skipped") is not None:
        skipped.append(name)
    elif tc.find("failure") is not None or tc.find("error") is not None:
        failed.append(name)
    else:
        passed.append(name)
print(f"passed {len(passed)} failed {len(failed)} skipped {len(skipped)}")
for n in failed:
    print("FAILED", n)
PY
log "$RUNTIME: $(head -1 "$OUT/summary.txt") in $took s (load:$(cut -d' ' -f1-3 /proc/loadavg)); focus $FOCUS${SKIP:+, skip $SKIP}"
grep '^FAILED' "$OUT/summary.txt" || true
[[ $rc == 0 ]] || die "ginkgo exited $rc; see $OUT/e2e.log"
