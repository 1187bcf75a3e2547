#!/bin/bash
# entry.sh runs inside the guest (as /mnt/host/entry, started by the
# image's guest-run unit once systemd is up) and runs the suite named in
# /mnt/host/suite: the e2e test binary (/mnt/host/e2e.test) against the
# daemon built on the host (/mnt/host/src/bin/cri-runtimed), once per
# cgroup driver and runtime handler the suite lists, plus the systemd unit
# test on a daemon installed with `make install`. Full logs go to
# /mnt/out; the console shows test names and failures. The exit status is
# the number of failed runs (0: all passed).
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
out=/mnt/out
# A binary run from the 9p share pages in over 9p: an exec of the daemon
# took 7-8 s there against 0.5 s from the guest's disk, and every test
# starts daemons (and the shim reads the daemon's binary whole). So the
# share is copied first.
t0=$(cut -d' ' -f1 /proc/uptime)
rm -rf /opt/test && cp -a /mnt/host /opt/test || exit 98
echo "guest: share copied to /opt/test in $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{print b - a}') s"
export GUEST_SHARE=/opt/test
host=$GUEST_SHARE
suite=$(cat "$host/suite")
# GUEST_STAGES on the host (run.sh) picks stages of the suite by name
# (e.g. "pods-crun-systemd kubelet"); none: all of them.
stages=$(cat "$host/stages" 2>/dev/null)
want() { [ -z "$stages" ] || [[ " $stages " == *" $1 "* ]]; }
# GUEST_TESTS narrows every e2e stage to the tests it names (a -test.run
# regex).
only=$(cat "$host/tests" 2>/dev/null)
export CRI_RUNTIMED_BIN=$host/src/bin/cri-runtimed
# Software emulation is several times slower than the machines the
# tests' timeouts were written for.
export CRI_RUNTIMED_E2E_SLOW=${CRI_RUNTIMED_E2E_SLOW:-4}
export HOME=/root

failed=0
now() { cut -d' ' -f1 /proc/uptime; }

# The swap tests need swap: kubelet's LimitedSwap only makes sense with it.
if fallocate -l 1G /swapfile && chmod 600 /swapfile && mkswap -q /swapfile && swapon /swapfile; then
	echo "guest: 1 GiB swap file active"
else
	echo "guest: no swap file"
fi
state=$(systemctl is-system-running --wait 2>/dev/null)
echo "guest: systemd $state after $(now) s"
if [ "$state" != running ]; then
	systemctl --failed --no-legend
fi

# e2e NAME REGEX [VAR=value...] runs the e2e tests matching REGEX with the
# given environment; the console gets the lines `make e2e` shows.
e2e() {
	local name=$1 regex=$2
	shift 2
	[ -z "$only" ] || regex=$only
	tests "$name" "$host/e2e.test" "$regex" "$@"
}

# tests NAME BINARY REGEX [VAR=value...] runs a go test binary's tests
# matching REGEX as stage NAME.
tests() {
	local name=$1 bin=$2 regex=$3 t0 rc
	shift 3
	want "$name" || return 0
	t0=$(now)
	echo "guest: == $name (${*:-defaults}): $regex"
	env "$@" "$bin" -test.run "$regex" -test.v -test.count=1 -test.timeout 90m 2>&1 |
		tee "$out/$name.log" | grep --line-buffered -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|^\s+\S+_test.go'
	rc=${PIPESTATUS[0]}
	# A regex that matches nothing passes, and so does a test that skips
	# (one that finds no cgroup v2 or no systemd): neither is a result.
	if [ $rc = 0 ] && ! grep -q '^--- PASS' "$out/$name.log"; then
		echo "guest: == $name: no test ran"
		rc=97
	fi
	if [ $rc = 0 ] && [ "$suite" = smoke ] && grep -q -- '--- SKIP' "$out/$name.log"; then
		grep -- '--- SKIP' -A2 "$out/$name.log"
		echo "guest: == $name: the smoke subset skipped tests"
		rc=96
	fi
	echo "guest: == $name: exit $rc after $(echo "$(now) - $t0" | awk '{print $1 - $3}') s"
	[ $rc = 0 ] || failed=$((failed + 1))
}

# unit installs the daemon as an operator does (make install, then the
# unit) and runs the tests that restart it through systemd.
unit() {
	local t0
	want unit || return 0
	t0=$(now)
	echo "guest: == systemd unit: make install; systemctl enable --now cri-runtimed"
	if ! make -s -C "$host/src" install NOBUILD=1 >"$out/install.log" 2>&1 ||
		! systemctl enable --now cri-runtimed >>"$out/install.log" 2>&1; then
		cat "$out/install.log"
		failed=$((failed + 1))
		return
	fi
	e2e unit 'TestSystemdUnit' CRI_RUNTIMED_E2E_INSTALLED=1
	journalctl -u cri-runtimed --no-pager >"$out/unit-journal.log" 2>&1
	systemctl disable --now cri-runtimed >/dev/null 2>&1
	echo "guest: == systemd unit: $(echo "$(now) - $t0" | awk '{print $1 - $3}') s in all"
}

