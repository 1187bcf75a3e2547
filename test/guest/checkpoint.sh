#!/bin/bash
# checkpoint.sh runs inside the guest (the full suite's checkpoint-crictl
# stage, when run.sh staged a crictl from $GUEST_CRICTL): checkpoint and
# restore as an operator does them, on the daemon installed with `make
# install` and run by its systemd unit, through crictl (CheckpointContainer,
# and a restore by `crictl create` with the archive as the image) and
# through `cri-runtimed pod checkpoint|restore` (CheckpointPod, RestorePod)
# and `cri-runtimed checkpoint image`. Each step's wall time and the
# guest's load go to the console and to /mnt/out/checkpoint-crictl.log.
# Images come from a registry inside the guest (test/bench/pushimages).
# The exit status is the number of failed checks.
set -u
host=${GUEST_SHARE:-/mnt/host}
out=/mnt/out
work=/var/tmp/ckpt-op
crictl=$host/crictl
bin=/usr/local/bin/cri-runtimed
port=5056
failed=0
mkdir -p "$work/registry"
log() { echo "checkpoint-crictl: $*"; }
fail() {
	log "FAIL: $*"
	failed=$((failed + 1))
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b - a}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
# timed NAME CMD... runs CMD and logs its wall time with the guest's
# load; its stdout is left in $work/last.out.
timed() {
	local name=$1 t0 rc
	shift
	t0=$(now)
	"$@" >"$work/last.out" 2>"$work/last.err"
	rc=$?
	log "$name: $(since "$t0") s (exit $rc; guest load $(load))"
	[ $rc = 0 ] || sed 's/^/    /' "$work/last.out" "$work/last.err"
	return $rc
}
cri() { "$crictl" --timeout 600s "$@"; }
# criulogs: CRIU's logs of every restore so far (the shim keeps them in
# the pod's state dir, which the pod's removal deletes) into
# /mnt/out/criu/, after a failed restore.
criulogs() {
	local f
	for f in /run/cri-runtimed/pods/*/shim/*/restore/*.log; do
		[ -f "$f" ] || continue
		mkdir -p "$out/criu" && cp "$f" "$out/criu/$(echo "${f#/run/cri-runtimed/pods/}" | tr / _)"
	done
}
# lastn LOG: the last number a counter printed; firstn LOG: its first.
lastn() { grep -Eo '^[0-9]+$' "$1" | tail -1; }
firstn() { grep -Eo '^[0-9]+$' "$1" | head -1; }
ctrlog() { cri logs "$1" 2>/dev/null; }
# waitn ID N: until container ID's counter printed more than N.
waitn() {
	local n
	for _ in $(seq 600); do
		n=$(ctrlog "$1" | grep -Eo '^[0-9]+$' | tail -1)
		[ "${n:-0}" -gt "$2" ] && return 0
		sleep 0.5
	done
	fail "container $1 did not count past $2"
	return 1
}

cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry/data
http:
  addr: 127.0.0.1:$port
EOF
/usr/bin/docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
registry=$!
trap 'kill $registry 2>/dev/null' EXIT
for _ in $(seq 300); do
	busybox wget -q -O /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break
	sleep 0.1
done
"$host/pushimages" --registry "http://127.0.0.1:$port" >"$out/checkpoint-push.log" 2>&1 || fail "pushimages"

# The daemon as an operator installs it: make install, the registry in
# certs.d, the unit.
mkdir -p /etc/cri-runtimed/certs.d/docker.io
printf 'server = "http://127.0.0.1:%s"\n' "$port" >/etc/cri-runtimed/certs.d/docker.io/hosts.toml
make -s -C "$host/src" install NOBUILD=1 >"$work/install.log" 2>&1 || {
	cat "$work/install.log"
	fail "make install"
	exit $failed
}
cp "$host/src/deploy/crictl.yaml" /etc/crictl.yaml
systemctl enable --now cri-runtimed >/dev/null 2>&1 || fail "systemctl enable --now cri-runtimed"
for _ in $(seq 600); do
	cri info >/dev/null 2>&1 && break
	sleep 0.2
done
log "criu: $("$bin" check 2>&1 | grep -i criu | head -1)"
cri info 2>/dev/null | grep -A1 '"checkpoint"' | head -3
timed "crictl pull busybox" cri pull busybox || fail "pull"

podcfg() {
	cat >"$work/$1.json" <<EOF
{"metadata": {"name": "$1", "namespace": "ckpt-op", "uid": "$1-uid"}, "log_directory": "/var/log/pods/ckpt-op_$1", "linux": {}}
EOF
}
ctrcfg() { # NAME IMAGE
	cat >"$work/$1.ctr.json" <<EOF
{"metadata": {"name": "$1"}, "image": {"image": "$2"}, "log_path": "$1.log",
 "command": ["sh", "-c", "echo written-before > /before.txt; i=0; while :; do i=\$((i+1)); echo \$i; sleep 0.2; done"], "linux": {}}
EOF
}

# 1. CheckpointContainer through crictl, restore by crictl create.
podcfg src
ctrcfg counter busybox
pod=$(cri runp "$work/src.json") || fail "runp src"
ctr=$(cri create "$pod" "$work/counter.ctr.json" "$work/src.json") || fail "create counter"
cri start "$ctr" >/dev/null || fail "start counter"
waitn "$ctr" 5
timed "crictl checkpoint (one counting shell)" cri checkpoint --export "$work/counter.tar" "$ctr" || fail "crictl checkpoint"
log "archive: $(stat -c %s "$work/counter.tar" 2>/dev/null) bytes: $(tar tf "$work/counter.tar" 2>/dev/null | grep -v '^checkpoint/.' | tr '\n' ' ')"
cp "$work/counter.tar" "$out/checkpoint-counter.tar" 2>/dev/null
# The archive in CRI-O's layout: checkpointctl (when staged) reads it.
if [ -x "$host/checkpointctl" ]; then
	"$host/checkpointctl" show "$work/counter.tar" >"$out/checkpointctl-show.txt" 2>&1 &&
		"$host/checkpointctl" inspect --stats --ps-tree "$work/counter.tar" >>"$out/checkpointctl-show.txt" 2>&1 ||
		fail "checkpointctl cannot read the archive: $(tail -3 "$out/checkpointctl-show.txt")"
	sed 's/^/    /' "$out/checkpointctl-show.txt" | head -40
fi
[ "$(cri inspect -o go-template --template '{{.status.state}}' "$ctr" 2>/dev/null)" = CONTAINER_RUNNING ] ||
	fail "the container is not running after its checkpoint"
at=$(ctrlog "$ctr" | grep -Eo '^[0-9]+$' | tail -1)

podcfg dst
ctrcfg restored "$work/counter.tar"
t0=$(now)
dpod=$(cri runp "$work/dst.json") || fail "runp dst"
log "crictl runp (the restore's pod): $(since "$t0") s (guest load $(load))"
rid=""
timed "crictl create from the archive" cri create "$dpod" "$work/restored.ctr.json" "$work/dst.json" &&
	rid=$(tail -1 "$work/last.out") || fail "create from the archive"
if [ -n "$rid" ]; then
	timed "crictl start (the restore)" cri start "$rid" || { fail "start of the restore"; criulogs; }
	waitn "$rid" 0
	first=$(ctrlog "$rid" | grep -Eo '^[0-9]+$' | head -1)
	log "the original had counted to $at at its checkpoint; the restored one's first number: $first"
	[ "${first:-0}" -ge 5 ] && [ "${first:-0}" -le $((at + 3)) ] || fail "restored counter starts at $first, checkpointed at $at"
	[ "$(cri exec "$rid" cat /before.txt 2>/dev/null)" = written-before ] || fail "/before.txt not in the restored container"
	cg=$(cri inspect -o go-template --template '{{.info.runtimeSpec.linux.cgroupsPath}}' "$rid" 2>/dev/null)
	pid=$(cri inspect -o go-template --template '{{.info.pid}}' "$rid" 2>/dev/null)
	log "restored pid $pid in $(cat /proc/"$pid"/cgroup 2>/dev/null) (spec: $cg)"
	timed "crictl stop (restored)" cri stop "$rid" || fail "stop of the restored container"
	timed "crictl rm (restored)" cri rm "$rid" || fail "rm of the restored container"
fi

# 2. The archive as a checkpoint OCI image, restored from the image.
timed "cri-runtimed checkpoint image" "$bin" checkpoint image "$work/counter.tar" localhost/checkpoint/counter:1 ||
	fail "checkpoint image"
cri images 2>/dev/null | grep checkpoint/counter
ctrcfg fromimage localhost/checkpoint/counter:1
iid=""
timed "crictl create from the checkpoint image" cri create "$dpod" "$work/fromimage.ctr.json" "$work/dst.json" &&
	iid=$(tail -1 "$work/last.out") || fail "create from the checkpoint image"
if [ -n "$iid" ]; then
	timed "crictl start (the restore from the image)" cri start "$iid" || { fail "start of the restore from the image"; criulogs; }
	waitn "$iid" 0
	log "restored from the image, first number: $(ctrlog "$iid" | grep -Eo '^[0-9]+$' | head -1)"
	cri rm -f "$iid" >/dev/null || fail "rm -f of the container restored from the image"
fi
cri stopp "$dpod" >/dev/null && cri rmp "$dpod" >/dev/null || fail "remove the restore's pod"

# 3. CheckpointPod and RestorePod: two counters, frozen together.
podcfg two
ctrcfg a busybox
ctrcfg b busybox
tpod=$(cri runp "$work/two.json") || fail "runp two"
for c in a b; do
	id=$(cri create "$tpod" "$work/$c.ctr.json" "$work/two.json") && cri start "$id" >/dev/null || fail "start $c"
	waitn "$id" 3
done
timed "cri-runtimed pod checkpoint (two counters)" "$bin" pod checkpoint "$tpod" "$work/podckpt" || fail "pod checkpoint"
cat "$work/last.out"
podcfg two-restored
# The restore's containers are started one at a time (as `pod restore`
# does without --no-start), and between the two a new process in the
# first must get a pid above the checkpoint's highest (pod.dump's
# lastPid): the pods share a PID namespace, CRIU's set_tid does not move
# its allocator, and without RestorePod moving it the first container's
# children take the lowest free pids, the very pids the second
# container's checkpoint holds (CRIU: "Can't fork for N: File exists").
last=$(grep -Eo '"lastPid": *[0-9]+' "$work/podckpt/pod.dump" | grep -Eo '[0-9]+$')
[ "${last:-0}" -ge 2 ] || fail "pod.dump records no highest pid for a shared PID namespace: $(cat "$work/podckpt/pod.dump")"
timed "cri-runtimed pod restore --no-start (RestorePod)" "$bin" pod restore --no-start "$work/podckpt" "$work/two-restored.json" ||
	{ fail "pod restore"; criulogs; }
cat "$work/last.out"
rpod=$(cri pods -q --name two-restored 2>/dev/null | head -1)
checked=""
for id in $(cri ps -aq --pod "$rpod" 2>/dev/null); do
	timed "crictl start (restore of $id)" cri start "$id" || { fail "start of restored $id"; criulogs; }
	if [ -z "$checked" ]; then
		n=$(cri exec "$id" sh -c 'echo $$' 2>/dev/null)
		log "checkpoint's highest pid ${last:-none}; a new process in the first restored container: pid ${n:-none}"
		[ "${n:-0}" -gt "${last:-0}" ] || fail "a new process in the restored pod got pid ${n:-none}, not above the checkpoint's ${last:-none}"
		checked=1
	fi
done
for id in $(cri ps -q --pod "$rpod" 2>/dev/null); do
	waitn "$id" 0
	log "restored $(cri inspect -o go-template --template '{{.status.metadata.name}}' "$id" 2>/dev/null): first number $(ctrlog "$id" | grep -Eo '^[0-9]+$' | head -1)"
done
[ "$(cri ps -q --pod "$rpod" 2>/dev/null | wc -l)" = 2 ] || fail "the restored pod does not run both containers"
log "pod IPs: checkpointed $(cri inspectp -o go-template --template '{{.status.network.ip}}' "$tpod" 2>/dev/null), restored $(cri inspectp -o go-template --template '{{.status.network.ip}}' "$rpod" 2>/dev/null)"
timed "crictl stopp (restored pod)" cri stopp "$rpod" || fail "stopp of the restored pod"
timed "crictl rmp (restored pod)" cri rmp "$rpod" || fail "rmp of the restored pod"
cri rmp -f "$tpod" "$pod" >/dev/null || fail "remove the pods"
left=$(cri ps -aq 2>/dev/null | wc -l)
[ "$left" = 0 ] || fail "$left containers left"
journalctl -u cri-runtimed --no-pager >"$out/checkpoint-crictl-journal.log" 2>&1
systemctl disable --now cri-runtimed >/dev/null 2>&1
log "$failed failed"
exit $failed