# Tests whose subject is cgroups, resources, OOM and stats, run with both
# drivers; pod lifecycle tests run with both handlers.
cgroup_tests='^(TestMemoryLimitOOM|TestResourceLimitsInCgroups|TestUpdateContainerResources|TestUpdatePodSandboxResources|TestPodCgroupCPUResize|TestContainerAndPodStats|TestStatsFiltersAndStreams|TestSwapLimit|TestPodCgroup|TestRuntimeConfig|TestSandboxStartConfinement)$'
pod_tests='^(TestPodSharedNamespaces|TestPodLifecycleErrors|TestNothingLeaks|TestRestartKeepsPodsRunning|TestShimDeath|TestContainerExitReasons|TestStopContainer|TestPIDNamespaceModes|TestContainerUser|TestExecSync|TestContainerLogs|TestMemoryLimitOOM|TestResourceLimitsInCgroups|TestUpdateContainerResources)$'
# The smoke subset (make test): pod lifecycle in the daemon's own slice,
# an OOM kill and the v2 stats, all with the systemd driver.
smoke_tests='^(TestPodCgroup|TestMemoryLimitOOM|TestContainerAndPodStats)$/^(own|main_process|cpu_and_memory|cgroup_v2_pressure_and_io)$'

# shared_registry starts one registry for the rest of the suite and
# exports its URL as CRI_RUNTIMED_E2E_REGISTRY: the tests then attach to it
# instead of each starting one and pushing the same busybox image again,
# which under emulation costs seconds per test. Only for tests that
# expect nothing of the registry but the images they push (the smoke's).
shared_registry() {
	local dir=/var/tmp/e2e-registry port=5056
	mkdir -p "$dir"
	cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
EOF
	/usr/bin/docker-registry serve "$dir/config.yml" >"$out/registry.log" 2>&1 &
	for _ in $(seq 600); do
		if busybox wget -q -O /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
			export CRI_RUNTIMED_E2E_REGISTRY=http://127.0.0.1:$port
			echo "guest: one registry for the suite at $CRI_RUNTIMED_E2E_REGISTRY"
			return
		fi
		sleep 0.1
	done
	echo "guest: the shared registry did not answer; each test starts its own"
}

case "$suite" in
smoke)
	shared_registry
	e2e smoke-systemd "$smoke_tests" CRI_RUNTIMED_E2E_CGROUP_DRIVER=systemd
	unit
	;;
full)
	e2e cgroups-systemd "$cgroup_tests" CRI_RUNTIMED_E2E_CGROUP_DRIVER=systemd
	e2e cgroups-cgroupfs "$cgroup_tests" CRI_RUNTIMED_E2E_CGROUP_DRIVER=cgroupfs
	e2e pods-crun-systemd "$pod_tests" CRI_RUNTIMED_E2E_CGROUP_DRIVER=systemd CRI_RUNTIMED_E2E_HANDLER=crun
	# CRIU works on the guest's Debian kernel (not on the host's).
	e2e checkpoint-systemd '^TestCheckpoint$' CRI_RUNTIMED_E2E_CGROUP_DRIVER=systemd
	e2e checkpoint-cgroupfs '^TestCheckpoint$' CRI_RUNTIMED_E2E_CGROUP_DRIVER=cgroupfs
	unit
	# Checkpoints by hand, as an operator: crictl (staged from
	# $GUEST_CRICTL) and `cri-runtimed pod checkpoint|restore` against
	# the installed unit (after the unit stage, which wants a fresh node).
	# Without a crictl the stage fails when named, and says so otherwise.
	if want checkpoint-crictl && ! [ -x "$host/crictl" ]; then
		echo "guest: == checkpoint-crictl: no crictl staged (run.sh takes it from \$GUEST_CRICTL)"
		[ -z "$stages" ] || failed=$((failed + 1))
	elif want checkpoint-crictl; then
		t0=$(now)
		echo "guest: == checkpoint-crictl: crictl checkpoint, cri-runtimed pod checkpoint|restore"
		"$host/checkpoint" 2>&1 | tee "$out/checkpoint-crictl.log" | grep --line-buffered '^checkpoint-crictl:'
		rc=${PIPESTATUS[0]}
		echo "guest: == checkpoint-crictl: exit $rc after $(echo "$(now) - $t0" | awk '{print $1 - $3}') s"
		[ $rc = 0 ] || failed=$((failed + 1))
	fi
	# The kubelet suite (test/e2e/kubelet): the newest kubelet at its
	# defaults, cgroupDriver systemd (the daemon's), on cgroup v2.
	if want kubelet && ! [ -x "$host/kubelet" ]; then
		echo "guest: == kubelet: none staged (run.sh takes it from \$GUEST_KUBELET)"
		failed=$((failed + 1))
	elif want kubelet; then
		echo "guest: == kubelet suite: $("$host/kubelet" --version 2>&1)"
		tests kubelet "$host/kubelet.test" . CRI_RUNTIMED_E2E_CGROUP_DRIVER=systemd \
			CRI_RUNTIMED_KUBELET="$host/kubelet" CRI_RUNTIMED_E2E_GRPCHEALTH="$host/grpchealth"
	fi
	if want bench; then
		t0=$(now)
		echo "guest: == pod start latency, systemd against cgroupfs driver"
		if ! "$host/bench"; then
			failed=$((failed + 1))
		fi
		echo "guest: == bench: $(echo "$(now) - $t0" | awk '{print $1 - $3}') s"
	fi
	;;
*)
	echo "guest: unknown suite $suite"
	exit 99
	;;
esac
echo "guest: suite $suite: $failed failed run(s) after $(now) s"
exit $failed
